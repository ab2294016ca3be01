"""Checks of the Helm chart, run by ``make lint`` with the lint tools' own interpreter (.venv/lint).

    check_chart.py            lint and validate the chart with every chart/ci/*-values.yaml
    check_chart.py --render   for each line of stdin (values, a JSON object), one line of JSON:
                              {"objects": [...], "notes": "..."} or {"error": "..."} (for tests)

What is checked, for each CI value file:
  1. yamllint on Chart.yaml, values.yaml and the CI value files;
  2. ``helm lint --strict`` (Helm's own Go code, through helm-python-sdk): chart metadata, values
     against values.schema.json, templates that render;
  3. the rendered manifests: yamllint (duplicate keys, indentation...), then every object against
     the Kubernetes OpenAPI schemas of the oldest supported and the newest known version, strictly
     (an unknown field is an error), with kubernetes-validate.
Nothing here talks to a cluster: admission webhooks, quotas and whether referenced Secrets exist
are not checked.
"""

import argparse
import json
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

CHART = Path(__file__).resolve().parent.parent / "chart"
# The Kubernetes versions the rendered objects must be valid for: Chart.yaml's kubeVersion floor and
# the newest schema kubernetes-validate ships.
KUBE_VERSIONS = ("1.25", kubernetes_validate.latest_version())
RELEASE, NAMESPACE = "qalby", "qalby"

SOURCE_RULES = YamlLintConfig("""
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  truthy: {check-keys: false}
""")
# Rendered output is machine-made: layout rules would only restate the templates' whitespace;
# what matters there is that it parses the same way everywhere (no duplicate keys, sane indentation).
RENDERED_RULES = YamlLintConfig("""
extends: default
rules:
  line-length: disable
  document-start: disable
  comments: disable
  comments-indentation: disable
  empty-lines: disable
  trailing-spaces: disable
  indentation: {spaces: consistent, indent-sequences: whatever}
  truthy: {check-keys: false}
""")


def manifests(values: dict) -> dict[str, str]:
    """Template path -> rendered text, as `helm install` would make them (hooks included)."""
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects_of(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(values: dict) -> tuple[list[dict], str]:
    """The chart's objects for these values, and its NOTES.txt."""
    rendered = manifests(values)
    notes = next((text for path, text in rendered.items() if path.endswith("NOTES.txt")), "")
    objects = [obj for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt") for obj in objects_of(text)]
    return objects, notes


def yamllint_problems(text: str, config: YamlLintConfig, where: str) -> list[str]:
    return [f"{where}:{p.line}:{p.column}: {p.desc} ({p.rule})" for p in linter.run(text, config)]


def check(values_file: Path) -> list[str]:
    problems = yamllint_problems(values_file.read_text(), SOURCE_RULES, str(values_file.relative_to(CHART)))
    values = yaml.safe_load(values_file.read_text()) or {}
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    problems += [f"helm lint: {error}" for error in report.get("errors", [])]
    problems += [
        f"helm lint: {m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2
    ]
    try:
        rendered = manifests(values)
    except helm.HelmError as exc:
        return [*problems, f"render: {exc}"]
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        problems += yamllint_problems(text, RENDERED_RULES, f"rendered {path}")
        for obj in objects_of(text):
            name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    where = "/".join(str(part) for part in exc.absolute_path)
                    problems.append(f"{path}: {name} is not valid for Kubernetes {version} at {where}: {exc.message}")
                except kubernetes_validate.SchemaNotFoundError as exc:
                    problems.append(f"{path}: {name}: {exc.message}")
    return [f"[{values_file.name}] {problem}" for problem in problems]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true", help="render the values given on stdin, one JSON a line")
    if parser.parse_args().render:
        # One process for many renderings: loading Helm's library is most of the cost of one.
        for line in sys.stdin:
            try:
                objects, notes = render(json.loads(line))
                answer = {"objects": objects, "notes": notes}
            except helm.HelmError as exc:
                answer = {"error": str(exc)}
            print(json.dumps(answer), flush=True)
        return 0

    problems = []
    for source in (CHART / "Chart.yaml", CHART / "values.yaml"):
        problems += yamllint_problems(source.read_text(), SOURCE_RULES, f"chart/{source.name}")
    values_files = sorted((CHART / "ci").glob("*-values.yaml"))
    if not values_files:
        problems.append("no chart/ci/*-values.yaml to check the chart with")
    for values_file in values_files:
        problems += check(values_file)
    for problem in problems:
        print(problem)
    print(f"chart: {len(values_files)} value file(s), Kubernetes {' and '.join(KUBE_VERSIONS)}: "
          f"{'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
