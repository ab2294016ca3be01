"""The docs' snippet for the OpenAI SDK (docs/openai-sdk.md) runs as pasted (only the server's address differs)."""

import asyncio
import contextlib
import io
import os
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "openai-sdk.md"


def snippet() -> str:
    return re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL).group(1)


async def test_the_readme_snippet_runs(http, live_server_url, key, configs, monkeypatch):
    await configs("main-openai", "openai")
    await configs("claude", "anthropic")
    code = snippet().replace("http://localhost:8000", live_server_url)
    monkeypatch.setitem(os.environ, "QALBY_KEY", key)
    out = io.StringIO()

    def run():
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/openai-sdk.md", "exec"), {})

    await asyncio.to_thread(run)
    printed = out.getvalue()
    assert printed.startswith("Hello! [model=gpt-4o-mini system=Be brief.")
    assert "Tell me a story. [model=claude-sonnet-4-6" in printed
