"""Traces, metrics and log lines show the same numbers as the request logs, and no secrets."""

import asyncio
import io
import json
import logging

import pytest
from asgiref.sync import sync_to_async

from providers.models import RequestLog
from providers.requestlogs import tracing
from providers.requestlogs.batching import writer
from qalby_site.logformat import JsonFormatter, RequestIdFilter
from tests.agent.helpers import chain, single, stream

pytestmark = pytest.mark.django_db(transaction=True)


async def test_one_span_per_request_and_one_per_attempt(user, configs, spans, emulator):
    body = chain(single("openai", model="a~e500"), single("groq", model="b"))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.parent is None)
    children = sorted((s for s in finished if s.parent is not None), key=lambda s: s.attributes["qalby.attempt"])
    assert root.attributes["qalby.request_id"] == response.headers["X-Request-ID"]
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["qalby.usage.output_tokens"] == response.json()["usage"]["output_tokens"]
    assert [(s.attributes["qalby.provider"], s.attributes["qalby.outcome"]) for s in children] == [
        ("openai", "error"), ("groq", "ok")]
    assert children[0].attributes["qalby.upstream_status"] == 500
    assert all(c.parent.span_id == root.context.span_id for c in children)
    assert children[0].start_time <= children[0].end_time <= children[1].start_time <= root.end_time
    everything = json.dumps([dict(s.attributes) for s in finished])
    assert emulator.keys["openai"] not in everything and emulator.keys["groq"] not in everything
    assert "hello there" not in everything  # no content unless content logging is on


async def test_no_exporter_means_no_spans_and_no_cost(user, configs):
    assert tracing._tracer is None
    assert (await user.post("/agent/run", json=single("openai"))).status_code == 200


async def test_metrics_are_protected_and_count_requests_attempts_and_fallbacks(http, user, configs, settings):
    assert (await http.get("/metrics")).status_code == 404  # off unless a token is set
    settings.QALBY_METRICS_TOKEN = "metrics-secret"
    assert (await http.get("/metrics")).status_code == 401
    scrape = {"Authorization": "Bearer metrics-secret"}

    def value(text: str, name: str, **labels) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = (await http.get("/metrics", headers=scrape)).text
    await user.post("/agent/run", json=chain(single("openai", model="a~e500"), single("anthropic", model="b")))
    await stream(user, single("google", model="c"))
    after = (await http.get("/metrics", headers=scrape)).text
    assert value(after, "qalby_attempts_total", provider="openai", outcome="error") - value(
        before, "qalby_attempts_total", provider="openai", outcome="error") == 1
    assert value(after, "qalby_attempts_total", provider="anthropic", outcome="ok") - value(
        before, "qalby_attempts_total", provider="anthropic", outcome="ok") == 1
    assert value(after, "qalby_fallbacks_total", endpoint="POST /agent/run") - value(
        before, "qalby_fallbacks_total", endpoint="POST /agent/run") == 1
    assert value(after, "qalby_first_chunk_seconds_count", provider="google") - value(
        before, "qalby_first_chunk_seconds_count", provider="google") == 1
    assert value(after, "qalby_requests_total", endpoint="POST /agent/run_stream", status="200") >= 1
    assert "qalby_streams_in_flight 0.0" in after
    assert "qalby_log_records_dropped_total" in after


async def test_log_lines_carry_the_request_id_and_can_be_json(user, configs):
    # The handler LOG_FORMAT=json installs: our filter and formatter, applied where the line is logged.
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        response = await user.post("/agent/run", json=single("openai", model="m~ctx"))
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 400
    line = json.loads(output.getvalue().splitlines()[0])
    assert line["level"] == "WARNING" and line["logger"] == "django.request" and "/agent/run" in line["message"]
    assert line["request_id"] == response.headers["X-Request-ID"]
    await sync_to_async(writer.flush)()
    assert await RequestLog.objects.filter(request_id=response.headers["X-Request-ID"]).aexists()


async def test_traces_reach_an_otlp_collector(user, configs, settings, monkeypatch):
    """OTEL_EXPORTER_OTLP_ENDPOINT set: spans go out in OTLP (protobuf over HTTP) to that collector."""
    import http.server
    import threading

    received = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = endpoint
    settings.LOGFIRE_WRITE_TOKEN = ""
    tracing.setup()
    try:
        response = await user.post("/agent/run", json=single("anthropic"))
        await asyncio.to_thread(tracing.flush)
    finally:
        tracing.disable()
        server.shutdown()
    assert [path for path, _ in received] == ["/v1/traces"]
    payload = received[0][1]
    assert response.headers["X-Request-ID"].encode() in payload
    assert b"qalby-proxy" in payload and b"attempt anthropic" in payload


async def test_probes_and_scrapers_may_come_by_pod_ip(http, settings):
    settings.QALBY_METRICS_TOKEN = "t"
    for path in ["/healthz", "/readyz", "/metrics"]:
        response = await http.get(path, headers={"Host": "10.1.2.3:8000", "Authorization": "Bearer t"})
        assert response.status_code == 200, path
    assert (await http.get("/providers/configs", headers={"Host": "10.1.2.3:8000"})).status_code == 400


async def test_the_table_the_metrics_and_the_trace_name_the_same_served_attempt(http, user, configs, settings, spans):
    # A stream that falls over before its first chunk, then commits on the second entry and breaks:
    # the second entry served (a broken answer is still the one the client got).
    settings.QALBY_METRICS_TOKEN = "metrics-secret"
    scrape = {"Authorization": "Bearer metrics-secret"}

    def value(text: str, name: str, **labels) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = (await http.get("/metrics", headers=scrape)).text
    _status, lines, headers = await stream(user, chain(single("openai", model="a~e400"),
                                                       single("anthropic", model="b~long50~cut6")))
    after = (await http.get("/metrics", headers=scrape)).text
    assert lines[-1]["type"] == "error"
    await sync_to_async(writer.flush)()
    log = await RequestLog.objects.aget(request_id=headers["X-Request-ID"])
    assert (log.provider_uid, log.fallbacks) == ("anthropic", 1) and log.first_chunk_ms is not None
    endpoint = "POST /agent/run_stream"
    assert value(after, "qalby_fallbacks_total", endpoint=endpoint) - value(
        before, "qalby_fallbacks_total", endpoint=endpoint) == log.fallbacks
    assert value(after, "qalby_first_chunk_seconds_count", provider="anthropic") - value(
        before, "qalby_first_chunk_seconds_count", provider="anthropic") == 1
    request_span = next(s for s in spans.get_finished_spans() if s.name == f"qalby {endpoint}")
    assert (request_span.attributes["qalby.provider"], request_span.attributes["qalby.fallbacks"]) == ("anthropic", 1)
