"""The mutation check of the rules that matter: ``make mutation`` (or ``python scripts/mutation.py``).

mutmut (pinned in requirements-dev.lock, configured in pyproject's [tool.mutmut]) copies the project
into ./mutants, mutates the fallback engine, the redaction, the SSRF guard and the client-key auth
there, and runs for each mutant only the fast tests that reach the mutated function. This prints,
per module, how many mutants were killed, timed out or survived, then every survivor, and exits
non-zero when a survivor (or a mutant no test reaches) is not explained in scripts/mutation-equivalent.txt.

mutmut keeps its work in ./mutants (about 6 minutes a run on two cores, a rerun included); ``--fresh``
starts from a new copy. ``--max-children`` bounds the mutants run in parallel.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = Path(sys.executable).parent / "mutmut"
ALLOW_LIST = ROOT / "scripts" / "mutation-equivalent.txt"

# The rules that matter, by mutant name (mutmut names a mutant <module>.<mangled function>__mutmut_<n>).
# Of providers/adapters/errors.py only redact() is in scope: the rest is the adapters' error mapping.
MODULES = {
    "engine      providers/fallback.py": "providers.fallback.*",
    "redaction   providers/adapters/errors.py:redact": "providers.adapters.errors.x_redact__mutmut_*",
    "SSRF guard  agent/tools/guard.py": "agent.tools.guard.*",
    "auth        providers/auth.py": "providers.auth.*",
}
# Timeouts count as killed (an infinite loop is caught); "no tests" means no fast test reaches the code.
FAILING = {"survived", "no tests", "suspicious", "not checked", "segfault"}


def allow_list() -> dict[str, str]:
    """Equivalent mutants: ``<mutant name>  <why it cannot be told apart>``, one a line, # comments."""
    allowed: dict[str, str] = {}
    for number, line in enumerate(ALLOW_LIST.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, why = line.partition(" ")
        if not why.strip():
            sys.exit(f"{ALLOW_LIST.name}:{number}: {name} needs a reason (why it is equivalent)")
        allowed[name] = why.strip()
    return allowed


def results() -> dict[str, str]:
    output = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    found = (re.match(r"\s*(\S+): (.+)$", line) for line in output.splitlines())
    return {m[1]: m[2].strip() for m in found if m}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--fresh", action="store_true", help="forget cached results (./mutants) first")
    args = parser.parse_args()
    if args.fresh:
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # the fast tests run on the embedded SQLite default
    started = time.monotonic()
    run = subprocess.run([MUTMUT, "run", "--max-children", str(args.max_children), *MODULES.values()],
                         cwd=ROOT, env=env)
    took = time.monotonic() - started
    if run.returncode != 0:
        print(f"mutmut run failed (exit {run.returncode})", file=sys.stderr)
        return run.returncode

    statuses = results()
    allowed = allow_list()
    unexplained: list[str] = []
    print(f"\nmutation check: {took:.0f}s\n")
    print(f"{'module':50} {'mutants':>7} {'killed':>7} {'timeout':>7} {'survived':>8} {'equivalent':>10}")
    for label, pattern in MODULES.items():
        names = sorted(n for n in statuses if fnmatch.fnmatch(n, pattern))
        count = Counter(statuses[n] for n in names)
        bad = [n for n in names if statuses[n] in FAILING]
        explained = [n for n in bad if n in allowed]
        print(f"{label:50} {len(names):7} {count['killed'] + count['caught by type check']:7} "
              f"{count['timeout']:7} {len(bad):8} {len(explained):10}")
        unexplained += [n for n in bad if n not in allowed]
    survivors = [n for n in statuses if statuses[n] in FAILING and any(fnmatch.fnmatch(n, p) for p in MODULES.values())]
    if survivors:
        print("\nsurvivors (`mutmut show <name>` prints the change):")
        for name in sorted(survivors):
            why = allowed.get(name)
            print(f"  {name}: {statuses[name]}" + (f"  [equivalent: {why}]" if why else ""))
    # A mutant's number moves when its function changes: an entry that no longer names a survivor is stale.
    stale = [n for n in allowed if statuses.get(n) not in FAILING]
    if stale:
        print(f"\n{ALLOW_LIST.name}: no longer survivors (renumbered or killed; check and remove):")
        for name in stale:
            print(f"  {name}: {statuses.get(name, 'no such mutant')}")
    if unexplained:
        print(f"\n{len(unexplained)} surviving mutant(s) neither killed by a test nor explained in {ALLOW_LIST.name}")
        return 1
    print("\nevery mutant is killed or explained")
    return 0


if __name__ == "__main__":
    sys.exit(main())
