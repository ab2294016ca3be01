"""Unit tests of the emulator's fault grammar and deterministic model (tests/emulator/core.py)."""

from __future__ import annotations

import pytest

from tests.emulator.core import (
    Emulator,
    Fault,
    FaultSyntaxError,
    Prompt,
    count_tokens,
    directives,
    echo_text,
    next_action,
    parse_model,
    search_results,
    split_tokens,
    words,
)


def test_plain_model_has_no_fault():
    assert parse_model("gpt-4o") == ("gpt-4o", Fault())
    assert not Fault().fails_request


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("m~e503", Fault(status=503)),
        ("m~e429x2", Fault(status=429, times=2)),
        ("m~e429~ra1.5", Fault(status=429, retry_after=1.5)),
        ("m~ctx", Fault(kind="context_length", status=400)),
        ("m~ctxx1", Fault(kind="context_length", status=400, times=1)),
        ("m~policy", Fault(kind="content_policy", status=400)),
        ("m~reset", Fault(reset=True)),
        ("m~resetx3", Fault(reset=True, times=3)),
        ("m~hang", Fault(hang=True)),
        ("m~slow0.25", Fault(slow=0.25)),
        ("m~lat150", Fault(latency=0.15)),
        ("m~gap20", Fault(gap=0.02)),
        ("m~cut4", Fault(cut=4)),
        ("m~stall2", Fault(stall=2)),
        ("m~bad0", Fault(bad=0)),
        ("m~bad2+5", Fault(bad=2, bad_again=5)),
        ("m~nodone", Fault(nodone=True)),
        ("m~long300", Fault(tokens=300)),
        ("m~e500~cut2~gap5", Fault(status=500, cut=2, gap=0.005)),
        ("m~down2.5", Fault(down=2.5)),
        ("m~noprefill", Fault(noprefill=True)),
    ],
)
def test_each_token(model, expected):
    assert parse_model(model) == ("m", expected)


def test_base_model_may_contain_dashes_dots_and_slashes():
    assert parse_model("openai/gpt-oss-120b~e500")[0] == "openai/gpt-oss-120b"
    assert parse_model("claude-3.5-sonnet-20241022")[0] == "claude-3.5-sonnet-20241022"


@pytest.mark.parametrize(
    "model", ["m~nonsense", "m~e50", "m~e5000", "m~slow", "m~cutx", "m~", "m~E500", "m~e500 "]
)
def test_unknown_or_malformed_token_is_an_error(model):
    with pytest.raises(FaultSyntaxError, match="unknown fault"):
        parse_model(model)


def test_later_tokens_override_earlier_ones():
    assert parse_model("m~slow1~slow2")[1].slow == 2.0


def test_fails_request():
    assert (
        Fault(status=500).fails_request and Fault(reset=True).fails_request and Fault(hang=True).fails_request
    )
    assert not Fault(slow=1, cut=2, gap=0.1).fails_request


def test_times_counts_per_provider_and_exact_model_string():
    emu = Emulator()
    outcomes = [emu.fault("openai", "gpt-4o~e503x2")[1].status for _ in range(4)]
    assert outcomes == [503, 503, None, None]
    # another provider, or the same base model with another fault string, counts on its own
    assert emu.fault("groq", "gpt-4o~e503x2")[1].status == 503
    assert emu.fault("openai", "gpt-4o~e503x2~ra0")[1].status == 503


def test_exhausted_times_keeps_the_non_failing_faults():
    emu = Emulator()
    emu.fault("openai", "m~resetx1~slow0.5")
    base, fault = emu.fault("openai", "m~resetx1~slow0.5")
    assert base == "m" and fault == Fault(slow=0.5)


def test_without_times_the_fault_is_permanent_and_reset_clears_counters():
    emu = Emulator()
    assert all(emu.fault("openai", "m~e500")[1].status == 500 for _ in range(5))
    emu.fault("openai", "m~e500x1")
    emu.reset()
    assert emu.fault("openai", "m~e500x1")[1].status == 500 and emu.requests == []


def test_directives():
    assert directives('CALL add {"a": 1, "b": 2}; CALL lookup {"key": "x"}') == [
        ("add", {"a": 1, "b": 2}),
        ("lookup", {"key": "x"}),
    ]
    assert directives("please CALL ping") == [("ping", {})]
    assert directives("CALL broken {not json}") == [("broken", {})]
    assert directives("no calls here") == []


def test_next_action_calls_offered_tools_one_per_turn_then_answers():
    text = 'CALL add {"a": 1}; CALL missing {}; CALL mul {"b": 2}'
    prompt = Prompt(base_model="m", last_user_text=text, tool_names=("add", "mul"))
    assert next_action(prompt) == ("call", ("add", {"a": 1}))
    after_one = Prompt(base_model="m", last_user_text=text, tool_names=("add", "mul"), tool_results=("1",))
    assert next_action(after_one) == ("call", ("mul", {"b": 2}))
    done = Prompt(base_model="m", last_user_text=text, tool_names=("add", "mul"), tool_results=("1", "2"))
    kind, answer = next_action(done)
    assert kind == "text" and answer.endswith("tool_results=1 | 2]")


def test_echo_text_format():
    prompt = Prompt(
        base_model="gpt-4o",
        last_user_text="hello",
        system="be brief",
        mimes=("image/png", "application/pdf"),
        temperature=0.2,
        max_tokens=50,
    )
    assert echo_text(prompt) == (
        "hello [model=gpt-4o system=be brief images=2:image/png,application/pdf temperature=0.2 max_tokens=50]"
    )
    assert (
        echo_text(Prompt(base_model="m", temperature=1.0))
        == " [model=m system=- images=0 temperature=1 max_tokens=-]"
    )


def test_tokens_split_and_count_consistently():
    text = "one  two\nthree"
    assert split_tokens(text) == ["one  ", "two\n", "three"] and "".join(split_tokens(text)) == text
    assert count_tokens(text) == 3 == len(split_tokens(text))
    assert split_tokens("") == [""]


def test_words_and_search_results_are_deterministic():
    assert words(3) == ["alpha", "bravo", "charlie"] and words(10, "seed") == words(10, "seed")
    hits = search_results("Weather in Paris?")
    assert [h["url"] for h in hits] == [
        "https://example.com/weather-in-paris/1",
        "https://example.com/weather-in-paris/2",
    ]
    assert hits[0]["title"] == "Result 1 for Weather in Paris?" and hits == search_results(
        "Weather in Paris?"
    )


def test_down_fails_for_its_seconds_from_the_first_request_then_recovers(monkeypatch):
    import time

    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    emu = Emulator()
    assert emu.fault("openai", "m~down2")[1].status == 503
    clock[0] += 1.9
    assert emu.fault("openai", "m~down2")[1].status == 503
    assert emu.fault("openai", "m~e429~down2")[1].status == 429  # another model string: its own clock
    clock[0] += 0.2
    assert emu.fault("openai", "m~down2")[1].status is None
    clock[0] += 2.0
    assert emu.fault("openai", "m~e429~down2")[1].status is None
    emu.reset()
    assert emu.fault("openai", "m~down2")[1].status == 503
