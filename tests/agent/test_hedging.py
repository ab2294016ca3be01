"""Hedging (issue #13): a chain's entry slow to its first chunk gets the next entry started beside it;
the first to produce a chunk wins, the other is cancelled. Through the HTTP API, the real SDKs and the
emulator's ``slowS`` fault (seconds before the first byte / event)."""

import time

import pytest

from providers.hedging import first_chunk_times
from tests.agent.helpers import chain, eventually, single, statuses, stream, text_of
from tests.conftest import CHAT_PROVIDERS

pytestmark = pytest.mark.django_db(transaction=True)


def other_than(provider: str) -> str:
    return "openai" if provider != "openai" else "anthropic"


def upstream(emulator, provider, model):
    return next(r for r in emulator.recorded(provider) if model in r.path or model.encode() in r.body)


async def test_with_the_defaults_a_20s_first_token_is_hedged_well_within_12s(user, configs, emulator):
    # The case: nothing asked, nothing learned yet: QALBY_HEDGE_DEFAULT applies to streamed chains.
    started = time.monotonic()
    status, lines, _ = await stream(user, chain(single("openai", model="m~slow20"), single("anthropic", model="quick")))
    elapsed = time.monotonic() - started
    assert status == 200 and elapsed < 12, elapsed
    assert lines[0]["provider_uid"] == "anthropic" and lines[-1]["type"] == "done"
    assert statuses(lines[-1]["attempts"]) == ["cancelled", "ok"]
    assert text_of(lines).startswith("hello there")
    # The slow one's connection was closed, not left to run for 20 s.
    slow = upstream(emulator, "openai", "m~slow20")
    assert await eventually(lambda: slow.disconnected_at is not None)
    assert slow.disconnected_at - slow.at < 12


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_slow_first_chunk_gets_the_next_entry_started_beside_it(user, configs, emulator, provider):
    other = other_than(provider)
    body = chain(single(provider, model="m~slow30"), single(other, model="quick"), hedge_after=1)
    started = time.monotonic()
    status, lines, _ = await stream(user, body)
    assert status == 200 and time.monotonic() - started < 8  # far from the slow one's 30 s
    assert lines[0]["provider_uid"] == other and lines[-1]["type"] == "done"
    attempts = lines[-1]["attempts"]
    assert statuses(attempts) == ["cancelled", "ok"]
    # The hedge started after the delay, not at once (that would be a race). The emulator sees the first
    # request later than the engine sent it (a new client's connection), so the margin is wide.
    first, second = upstream(emulator, provider, "m~slow30"), upstream(emulator, other, "quick")
    assert 0.5 < second.at - first.at < 8
    assert await eventually(lambda: first.disconnected_at is not None)


async def test_the_first_to_produce_a_chunk_wins_even_if_it_started_first(user, configs, emulator):
    body = chain(single("groq", model="m~slow0.8"), single("google", model="m~slow30"), hedge_after=0.2)
    status, lines, _ = await stream(user, body)
    assert status == 200 and lines[0]["provider_uid"] == "groq" and lines[-1]["type"] == "done"
    assert statuses(lines[-1]["attempts"]) == ["ok", "cancelled"]
    hedge = upstream(emulator, "google", "m~slow30")
    assert await eventually(lambda: hedge.disconnected_at is not None)


async def test_no_hedge_when_the_first_chunk_comes_in_time(user, configs, emulator):
    body = chain(single("anthropic", model="m~slow0.2"), single("openai", model="never"), hedge_after=1.5)
    status, lines, _ = await stream(user, body)
    assert status == 200 and lines[0]["provider_uid"] == "anthropic"
    assert statuses(lines[-1]["attempts"]) == ["ok"]
    assert emulator.recorded("openai") == []


