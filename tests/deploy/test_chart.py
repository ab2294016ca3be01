"""The Helm chart, rendered by Helm's own engine (helm-python-sdk in .venv/lint, installed by `make
lint`) and read as Kubernetes objects. `make lint` checks those objects against Kubernetes' schemas;
these tests check what they mean: the promises of values.yaml and of the README's Deployment section.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_PYTHON = ROOT / ".venv" / "lint" / "bin" / "python"
LINT_STAMP = ROOT / ".venv" / "lint" / ".installed"  # written by the Makefile once the lock file is installed
SECRET = {"secrets": {"existingSecret": "qalby-secrets"}}
SECRET_NAMES = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "QALBY_ENCRYPTION_KEYS")

# Not a skip: a chart test that skips silently passes whatever the chart says. `make test` runs
# `make lint` first, and `make test-sqlite` / `make test-postgres` build the lint venv too.
MISSING_RENDERER = (
    f"the chart renderer is not installed: {LINT_STAMP} is missing. Run `make lint` once (it builds the "
    "lint tools' own venv, .venv/lint, from requirements-lint.lock: helm-python-sdk, kubernetes-validate, "
    "yamllint), then run these tests again."
)


class Rendered:
    def __init__(self, objects: list[dict], notes: str) -> None:
        self.objects, self.notes = objects, notes

    def all(self, kind: str) -> list[dict]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.all(kind)
        assert len(found) == 1, f"{len(found)} {kind} objects"
        return found[0]

    @property
    def settings(self) -> dict[str, str]:
        return self.one("ConfigMap")["data"]

    @property
    def server(self) -> dict:
        return self.one("Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def helm():
    """``render(values)`` -> Rendered, or the error text when Helm refuses the values."""
    if not LINT_STAMP.exists():
        pytest.fail(MISSING_RENDERER, pytrace=False)
    process = subprocess.Popen([str(LINT_PYTHON), str(ROOT / "scripts" / "check_chart.py"), "--render"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def render(values: dict) -> Rendered | str:
        process.stdin.write(json.dumps(values) + "\n")
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        return answer["error"] if "error" in answer else Rendered(answer["objects"], answer["notes"])

    yield render
    process.stdin.close()
    process.wait(timeout=10)


def merged(*parts: dict) -> dict:
    result: dict = {}
    for part in parts:
        for key, value in part.items():
            result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
    return result


def dockerfile(instruction: str) -> str:
    return re.search(rf"^{instruction}\s+(.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE).group(1)


def test_install_without_a_secret_name_is_refused_with_what_to_set(helm):
    error = helm({})
    assert "no Secret named for DATABASE_URL: set secrets.existingSecret" in error


def test_secrets_are_mounted_files_named_by_reference_never_values(helm):
    chart = helm(merged(SECRET, {"secrets": {"secretKey": {"name": "django", "key": "key"}}}))
    assert not chart.all("Secret")  # the chart creates none: they are the operator's
    container = chart.server["containers"][0]
    files = {env["name"]: env["value"] for env in container["env"]}
    assert files == {f"{name}_FILE": f"/run/secrets/qalby/{name}" for name in SECRET_NAMES if name != "REDIS_URL"}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
    assert mount == {"name": "secrets", "mountPath": "/run/secrets/qalby", "readOnly": True}
    volume = next(v for v in chart.server["volumes"] if v["name"] == "secrets")
    sources = {s["secret"]["items"][0]["path"]: (s["secret"]["name"], s["secret"]["items"][0]["key"])
               for s in volume["projected"]["sources"]}
    assert sources == {"DATABASE_URL": ("qalby-secrets", "DATABASE_URL"), "SECRET_KEY": ("django", "key"),
                       "QALBY_ENCRYPTION_KEYS": ("qalby-secrets", "QALBY_ENCRYPTION_KEYS")}
    assert not set(chart.settings) & {*SECRET_NAMES, *(f"{name}_FILE" for name in SECRET_NAMES)}

    more = helm(merged(SECRET, {"secrets": {"redisUrl": {"enabled": True, "name": "redis", "key": "url"},
                                            "extra": [{"env": "QALBY_METRICS_TOKEN", "name": "metrics", "key": "t"}]}}))
    volume = next(v for v in more.server["volumes"] if v["name"] == "secrets")
    sources = [s["secret"] for s in volume["projected"]["sources"]]
    assert {"name": "redis", "items": [{"key": "url", "path": "REDIS_URL"}]} in sources
    assert {"name": "metrics", "items": [{"key": "t", "path": "QALBY_METRICS_TOKEN"}]} in sources
    env = more.server["containers"][0]["env"]
    assert {"name": "REDIS_URL_FILE", "value": "/run/secrets/qalby/REDIS_URL"} in env
    assert {"name": "QALBY_METRICS_TOKEN_FILE", "value": "/run/secrets/qalby/QALBY_METRICS_TOKEN"} in env


def test_replicas_run_the_image_as_built(helm):
    chart = helm(SECRET)
    container = chart.server["containers"][0]
    assert container["args"] == ["serve"]
    assert container["image"] == "qalby-proxy:0.1.0"  # the chart's appVersion by default
    assert chart.settings["DEBUG"] == "0" and chart.settings["HOST"] == "0.0.0.0"
    # The image's user, port and read-only code: the chart's security context must fit them.
    user = dockerfile("USER").split(":")[0]
    assert chart.server["securityContext"]["runAsUser"] == int(user)
    assert chart.server["securityContext"]["runAsNonRoot"] is True
    assert chart.server["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert dockerfile("EXPOSE") == chart.settings["PORT"] == "8000"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert chart.one("Deployment")["spec"]["replicas"] == 2


def test_probes_reach_the_health_endpoints_with_an_allowed_host(helm):
    chart = helm(merged(SECRET, {"ingress": {"enabled": True}, "allowedHosts": ["proxy.corp.example"]}))
    container = chart.server["containers"][0]
    paths = {probe: container[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    allowed = chart.settings["ALLOWED_HOSTS"].split(",")
    for probe in paths:
        assert container[probe]["httpGet"]["port"] == "http"
        [header] = container[probe]["httpGet"]["httpHeaders"]
        assert header["name"] == "Host" and header["value"] in allowed  # the pod IP would be refused
    service = chart.one("Service")["metadata"]["name"]
    assert {service, f"{service}.qalby.svc.cluster.local", "qalby.example.com", "proxy.corp.example"} <= set(allowed)


def test_graceful_shutdown_finishes_streams_then_leaves_time_to_flush_logs(helm):
    chart = helm(merged(SECRET, {"gracefulShutdown": {"preStopSeconds": 7, "drainSeconds": 240, "logFlushSeconds": 25}}))
    container = chart.server["containers"][0]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    assert chart.settings["QALBY_SHUTDOWN_GRACE_SECONDS"] == "240"
    assert chart.settings["QALBY_LOG_FLUSH_SECONDS"] == "25"
    # Kubernetes kills the process only after the pause, the drain and the log flush could all run.
    assert chart.server["terminationGracePeriodSeconds"] == 7 + 240 + 25 + 10
    rollout = chart.one("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert rollout["maxUnavailable"] == 0  # a new replica is ready before an old one stops


def test_several_replicas_budget_and_autoscaling(helm):
    chart = helm(SECRET)
    budget = chart.one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"] == chart.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert not chart.all("HorizontalPodAutoscaler")
    spread = chart.server["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["whenUnsatisfiable"] == "ScheduleAnyway"

    scaled = helm(merged(SECRET, {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9}}))
    hpa = scaled.one("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": scaled.one("Deployment")["metadata"]["name"]}
    assert "replicas" not in scaled.one("Deployment")["spec"]  # the autoscaler owns the count

    single = helm(merged(SECRET, {"replicaCount": 1, "podDisruptionBudget": {"enabled": False}}))
    assert single.one("Deployment")["spec"]["replicas"] == 1 and not single.all("PodDisruptionBudget")


def test_migrations_run_once_per_release_in_a_hook_job(helm):
    chart = helm(merged(SECRET, {"config": {"LOG_LEVEL": "DEBUG"}}))
    job = chart.one("Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["migrate"] and pod["restartPolicy"] == "Never"
    assert container["image"] == chart.server["containers"][0]["image"]
    # Hooks run before the release's ConfigMap exists: the same settings are inlined.
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "envFrom" not in container
    assert {k: env[k] for k in chart.settings} == chart.settings
    assert env["LOG_LEVEL"] == "DEBUG"
    assert env["DATABASE_URL_FILE"] == "/run/secrets/qalby/DATABASE_URL"
    assert pod["securityContext"] == chart.server["securityContext"]
    # Its pod must not be taken for a replica by the Service or the budget.
    selector = chart.one("Service")["spec"]["selector"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items()

    assert not helm(merged(SECRET, {"migrations": {"enabled": False}})).all("Job")


def test_ingress_is_optional_and_routes_to_the_service(helm):
    assert not helm(SECRET).all("Ingress")
    chart = helm(merged(SECRET, {"ingress": {
        "enabled": True, "className": "nginx", "tls": [{"secretName": "tls", "hosts": ["qalby.example.com"]}]}}))
    spec = chart.one("Ingress")["spec"]
    assert spec["ingressClassName"] == "nginx"
    [rule] = spec["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = chart.one("Service")
    assert backend == {"name": service["metadata"]["name"], "port": {"number": service["spec"]["ports"][0]["port"]}}
    assert "https://qalby.example.com/healthz" in chart.notes


def test_a_settings_change_rolls_the_replicas(helm):
    def checksum(values):
        return helm(values).one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(SECRET) == checksum(SECRET)
    assert checksum(SECRET) != checksum(merged(SECRET, {"config": {"QALBY_IDLE_TIMEOUT": "30"}}))


def test_network_policy_is_optional_and_lets_through_only_what_the_proxy_needs(helm):
    assert not helm(SECRET).all("NetworkPolicy")
    chart = helm(merged(SECRET, {"networkPolicy": {"enabled": True}}))
    policy = chart.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    # Both the replicas and the migration job (which reaches the database too) are covered.
    selector = policy["podSelector"]["matchLabels"].items()
    assert selector <= chart.one("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    assert selector <= chart.one("Job")["spec"]["template"]["metadata"]["labels"].items()
    [ingress] = policy["ingress"]
    assert ingress == {"ports": [{"port": 8000, "protocol": "TCP"}]}  # the HTTP port only, from anywhere
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in policy["egress"]]
    assert ports == [[(53, "TCP"), (53, "UDP")], [(5432, "TCP")], [(443, "TCP")]]  # no Redis configured
    dns = policy["egress"][0]["to"]
    assert dns[0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    # Wherever "any address" is allowed, the cloud metadata service is not: it hands out node credentials.
    for rule in policy["egress"][1:]:
        blocks = {peer["ipBlock"]["cidr"]: set(peer["ipBlock"]["except"]) for peer in rule["to"]}
        assert set(blocks) == {"0.0.0.0/0", "::/0"}
        assert "169.254.169.254/32" in blocks["0.0.0.0/0"] and "fd00:ec2::254/128" in blocks["::/0"]

    database = [{"podSelector": {"matchLabels": {"app": "postgres"}}}]
    chart = helm(merged(SECRET, {"secrets": {"redisUrl": {"enabled": True}}, "networkPolicy": {
        "enabled": True, "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "edge"}}}],
        "database": {"port": 6432, "to": database}, "redis": {"port": 6380, "to": []},
        "internet": {"ports": [443], "except": ["10.0.0.0/8", "fd00::/8"]},
        "extraEgress": [{"ports": [{"port": 4318}]}]}}))
    policy = chart.one("NetworkPolicy")["spec"]
    assert policy["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"team": "edge"}}}]
    dns, db, redis, internet, extra = policy["egress"]
    assert db == {"ports": [{"port": 6432, "protocol": "TCP"}], "to": database}
    assert redis["ports"] == [{"port": 6380, "protocol": "TCP"}]
    excepted = {peer["ipBlock"]["cidr"]: set(peer["ipBlock"]["except"]) for peer in internet["to"]}
    assert excepted == {"0.0.0.0/0": {"169.254.169.254/32", "10.0.0.0/8"}, "::/0": {"fd00:ec2::254/128", "fd00::/8"}}
    assert extra == {"ports": [{"port": 4318}]}


def mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), quantity
    return int(quantity.removesuffix("Mi")) * 1024 * 1024


def test_tmp_holds_the_largest_audio_upload_three_times_over(helm):
    from django.conf import settings

    def tmp(values):
        volume = next(v for v in helm(merged(SECRET, values)).server["volumes"] if v["name"] == "tmp")
        assert volume["emptyDir"]["medium"] == "Memory"
        return volume["emptyDir"]["sizeLimit"]

    # The app's own limit for a transcription body (base64 JSON of the largest audio), as settings.py sets it.
    [(_prefix, body)] = settings.QALBY_BODY_LIMITS
    assert settings.QALBY_MAX_AUDIO_BYTES == 25 * 1024 * 1024  # the default the chart assumes
    assert tmp({}) == "198Mi"
    assert mebibytes(tmp({})) >= 4 * body
    # Larger uploads allowed in config: /tmp grows with them.
    assert mebibytes(tmp({"config": {"QALBY_MAX_AUDIO_BYTES": str(50 * 1024 * 1024)}})) >= 4 * (body * 2)
    assert tmp({"tmpSizeLimit": "1Gi"}) == "1Gi"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": "two"}, "at '/replicaCount': got string, want integer"),
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"config": {"QALBY_MAX_BODY_BYTES": 2097152}}, "at '/config/QALBY_MAX_BODY_BYTES': got number, want string"),
        ({"config": {"SECRET_KEY": "hunter2"}}, "config.SECRET_KEY is a secret: put it in a Secret"),
        ({"config": {"DATABASE_URL_FILE": "/x"}}, "config.DATABASE_URL_FILE is a secret"),
        ({"config": {"QALBY_METRICS_TOKEN": "t"}}, "config.QALBY_METRICS_TOKEN is a secret"),
        ({"config": {"SMTP_PASSWORD": "p"}}, "config.SMTP_PASSWORD is a secret"),
        ({"config": {"DEBUG": "1"}}, "config.DEBUG cannot be set: the chart always runs in production mode"),
        ({"config": {"ALLOWED_HOSTS": "*"}}, "config.ALLOWED_HOSTS cannot be set: set allowedHosts"),
        ({"secrets": {"existingSecret": "", "databaseUrl": {"name": "db"}, "secretKey": {"name": "dj"},
                      "encryptionKeys": {"name": "enc"}, "redisUrl": {"enabled": True}}},
         "secrets.redisUrl is enabled but no Secret is named"),
        ({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
         "autoscaling.minReplicas must not be larger than autoscaling.maxReplicas"),
        ({"gracefulShutdown": {"drainSeconds": -1}}, "at '/gracefulShutdown/drainSeconds'"),
        ({"config": {"QALBY_SHUTDOWN_GRACE_SECONDS": "5"}}, "set gracefulShutdown.drainSeconds instead"),
        ({"tmpSizeLimit": "lots"}, "at '/tmpSizeLimit'"),
        ({"networkPolicy": {"enabled": True, "egress": []}}, "additional properties 'egress' not allowed"),
        ({"networkPolicy": {"internet": {"ports": [443], "except": ["metadata"]}}}, "at '/networkPolicy/internet/except/0'"),
    ],
)
def test_bad_values_are_refused_with_a_message_naming_them(helm, values, message):
    error = helm(merged(SECRET, values))
    assert isinstance(error, str), "the values were accepted"
    assert message in error
