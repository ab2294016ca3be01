"""Contract tests of two fault models through every chat SDK: ``noprefill`` (a model that refuses a
conversation ending with an assistant turn, as several current models do) and ``downS`` (a model that
fails for S seconds, then recovers)."""

from __future__ import annotations

import asyncio

import anthropic
import groq
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.emulator.core import PREFILL_REFUSAL

PREFILLED = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hel"}]


def sdks(emulator):
    keys, urls = emulator.keys, emulator.base_urls
    return {
        "openai": openai.AsyncOpenAI(api_key=keys["openai"], base_url=urls["openai"], max_retries=0, timeout=5),
        "groq": groq.AsyncGroq(api_key=keys["groq"], base_url=urls["groq"], max_retries=0, timeout=5),
        "anthropic": anthropic.AsyncAnthropic(api_key=keys["anthropic"], base_url=urls["anthropic"], max_retries=0,
                                              timeout=5),
        # httpx's transport named, as the adapter does (google-genai would pick aiohttp, installed).
        "google": genai.Client(api_key=keys["google"], http_options=types.HttpOptions(
            base_url=urls["google"], timeout=5000, async_client_args={"transport": httpx2.AsyncHTTPTransport()})).aio,
    }


async def chat(emulator, provider: str, model: str, messages: list[dict]):
    sdk = sdks(emulator)[provider]
    if provider in ("openai", "groq"):
        return (await sdk.chat.completions.create(model=model, messages=messages)).choices[0].message.content
    if provider == "anthropic":
        return (await sdk.messages.create(model=model, max_tokens=50, messages=messages)).content[0].text
    contents = [types.Content(role="model" if m["role"] == "assistant" else "user", parts=[types.Part(text=m["content"])])
                for m in messages]
    return (await sdk.models.generate_content(model=model, contents=contents)).text


REJECTED = {"openai": openai.BadRequestError, "groq": groq.BadRequestError, "anthropic": anthropic.BadRequestError,
            "google": genai_errors.ClientError}


@pytest.mark.parametrize("provider", ["openai", "groq", "anthropic", "google"])
async def test_noprefill_refuses_an_assistant_turn_at_the_end_and_only_that(emulator, provider):
    with pytest.raises(REJECTED[provider]) as raised:
        await chat(emulator, provider, "m~noprefill", PREFILLED)
    assert PREFILL_REFUSAL in str(raised.value) and getattr(raised.value, "status_code", getattr(raised.value, "code", 0)) == 400
    assert (await chat(emulator, provider, "m~noprefill", PREFILLED[:1])).startswith("hello")


async def test_noprefill_on_the_responses_api(emulator):
    sdk = sdks(emulator)["openai"]
    with pytest.raises(openai.BadRequestError, match="prefill"):
        await sdk.responses.create(model="m~noprefill", input=PREFILLED)
    assert (await sdk.responses.create(model="m~noprefill", input=PREFILLED[:1])).output_text.startswith("hello")


@pytest.mark.parametrize("provider", ["openai", "groq", "anthropic", "google"])
async def test_down_fails_with_a_503_then_recovers(emulator, provider):
    errors = {"openai": openai.InternalServerError, "groq": groq.InternalServerError,
              "anthropic": anthropic.InternalServerError, "google": genai_errors.ServerError}
    with pytest.raises(errors[provider]):
        await chat(emulator, provider, "m~down0.4", PREFILLED[:1])
    await asyncio.sleep(0.45)
    assert (await chat(emulator, provider, "m~down0.4", PREFILLED[:1])).startswith("hello")