async def test_off_waits_for_the_first_entry(user, configs, emulator):
    body = chain(single("openai", model="m~slow1.2"), single("anthropic", model="quick"), hedge_after="off")
    started = time.monotonic()
    status, lines, _ = await stream(user, body)
    assert status == 200 and lines[0]["provider_uid"] == "openai" and time.monotonic() - started >= 1.1
    assert emulator.recorded("anthropic") == []


async def test_a_single_request_is_never_cut_short_by_hedging(user, configs):
    status, lines, _ = await stream(user, single("google", model="m~slow1.5"))
    assert status == 200 and lines[-1]["type"] == "done"
    assert statuses(lines[-1]["attempts"]) == ["ok"]


async def test_a_failure_starts_the_next_entry_at_once_beside_a_slow_hedge(user, configs, emulator):
    # openai is slow, so groq starts beside it at 1.5 s; groq fails at once, so google starts then,
    # not 1.5 s later; google answers first.
    body = chain(single("openai", model="m~slow30"), single("groq", model="m~e400"), single("google", model="quick"),
                 hedge_after=1.5)
    status, lines, _ = await stream(user, body)
    assert status == 200 and lines[0]["provider_uid"] == "google"
    assert statuses(lines[-1]["attempts"]) == ["cancelled", "error", "ok"]
    failed, third = upstream(emulator, "groq", "m~e400"), upstream(emulator, "google", "quick")
    assert third.at - failed.at < 1  # at once, not after another 1.5 s hedge delay


async def test_the_provider_config_option_hedges_its_entry(user, configs, emulator):
    await configs("openai", options={"hedge_after": 0.3})
    started = time.monotonic()
    status, lines, _ = await stream(user, chain(single("openai", model="m~slow30"), single("groq", model="quick")))
    assert status == 200 and lines[0]["provider_uid"] == "groq" and time.monotonic() - started < 8
    # The request's own hedge_after comes first.
    status, lines, _ = await stream(user, chain(single("openai", model="m~slow1"), single("groq", model="never"),
                                                hedge_after="off"))
    assert lines[0]["provider_uid"] == "openai"


async def test_whole_answers_hedge_only_when_asked(user, configs, emulator):
    started = time.monotonic()
    response = await user.post("/agent/run", json=chain(single("anthropic", model="m~slow30"),
                                                         single("groq", model="quick"), hedge_after=0.3))
    assert response.status_code == 200 and response.json()["provider_uid"] == "groq"
    assert time.monotonic() - started < 8  # far from the slow one's 30 s
    assert statuses(response.json()["attempts"]) == ["cancelled", "ok"]
    # Not asked: a whole answer waits for the entry that runs (a stream would hedge at QALBY_HEDGE_DEFAULT).
    response = await user.post("/agent/run", json=chain(single("anthropic", model="m~slow0.5"),
                                                        single("groq", model="never")))
    assert response.json()["provider_uid"] == "anthropic"
    assert not [r for r in emulator.recorded("groq") if b"never" in r.body]


async def test_speech_streams_hedge_too(user, configs, emulator):
    body = {"requests": [{"provider_uid": "openai", "model": "tts-1~slow30", "text": "hello", "voice": "alloy"},
                         {"provider_uid": "elevenlabs", "model": "eleven_multilingual_v2", "text": "hello",
                          "voice": "21m00Tcm4TlvDq8ikWAM"}], "hedge_after": 0.3}
    started = time.monotonic()
    async with user.stream("POST", "/audio/speak_stream", json=body) as response:
        audio = await response.aread()
    assert response.status_code == 200 and audio
    assert response.headers["x-provider-uid"] == "elevenlabs" and time.monotonic() - started < 8  # not the 30 s


