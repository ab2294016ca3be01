"""Routes: a fallback chain defined once, on the server, and named by clients.

A route is a kind (chat, speech or transcription), how its chain runs (strategy, deadlines, hedge,
what a broken stream does) and ordered entries (provider config, model, that entry's default
settings). Clients send ``"route": "<name>"`` with their messages, text or file in place of a
``requests`` list; the app that owns the kind (agent, audio) expands it into that list, so the
engine sees a chain like any other.

- ``models.py``: the tables (re-exported by providers.models); ``services.py``: writes; ``api.py``
  and ``admin.py``: the JSON API (scope ``manage``) and the admin; ``kinds.py``: what each app
  registers for its kind (how an entry's settings are checked); ``cache.py``: the snapshots the hot
  path reads, with the key's route restrictions, invalidated like provider configs.
"""
