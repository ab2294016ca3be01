"""Which product module imports which, summed up by component, and the arrows that run the wrong way.

    .venv/bin/python scripts/import_graph.py            # the working tree
    .venv/bin/python scripts/import_graph.py --modules  # every module-to-module edge

A component is a top-level package, or a subpackage of ``providers`` (``providers.adapters``,
``providers.requestlogs``): the rooms CONVENTIONS.md names. Imports inside functions count too: a
lazy import is still a dependency. The allowed direction: ``qalby_site`` (the site) may use the apps
(``agent``, ``audio``, ``providers``) only through its API router and settings; ``agent`` and ``audio``
use ``providers``; ``providers`` knows neither; nothing imports ``providers.requestlogs`` from the site.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("qalby_site", "providers", "agent", "audio")
ROOMS = ("providers.adapters", "providers.requestlogs")
# Arrows that may not exist: (importer component, imported component prefix).
FORBIDDEN = [
    ("providers", "agent"), ("providers", "audio"),
    ("agent", "qalby_site"), ("audio", "qalby_site"), ("providers", "qalby_site"),
    ("qalby_site", "providers.requestlogs"),
]


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def component(module: str) -> str:
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    return module.split(".")[0]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def main() -> int:
    sources = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts]
    known = {module_of(p) for p in sources}
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sources:
        importer = module_of(path)
        for name in imports(path):
            while name not in known and "." in name:  # `from pkg import name` names an attribute
                name = name.rpartition(".")[0]
            if name in known and component(name) != component(importer):
                edges[(component(importer), component(name))].add(f"{importer} -> {name}")
    bad = 0
    for (source, target), detail in sorted(edges.items()):
        wrong = any(source == s and (target == t or target.startswith(t + ".")) for s, t in FORBIDDEN)
        bad += wrong
        print(f"{'WRONG ' if wrong else ''}{source} -> {target} ({len(detail)})")
        if "--modules" in sys.argv or wrong:
            for line in sorted(detail):
                print(f"    {line}")
    lines = {pkg: sum(len(p.read_text().splitlines()) for p in sources if module_of(p).startswith(pkg))
             for pkg in PACKAGES}
    print("lines:", ", ".join(f"{pkg} {n}" for pkg, n in lines.items()))
    print(f"{bad} arrow(s) the wrong way")
    return 0


if __name__ == "__main__":
    sys.exit(main())