async def test_auto_hedges_after_a_percentile_of_recent_first_chunks(user, configs, emulator, settings):
    settings.QALBY_HEDGE_SAMPLES, settings.QALBY_HEDGE_MIN = 5, 0.05
    settings.QALBY_HEDGE_DEFAULT = 20  # far from what is learned below, so the bound at the end tells them apart
    # Real streams teach the engine: until enough have been seen, the default; then what was seen.
    for _ in range(5):
        status, lines, _ = await stream(user, single("openai", model="m~slow0.1"))
        assert lines[-1]["type"] == "done"
    learned = first_chunk_times.delay("openai", "m~slow0.1", True)
    assert 0.08 < learned < 1.0 and learned != settings.QALBY_HEDGE_DEFAULT
    # A model that usually answers at once is hedged soon: 0.3 s seen, so 30 s is far past its usual
    # (the default would hedge only at 20 s).
    for _ in range(5):
        first_chunk_times.observe("openai", "m~slow30", True, 0.3)
    started = time.monotonic()
    status, lines, _ = await stream(user, chain(single("openai", model="m~slow30"), single("groq", model="quick")))
    assert lines[0]["provider_uid"] == "groq" and time.monotonic() - started < 8


def test_the_learned_delay_is_a_bounded_percentile(settings):
    settings.QALBY_HEDGE_SAMPLES, settings.QALBY_HEDGE_PERCENTILE = 10, 90
    settings.QALBY_HEDGE_MIN, settings.QALBY_HEDGE_MAX, settings.QALBY_HEDGE_DEFAULT = 0.5, 6.0, 4.0
    for seconds in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]:
        first_chunk_times.observe("p", "m", True, seconds)
    assert first_chunk_times.delay("p", "m", True) == 4.0  # 9 seen: still the default
    first_chunk_times.observe("p", "m", True, 3.0)
    assert first_chunk_times.delay("p", "m", True) == 0.9  # the 90th percentile of ten
    assert first_chunk_times.delay("p", "m", False) == 4.0  # whole answers are learned apart
    for _ in range(10):
        first_chunk_times.observe("p", "m", True, 30.0)
    assert first_chunk_times.delay("p", "m", True) == 6.0  # never beyond QALBY_HEDGE_MAX
    for _ in range(200):
        first_chunk_times.observe("p", "m", True, 0.01)
    assert first_chunk_times.delay("p", "m", True) == 0.5  # only the recent window counts, and never below MIN


@pytest.mark.parametrize("value", [0, -1, 601, "soon", True])
async def test_hedge_after_must_be_seconds_auto_or_off(user, configs, value):
    response = await user.post("/agent/run_stream", json=chain(single("openai"), single("groq"), hedge_after=value))
    assert response.status_code == 400 and "hedge_after" in response.json()["detail"]


async def test_a_lost_hedge_still_teaches_how_slow_its_model_was(user, configs, settings):
    # Leaving it out would pull the learned delay down with every hedge won (providers/hedging.py).
    settings.QALBY_HEDGE_SAMPLES, settings.QALBY_HEDGE_MIN = 1, 0.01
    await stream(user, chain(single("openai", model="m~slow4"), single("groq", model="quick"), hedge_after=0.3))
    assert first_chunk_times.delay("openai", "m~slow4", True) >= 0.3


async def test_a_hedge_never_spends_the_last_entry_on_an_open_breaker(user, configs, emulator, settings):
    settings.QALBY_BREAKER_THRESHOLD, settings.QALBY_BREAKER_COOLDOWN, settings.QALBY_RETRY_BACKOFF = 2, 30, 0.01
    for _ in range(2):
        await user.post("/agent/run", json=single("groq", model="y~e500"))
    emulator.reset()
    status, lines, _ = await stream(user, chain(single("openai", model="m~slow0.8"), single("groq", model="y~e500"),
                                                hedge_after=0.2))
    assert status == 200 and lines[0]["provider_uid"] == "openai"
    assert statuses(lines[-1]["attempts"]) == ["ok", "skipped"]
    assert emulator.recorded("groq") == []
    # When the entry before it fails, the last one left runs anyway, open breaker or not.
    status, body, _ = await stream(user, chain(single("openai", model="m~e400"), single("groq", model="y~e500"),
                                               hedge_after=0.2))
    assert status == 502 and statuses(body["attempts"]) == ["error", "error"]
