"""The import structure README's Layout promises: no arrow the wrong way between the rooms."""

import subprocess
import sys

from tests.processes import ROOT


def test_no_import_runs_the_wrong_way():
    result = subprocess.run([sys.executable, "scripts/import_graph.py"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("0 arrow(s) the wrong way"), result.stdout
