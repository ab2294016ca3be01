"""The admin read in headless Chromium at 1,366 px: what is laid out, measured by the browser itself."""

import json

import pytest
from asgiref.sync import sync_to_async

from providers.models import ProviderConfig
from providers.requestlogs.admin import short_request_id
from providers.roles import ADMINISTRATORS, AUDITORS
from providers.services import provider_config_upsert
from tests.admin.helpers import SCROLLBAR, WIDTH, at_laptop_width, keep, staff_session, wide_logs
from tests.browser import Browser

pytestmark = pytest.mark.django_db(transaction=True)

LOGS = "/admin/providers/requestlog/"
# Every column of the request log list, by its list_display name.
COLUMNS = ["time", "short_id", "endpoint_cell", "status", "outcome", "route", "provider", "model", "latency",
           "attempts", "client_key"]

# For each column: the union of its header's and its first cell's boxes, as the page lays them out.
MEASURE = """(() => {
  const box = (el) => el && el.getBoundingClientRect();
  return Object.fromEntries(%s.map((name) => {
    const boxes = [box(document.querySelector(`#result_list thead th.column-${name}`)),
                   box(document.querySelector(`#result_list tbody tr:first-child .field-${name}`))];
    if (boxes.includes(null)) return [name, null];
    return [name, {left: Math.min(...boxes.map((b) => b.left)), right: Math.max(...boxes.map((b) => b.right)),
                   width: Math.min(...boxes.map((b) => b.width))}];
  }));
})()"""
# The list scrolls sideways inside its own box, which clips what does not fit: that box's visible part.
CLIP = """(() => {
  const results = document.querySelector('#changelist .results'), b = results.getBoundingClientRect();
  return {left: b.left + results.clientLeft, right: b.left + results.clientLeft + results.clientWidth};
})()"""
SCROLLS = """(() => {
  const results = document.querySelector('#changelist .results');
  return {results: results.scrollWidth - results.clientWidth,
          page: document.documentElement.scrollWidth - window.innerWidth, viewport: window.innerWidth};
})()"""
ROWS = """[...document.querySelectorAll('#result_list tbody tr')].map((tr) => tr.getBoundingClientRect().height)"""
LINE = """parseFloat(getComputedStyle(document.querySelector('#result_list tbody td')).lineHeight)"""


async def test_every_column_of_the_request_log_list_is_in_view_at_1366_px(live_server_url, tmp_path):
    logs = await sync_to_async(wide_logs)()
    session = await sync_to_async(staff_session)(AUDITORS)
    async with Browser() as browser:
        await at_laptop_width(browser, live_server_url, session, LOGS)
        columns = await browser.evaluate(MEASURE % json.dumps(COLUMNS))
        clip = await browser.evaluate(CLIP)
        scrolls = await browser.evaluate(SCROLLS)
        rows = await browser.evaluate(ROWS)
        line = await browser.evaluate(LINE)
        newest = await browser.evaluate(
            "[document.querySelector('#result_list tbody tr:first-child .field-short_id').innerText,"
            " document.querySelector('#result_list tbody tr:first-child .field-short_id span').title,"
            " document.querySelector('#result_list tbody tr:first-child .field-short_id a').href]")
        keep(await browser.screenshot(), "request-log-list.png", tmp_path)

    assert scrolls["viewport"] == WIDTH
    assert [name for name, box in columns.items() if box is None] == [], "columns missing from the list"
    # In the window, with room left for a scrollbar it may draw, and not clipped by the list's own box.
    left, right = max(0, clip["left"]), min(WIDTH - SCROLLBAR, clip["right"])
    out_of_view = {name: box for name, box in columns.items() if box["left"] < left or box["right"] > right + 0.5}
    assert out_of_view == {}, f"outside {left}-{right} px: {out_of_view}"
    assert scrolls["results"] <= 0 and scrolls["page"] <= 0, scrolls
    assert min(box["width"] for box in columns.values()) > 20, columns
    # Squeezed columns wrap, but into a few lines, not a column of syllables.
    assert max(rows) <= 4 * line + 16, (rows, line)

    text, title, href = newest
    assert (text, title) == (short_request_id(logs[0].request_id), logs[0].request_id)
    assert text == "\N{HORIZONTAL ELLIPSIS}" + logs[0].request_id[-8:]
    assert href.endswith(f"{LOGS}{logs[0].pk}/change/")


async def test_a_request_log_shows_its_whole_id_at_1366_px(live_server_url, tmp_path):
    [log] = await sync_to_async(wide_logs)(1)
    session = await sync_to_async(staff_session)(AUDITORS)
    async with Browser() as browser:
        await at_laptop_width(browser, live_server_url, session, f"{LOGS}{log.pk}/change/")
        shown = await browser.evaluate("document.querySelector('.field-request_id .readonly').innerText")
        widths = await browser.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        keep(await browser.screenshot(), "request-log-detail.png", tmp_path)
    assert shown == log.request_id
    assert widths[0] <= widths[1], widths


async def test_the_overview_reads_at_1366_px(live_server_url, tmp_path):
    await sync_to_async(wide_logs)()
    session = await sync_to_async(staff_session)(AUDITORS)
    async with Browser() as browser:
        await at_laptop_width(browser, live_server_url, session, LOGS + "overview/")
        widths = await browser.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth,"
            " ...[...document.querySelectorAll('.qalby-tile, svg.qalby-chart, #attempts')]"
            ".map((el) => el.getBoundingClientRect().right)]")
        keep(await browser.screenshot(), "overview.png", tmp_path)
    page, viewport, *rights = widths
    assert page <= viewport and max(rights) <= WIDTH - SCROLLBAR, widths


async def test_the_provider_config_page_reads_at_1366_px(live_server_url, tmp_path):
    config, _ = await sync_to_async(provider_config_upsert)(
        uid="prod-openai", provider="openai", api_key="sk-browser-test-0123456789abcdef")
    session = await sync_to_async(staff_session)(ADMINISTRATORS)
    async with Browser() as browser:
        await at_laptop_width(browser, live_server_url, session, f"/admin/providers/providerconfig/{config.pk}/change/")
        labels = await browser.evaluate(
            "[...document.querySelectorAll('fieldset .form-row label')].map((l) => l.innerText.trim())")
        html = await browser.evaluate("document.documentElement.outerHTML")
        keep(await browser.screenshot(), "provider-config-change.png", tmp_path)
    assert labels[:5] == ["UID:", "Provider:", "Stored API key:", "New API key:", "Base URL:"], labels
    assert "sk-browser-test-0123456789abcdef" not in html and "0123456789ab" not in html
    assert await sync_to_async(lambda: ProviderConfig.objects.get(pk=config.pk).masked_key)() in html
