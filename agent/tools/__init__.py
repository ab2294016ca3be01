"""Agent tools run by the proxy: MCP servers over streamable HTTP, and the agent loop that uses them.

Web search and function tools need no code here: adapters map them to each provider's own form.
"""
