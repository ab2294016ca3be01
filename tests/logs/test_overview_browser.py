"""The auditors' overview in a real browser: after a burst of mixed requests, the charts render."""

import io

import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from providers.requestlogs.batching import writer
from tests.agent.helpers import chain, single
from tests.browser import Browser
from tests.logs.helpers import auditor_session

pytestmark = pytest.mark.django_db(transaction=True)

# providers/requestlogs/charts.py SERVED, CLIENT (the client's errors)
SERVED, CLIENT = (0x2F, 0x7E, 0xD8), (0xF0, 0xAD, 0x4E)


def pixels_near(image: Image.Image, color: tuple[int, int, int], tolerance: int = 12) -> int:
    rgb = image.convert("RGB")
    return sum(
        count for count, (r, g, b) in rgb.getcolors(maxcolors=rgb.width * rgb.height)
        if abs(r - color[0]) <= tolerance and abs(g - color[1]) <= tolerance and abs(b - color[2]) <= tolerance
    )


async def test_the_overview_charts_render_in_chromium(user, configs, live_server_url, tmp_path):
    bodies = [single(p) for p in ["openai", "anthropic", "google", "groq"] * 3]
    bodies += [chain(single("openai", model="x~e500"), single("google"))] * 3  # fallbacks taken
    bodies += [single("anthropic", model="m~ctx")] * 4  # the provider refuses the input: client errors
    # One after another: this test is about what the page shows (concurrency: test_request_logs.py).
    responses = [await user.post("/agent/run", json=b, timeout=30) for b in bodies]
    assert sorted(r.status_code for r in responses) == [200] * 15 + [400] * 4
    assert await sync_to_async(writer.flush)(timeout=10)

    session = await sync_to_async(auditor_session)()
    async with Browser() as browser:
        await browser.set_cookie(live_server_url, "sessionid", session)
        await browser.goto(f"{live_server_url}/admin/providers/requestlog/overview/")
        assert await browser.evaluate("document.getElementById('total-requests').textContent") == "19"
        assert await browser.evaluate("document.getElementById('client-errors').textContent") == "4"
        assert await browser.evaluate("document.getElementById('provider-failures').textContent") == "0"
        assert await browser.evaluate("document.querySelectorAll('svg.qalby-chart').length") == 4
        png = await browser.screenshot()
    (tmp_path / "overview.png").write_bytes(png)
    image = Image.open(io.BytesIO(png))
    assert image.width >= 1000
    # Bars of served requests and of client errors, and latency lines, were painted, not just laid out.
    assert pixels_near(image, SERVED) > 500
    assert pixels_near(image, CLIENT) > 200
