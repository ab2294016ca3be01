"""Adapters: one entry per vendor (a module, or a package split by capability), beside what they share.

Shared: :mod:`.chat` and :mod:`.audio` (the request, result and chunk types and the ``Chat``,
``Speech`` and ``Transcription`` capability protocols), :mod:`.errors` (SDK errors to
ProviderError), :mod:`.options` (``ProviderOptions``, ``ConfigSnapshot``), :mod:`.languages`.

A vendor's entry module, named by its row in providers/registry.py, defines ``Options`` (validated
provider settings, a ``ProviderOptions``), ``PROVIDER_OPTIONS`` (by capability name, the
``provider_options`` keys a client may send: request-body fields only, never anything that reaches
the SDK's client options, since the stored key goes wherever those point; every capability the
adapter implements is named, if need be with an empty set) and ``Adapter``, built once per provider
config with a ``ConfigSnapshot``. An adapter implements the capabilities its vendor offers and
nothing else; the engine asks ``isinstance(adapter, Chat)``.

An adapter must:
- build its SDK client once, with the SDK's own retries off (the engine owns retries) and no
  deadline of its own (the engine owns deadlines);
- turn every SDK error into a ProviderError subclass in one place, ``map_error(error, model)``;
- keep to the contract of each capability it implements (see :mod:`.chat` and :mod:`.audio`).

An adapter has no ``aclose()``: the client cache drops a replaced adapter without closing it
(requests in flight may still use it), and the sockets of its SDK client's idle connections are
closed when it is garbage collected.
"""
