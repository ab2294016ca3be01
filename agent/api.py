from django.http import StreamingHttpResponse
from ninja import Body, Router

from agent import services
from agent.schemas import AgentIn, RunOut
from providers.auth import ClientKeyAuth

router = Router(tags=["agent"], auth=ClientKeyAuth("use"))


@router.post("/run", response=RunOut)
async def run(request, payload: Body[AgentIn]):
    """One chat request, or a fallback chain of them; the answer of the provider that served it."""
    return await services.agent_run(payload, request.request_id, request.auth)


@router.post("/run_stream")
async def run_stream(request, payload: Body[AgentIn]):
    """The same, streamed as NDJSON, one object a line: `start`, then `delta`, `tool_call`, `tool_result`
    and `citation` lines, and last `done` or `error`. When a chain's answer breaks after it began, a
    `restart` line names the provider that starts over, and its whole answer follows: a client
    discards what it received since `start` or the last `restart` (`on_stream_failure` chooses)."""
    lines = await services.agent_stream(payload, request.request_id, request.auth)
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass lines through as they come
    return response
