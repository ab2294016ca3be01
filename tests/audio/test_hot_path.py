"""The audio request path: no database query, no client construction and no voice lookup once warm."""

import asyncio
import threading

import groq
import openai
import pytest
from django.db.backends import utils as db_utils
from elevenlabs.client import AsyncElevenLabs

from tests.audio.helpers import read_stream, speak, transcribe, wav_file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def counters(monkeypatch):
    counts = {"queries": 0, "clients": 0}
    execute = db_utils.CursorWrapper.execute

    def counting_execute(self, *args, **kwargs):
        # The request log writer has its own thread: its inserts are exactly what is off the request path.
        if threading.current_thread().name != "qalby-log-writer":
            counts["queries"] += 1
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
    for sdk in (openai.AsyncOpenAI, groq.AsyncGroq, AsyncElevenLabs):
        def counting_init(self, *args, __init=sdk.__init__, **kwargs):
            counts["clients"] += 1
            return __init(self, *args, **kwargs)

        monkeypatch.setattr(sdk, "__init__", counting_init)
    return counts


async def test_warm_audio_requests_make_no_query_no_client_and_no_voice_lookup(user, configs, emulator, counters,
                                                                               settings):
    settings.QALBY_CONFIG_TTL = 60
    wav = wav_file(0.2)
    calls = [
        lambda: user.post("/audio/speak", json=speak("elevenlabs")),
        lambda: user.post("/audio/speak", json=speak("openai")),
        lambda: user.post("/audio/transcribe_json", json=transcribe("groq", "whisper-large-v3", wav)),
        lambda: user.post("/audio/transcribe", data={"provider_uid": "elevenlabs", "model": "scribe_v1"},
                          files={"file": ("a.wav", wav, "audio/wav")}),
    ]
    for call in calls:  # warm: key lookup, config reads, clients built, Rachel looked up
        assert (await call()).status_code == 200
    assert counters["clients"] == 3
    counters.update(queries=0, clients=0)
    emulator.reset()

    responses = await asyncio.gather(*(call() for call in calls * 3))
    assert [r.status_code for r in responses] == [200] * 12
    status, _audio, _headers, error = await read_stream(user, "/audio/speak_stream", speak("elevenlabs"))
    assert (status, error) == (200, None)
    assert counters == {"queries": 0, "clients": 0}
    assert emulator.recorded("elevenlabs", "/voices") == []
