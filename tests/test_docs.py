"""The README and docs/ say what is true: every endpoint in the table, every setting in the list,
every link to something in this repository, and the README's curl lines accepted as written."""

import json
import re
import shlex
from pathlib import Path

import pytest

from providers import registry

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *DOCS, ROOT / "tests" / "emulator" / "README.md", ROOT / "bench" / "README.md"]
# Served outside the OpenAPI document: Prometheus' text format and Django's admin.
NOT_IN_OPENAPI = {"GET /metrics"}


def endpoints_in_table(text: str) -> set[str]:
    table = text[text.index("| endpoint | what |"):]
    table = table[:table.index("\n\n")]
    return {f"{m} {p}" for row in table.splitlines()[2:]
            for m, p in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", row.split("|")[1])}


async def test_the_endpoint_table_lists_exactly_the_served_endpoints(http):
    schema = (await http.get("/openapi.json")).json()
    served = {f"{method.upper()} {path}" for path, operations in schema["paths"].items() for method in operations}
    assert endpoints_in_table((ROOT / "docs" / "api.md").read_text()) == served | NOT_IN_OPENAPI
    assert all(op.get("description") for ops in schema["paths"].values() for op in ops.values()), \
        "every endpoint in /docs says what it does"


def test_the_documented_providers_are_the_registered_ones():
    text = (ROOT / "docs" / "api.md").read_text()
    listed = re.search(r"`provider` is one of (.*?)\.", text).group(1)
    assert re.findall(r"`(\w+)`", listed) == list(registry.KINDS)


def test_every_setting_the_server_reads_is_documented():
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z0-9_]+)"', (ROOT / "qalby_site" / "settings.py").read_text()))
    documented = "".join(p.read_text() for p in DOCS)
    assert read and sorted(name for name in read if f"`{name}`" not in documented) == []


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation but '-' and '_' dropped, spaces to '-'.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_lead_to_files_of_this_repository(document):
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.is_relative_to(ROOT) or not file.exists() or (anchor and anchor not in _anchors(file)):
            broken.append(target)
    assert broken == []
    # Nor a path to something a clone does not have (the team's shared folder).
    assert not re.search(r"(\.\./|\b)shared/(bench|reference)", text)


def test_the_first_screen_gives_the_three_commands_and_how_long_each_takes():
    first_screen = README.read_text().split("\n## ", 2)[:2]
    commands = {m: row for row in "".join(first_screen).splitlines()
                for m in re.findall(r"^\| `make (\w+)`", row)}
    assert list(commands) == ["run", "demo", "test"]
    assert all(re.search(r"\d+ (seconds|minutes)", row) for row in commands.values())
    makefile = (ROOT / "Makefile").read_text()
    assert all(re.search(rf"^{target}:", makefile, re.MULTILINE) for target in commands)
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def _readme_requests() -> list[tuple[str, str, dict]]:
    found = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL):
        words = shlex.split(block, comments=True)
        starts = [i for i, word in enumerate(words) if word == "curl"]
        for start, end in zip(starts, [*starts[1:], len(words)], strict=True):
            command = words[start:end]
            if "-d" in command:
                path = next(w for w in command if w.startswith("localhost:8000/")).removeprefix("localhost:8000")
                found.append((command[command.index("-X") + 1], path, json.loads(command[command.index("-d") + 1])))
    return found


@pytest.mark.django_db(transaction=True)
async def test_the_readme_requests_are_accepted_as_written(http, make_key, configs):
    await configs("main-openai", "openai")
    await configs("claude", "anthropic")
    headers = {"Authorization": f"Bearer {await make_key('use', 'manage')}"}
    requests = _readme_requests()
    assert [path for _, path, _ in requests] == ["/providers/config", "/agent/run", "/agent/run_stream", "/agent/run"]
    for method, path, body in requests[1:]:  # the first would store the placeholder key "sk-..."
        response = await http.request(method, path, json=body, headers=headers)
        assert response.status_code == 200, (path, response.text)
    assert requests[0][2]["provider"] in registry.KINDS
