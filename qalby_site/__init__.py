"""The site: settings, the API, the server and its guards."""

# The release, as pyproject.toml says (tests/test_settings_and_server.py keeps the two equal).
__version__ = "0.1.0"
