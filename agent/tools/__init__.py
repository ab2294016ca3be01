"""Agent tools run by the proxy: MCP servers over streamable HTTP (``mcp``) and the guard that decides
where their connections may go (``guard``). The loop that runs them is ``agent.loop``.

Web search and function tools need no code here: adapters map them to each provider's own form.
"""
