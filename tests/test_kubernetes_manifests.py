"""The Kubernetes manifests of deploy/kubernetes and the Dockerfile, checked without a cluster.

- Every Kubernetes object validates against the Kubernetes API's OpenAPI schemas (the
  `kubernetes-validate` package bundles them; strict: unknown fields fail), the Dapr Component
  against a schema of Dapr's Component CRD, and the container of its `dapr.io/component-container`
  annotation as a container of a Pod.
- The pod is then built as Dapr's sidecar injector (v1.18, `pkg/injector/patcher`) builds it:
  the component's container appended with the shared socket volume and
  DAPR_COMPONENT_SOCKETS_FOLDER, daprd with DAPR_COMPONENTS_SOCKETS_FOLDER, volumes the pod lacks
  turned into emptyDirs. On that pod: daprd and the engine use the same socket folder, the
  Component's type matches the socket name, the environment variables are ones
  `dapr-workflows serve` reads (taken from its parser), the store is where it should be.
- The Dockerfile copies files that exist and that .dockerignore lets through, they are enough to
  build the package, and its ENTRYPOINT is the package's console script.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dapr_workflows_component.pluggable.server import default_socket_folder
from dapr_workflows_component.security import OPEN_PATHS
from dapr_workflows_component.telemetry.http import HEALTHZ_PATH, READYZ_PATH
from dapr_workflows_ext.worker import ENGINE_ADDRESS_VARIABLE

from tests.harness.engine_process import EngineProcess
from tests.test_readme import serve_environment_variables, serve_options

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "kubernetes"
VARIANTS = ("sqlite", "postgresql")
# The installed package's metadata, which `pip install -e .` takes from pyproject.toml.
PACKAGE = importlib.metadata.metadata("dapr-workflows")
CONSOLE_SCRIPTS = {e.name for e in importlib.metadata.entry_points(group="console_scripts")}

# The Kubernetes versions the schemas are checked for: an older one still common, and the newest
# the installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())

# The injector's names (dapr/dapr pkg/injector/consts, annotations).
SOCKET_VOLUME = "dapr-components-unix-domain-socket"
DEFAULT_SOCKETS_FOLDER = "/tmp/dapr-components-sockets"
COMPONENT_CONTAINER = "dapr.io/component-container"
INJECT = "dapr.io/inject-pluggable-components"
SOCKETS_FOLDER_ANNOTATION = "dapr.io/pluggable-components-sockets-folder"
API_TOKEN_SECRET = "dapr.io/api-token-secret"

# Dapr's Component CRD (charts/dapr/crds/components.yaml, v1alpha1), as a JSON schema.
COMPONENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "dapr.io/v1alpha1"},
        "kind": {"const": "Component"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "auth": {
            "type": "object",
            "required": ["secretStore"],
            "properties": {"secretStore": {"type": "string"}},
        },
        "scopes": {"type": "array", "items": {"type": "string"}},
        "spec": {
            "type": "object",
            "required": ["metadata", "type", "version"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string"},
                "version": {"type": "string"},
                "ignoreErrors": {"type": "boolean"},
                "initTimeout": {"type": "string"},
                "metadata": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "value": {},
                            "envRef": {"type": "string"},
                            "secretKeyRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}


# ------------------------------------------------------------------------------ loading


def load(variant: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / variant).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name!r}, found {len(found)}"
    return found[0]


def component_container(component: dict[str, Any]) -> dict[str, Any]:
    annotation = component["metadata"].get("annotations", {}).get(COMPONENT_CONTAINER)
    assert annotation, f"the Component has no {COMPONENT_CONTAINER} annotation"
    container = json.loads(annotation)
    assert isinstance(container, dict)
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def env_value(container: dict[str, Any], name: str, default: str) -> str:
    entry = env_of(container).get(name)
    return default if entry is None else str(entry["value"])


def serve_default(flag: str) -> str:
    return serve_options()[flag][1]


def validate_kubernetes(doc: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def as_pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "checked"}, "spec": spec}


# ------------------------------------------------------------------------------ the injector


class InjectedPod:
    """The pod of a Deployment as Dapr's sidecar injector makes it."""

    def __init__(self, deployment: dict[str, Any], components: list[dict[str, Any]]) -> None:
        template = copy.deepcopy(deployment["spec"]["template"])
        annotations = template["metadata"].get("annotations", {})
        self.app_id = annotations["dapr.io/app-id"]
        self.spec = template["spec"]
        self.mount_path = annotations.get(SOCKETS_FOLDER_ANNOTATION) or DEFAULT_SOCKETS_FOLDER
        self.app_containers = [c["name"] for c in self.spec["containers"]]
        self.implicit_empty_dirs: list[str] = []
        volumes = self.spec.setdefault("volumes", [])
        mount = {"name": SOCKET_VOLUME, "mountPath": self.mount_path}
        self.injected: list[dict[str, Any]] = []
        if annotations.get(INJECT) == "true":
            images: set[str] = set()
            for component in components:
                raw = component["metadata"].get("annotations", {}).get(COMPONENT_CONTAINER)
                scopes = component.get("scopes") or []
                if not raw or (scopes and self.app_id not in scopes):
                    continue
                container = json.loads(raw)
                if container["image"] in images:
                    continue
                images.add(container["image"])
                container.setdefault("name", component["metadata"]["name"])
                self.injected.append(container)
        if self.injected:
            volumes.append({"name": SOCKET_VOLUME, "emptyDir": {}})
        for container in self.injected:
            names = {v["name"] for v in volumes}
            container.setdefault("env", []).append(
                {"name": "DAPR_COMPONENT_SOCKETS_FOLDER", "value": self.mount_path}
            )
            for volume_mount in container.get("volumeMounts", []):
                if volume_mount["name"] not in names:
                    self.implicit_empty_dirs.append(volume_mount["name"])
                    volumes.append({"name": volume_mount["name"], "emptyDir": {}})
            container.setdefault("volumeMounts", []).append(dict(mount))
            self.spec["containers"].append(container)
        daprd: dict[str, Any] = {"name": "daprd", "image": "daprio/daprd:1.18.3", "env": []}
        if self.injected:
            daprd["env"].append({"name": "DAPR_COMPONENTS_SOCKETS_FOLDER", "value": self.mount_path})
            daprd["volumeMounts"] = [dict(mount)]
        self.token_secret = annotations.get(API_TOKEN_SECRET)
        if self.token_secret:
            # Into daprd only (pkg/injector/patcher/sidecar_container.go), from the key "token".
            ref = {"secretKeyRef": {"name": self.token_secret, "key": "token"}}
            daprd["env"].append({"name": "DAPR_API_TOKEN", "valueFrom": ref})
        self.daprd = daprd
        self.spec["containers"].insert(len(self.app_containers), daprd)

    def container(self, name: str) -> dict[str, Any]:
        return next(c for c in self.spec["containers"] if c["name"] == name)

    def volume(self, name: str) -> dict[str, Any]:
        return next(v for v in self.spec["volumes"] if v["name"] == name)


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def docs(variant: str) -> list[dict[str, Any]]:
    return load(variant)


@pytest.fixture
def pod(docs: list[dict[str, Any]]) -> InjectedPod:
    components = [d for d in docs if d["kind"] == "Component"]
    return InjectedPod(one(docs, "Deployment"), components)


@pytest.fixture
def engine(pod: InjectedPod) -> dict[str, Any]:
    assert len(pod.injected) == 1, "the injector would add no dapr-workflows container to this pod"
    return pod.injected[0]


class _Environment:
    """os.environ replaced by a container's variables, to resolve them as `dapr-workflows serve` does."""

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = variables

    def __enter__(self) -> None:
        self.saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.variables)

    def __exit__(self, *exc: object) -> None:
        os.environ.clear()
        os.environ.update(self.saved)


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {name: str(e["value"]) for name, e in env_of(container).items() if "value" in e}


# ------------------------------------------------------------------------------ schemas


def test_every_kubernetes_object_matches_the_api_schema(docs: list[dict[str, Any]]) -> None:
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] == "Component":
            jsonschema.validate(doc, COMPONENT_SCHEMA)
        else:
            validate_kubernetes(doc)
    assert {"Deployment", "Component"} <= kinds


def test_the_schema_check_fails_on_a_wrong_manifest(docs: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(one(docs, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["envv"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(deployment)
    deployment = copy.deepcopy(one(docs, "Deployment"))
    deployment["spec"]["replicas"] = "2"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(deployment)
    component = copy.deepcopy(one(docs, "Component"))
    del component["spec"]["version"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(component, COMPONENT_SCHEMA)


def test_the_component_container_annotation_is_a_container_spec(docs: list[dict[str, Any]]) -> None:
    container = component_container(one(docs, "Component"))
    validate_kubernetes(as_pod([container]))
    broken = dict(container, volumeMount=container.get("volumeMounts"))
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_kubernetes(as_pod([broken]))


def test_the_injected_pod_matches_the_api_schema(pod: InjectedPod) -> None:
    validate_kubernetes(as_pod(pod.spec["containers"], pod.spec["volumes"]))


# ------------------------------------------------------------------------------ injection


def test_the_pod_asks_for_daprd_and_the_component(docs: list[dict[str, Any]], pod: InjectedPod) -> None:
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["dapr.io/enabled"] == "true"
    assert annotations[INJECT] == "true"
    component = one(docs, "Component")
    assert pod.app_id in component.get("scopes", []), (
        "scope the Component to the app: any other daprd that loads it has no socket and stops"
    )


def test_the_image_is_the_one_the_dockerfile_builds(engine: dict[str, Any]) -> None:
    name, _, tag = engine["image"].rpartition(":")
    assert name.rsplit("/", 1)[-1] == PACKAGE["Name"]
    assert tag == PACKAGE["Version"]


def test_the_socket_volume_is_mounted_into_daprd_and_the_engine(
    pod: InjectedPod, engine: dict[str, Any]
) -> None:
    assert pod.volume(SOCKET_VOLUME) == {"name": SOCKET_VOLUME, "emptyDir": {}}
    mounts = [m for m in engine["volumeMounts"] if m["name"] == SOCKET_VOLUME]
    assert mounts == [{"name": SOCKET_VOLUME, "mountPath": pod.mount_path}], (
        "the injector mounts the socket volume itself; the annotation must not mount it again"
    )
    assert pod.daprd["volumeMounts"] == mounts
    paths = [m["mountPath"] for m in engine["volumeMounts"]]
    assert len(paths) == len(set(paths)), f"two volumes at one path: {paths}"
    names = [e["name"] for e in engine["env"]]
    assert len(names) == len(set(names)), f"a variable set twice: {names}"


def test_the_engine_serves_its_socket_where_daprd_looks(pod: InjectedPod, engine: dict[str, Any]) -> None:
    env = plain_env(engine)
    with _Environment(env):
        folder = env.get("DAPR_WORKFLOWS_SOCKET_FOLDER") or default_socket_folder()
    daprd_folder = pod.daprd["env"][0]["value"]
    assert daprd_folder == pod.mount_path
    assert folder == daprd_folder, f"the engine's socket is in {folder}, daprd looks in {daprd_folder}"


def test_the_component_type_matches_the_socket_name(
    docs: list[dict[str, Any]], engine: dict[str, Any]
) -> None:
    socket_name = env_value(engine, "DAPR_WORKFLOWS_SOCKET_NAME", serve_default("--socket-name"))
    assert socket_name, "an empty socket name turns the component off"
    assert one(docs, "Component")["spec"]["type"] == f"bindings.{socket_name}"


def test_the_engine_is_given_only_variables_that_serve_reads(engine: dict[str, Any]) -> None:
    unknown = set(env_of(engine)) - serve_environment_variables()
    assert not unknown, f"dapr-workflows serve reads none of {sorted(unknown)}"


def test_daprd_the_worker_and_the_engine_share_the_api_token(
    docs: list[dict[str, Any]], pod: InjectedPod, engine: dict[str, Any]
) -> None:
    """One Secret: daprd gets it from the annotation, the worker and the engine name it themselves."""
    assert pod.token_secret, f"the pod has no {API_TOKEN_SECRET} annotation"
    secret = named(docs, "Secret", pod.token_secret)
    assert "token" in secret["stringData"], "Dapr's injector reads the Secret's key 'token'"
    expected = {"secretKeyRef": {"name": pod.token_secret, "key": "token"}}
    for container in (pod.daprd, engine, *(pod.container(n) for n in pod.app_containers)):
        entry = env_of(container).get("DAPR_API_TOKEN")
        assert entry is not None, f"container {container['name']} has no DAPR_API_TOKEN"
        assert entry.get("valueFrom") == expected, f"{container['name']}: {entry}"
    assert "DAPR_WORKFLOWS_API_TOKEN" not in env_of(engine), "the flag's variable would win over it"


def test_the_readiness_probe_needs_no_token(engine: dict[str, Any]) -> None:
    probe = engine.get("readinessProbe", {}).get("httpGet")
    if probe is not None:
        assert probe["path"] in OPEN_PATHS, f"{probe['path']} answers 401 without the API token"


def test_every_volume_the_engine_mounts_is_declared_by_the_pod(pod: InjectedPod) -> None:
    assert not pod.implicit_empty_dirs, (
        f"the pod declares no volume {pod.implicit_empty_dirs}: the injector would make it an emptyDir, "
        "which is lost with the pod"
    )


def test_the_worker_reaches_the_engine_of_its_pod(pod: InjectedPod, engine: dict[str, Any]) -> None:
    engine_address = env_value(engine, "DAPR_WORKFLOWS_ENGINE_ADDRESS", serve_default("--engine-address"))
    for name in pod.app_containers:
        worker_address = env_value(pod.container(name), ENGINE_ADDRESS_VARIABLE, "127.0.0.1:4100")
        host, _, port = worker_address.rpartition(":")
        assert host in ("127.0.0.1", "localhost"), "the worker should use the engine of its own pod"
        assert port == engine_address.rpartition(":")[2]


PROBES = (("livenessProbe", HEALTHZ_PATH), ("readinessProbe", READYZ_PATH))


def probe_url(engine: dict[str, Any], probe: dict[str, Any]) -> str:
    """The URL a probe asks: of its httpGet (at the pod's IP), or the one its exec command opens."""
    if "httpGet" in probe:
        ports = {p["name"]: p["containerPort"] for p in engine.get("ports", [])}
        port = probe["httpGet"]["port"]
        return f"http://pod-ip:{ports.get(port, port)}{probe['httpGet']['path']}"
    match = re.search(r"http://[^'\"\s]+", " ".join(probe["exec"]["command"]))
    assert match, f"the exec probe {probe['exec']['command']} opens no URL"
    return match.group(0)


def test_the_probes_ask_healthz_and_readyz_where_the_engine_serves_them(engine: dict[str, Any]) -> None:
    host, _, port = env_value(
        engine, "DAPR_WORKFLOWS_HTTP_ADDRESS", serve_default("--http-address")
    ).rpartition(":")
    for name, path in PROBES:
        assert name in engine, f"the engine's container has no {name}"
        url = urlsplit(probe_url(engine, engine[name]))
        assert url.path == path and url.port == int(port)
        if url.hostname == "pod-ip":
            assert host == "0.0.0.0", "an httpGet probe reaches the pod's IP, not its loopback"
        else:
            assert url.hostname == host, "an exec probe asks the address the engine listens on"


def test_the_exec_probes_pass_on_a_serving_engine_and_fail_without_one(tmp_path: Path) -> None:
    engine = component_container(one(load("sqlite"), "Component"))
    proc = EngineProcess(tmp_path).start()
    try:
        for name, _ in PROBES:
            command = list(engine[name]["exec"]["command"])
            assert command[0] == "python"
            url = probe_url(engine, engine[name])
            here = url.replace(urlsplit(url).netloc, proc.http_address)
            run = [sys.executable, *[part.replace(url, here) for part in command[1:]]]
            assert subprocess.run(run, capture_output=True, timeout=30).returncode == 0, name
    finally:
        proc.kill()
    for name, _ in PROBES:
        command = engine[name]["exec"]["command"]
        url = probe_url(engine, engine[name])
        gone = url.replace(urlsplit(url).netloc, proc.http_address)
        run = [sys.executable, *[part.replace(url, gone) for part in command[1:]]]
        assert subprocess.run(run, capture_output=True, timeout=30).returncode != 0, name


def test_the_engine_runs_as_the_images_user(docs: list[dict[str, Any]], engine: dict[str, Any]) -> None:
    uid, gid = dockerfile_user()
    security = engine["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security.get("runAsUser", uid), security.get("runAsGroup", gid)) == (uid, gid)


# ------------------------------------------------------------------------------ the stores


def test_sqlite_keeps_its_file_on_the_claim_with_one_replica() -> None:
    docs = load("sqlite")
    pod = InjectedPod(one(docs, "Deployment"), [one(docs, "Component")])
    engine = pod.injected[0]
    url = env_value(engine, "DAPR_WORKFLOWS_STORE", serve_default("--store"))
    assert url.startswith("sqlite:////"), f"an absolute path on the volume, not {url}"
    path = Path(urlsplit(url).path[1:])
    mount = next(m for m in engine["volumeMounts"] if path.is_relative_to(m["mountPath"]))
    claim = pod.volume(mount["name"])["persistentVolumeClaim"]["claimName"]
    assert claim == one(docs, "PersistentVolumeClaim")["metadata"]["name"]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1, "one engine per SQLite file"
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "the old pod must let go of the file first"
    # The volume is writable by the engine's user.
    assert pod.spec["securityContext"]["fsGroup"] == dockerfile_user()[1]


def test_postgresql_replicas_share_the_database_of_the_secret() -> None:
    docs = load("postgresql")
    pod = InjectedPod(one(docs, "Deployment"), [one(docs, "Component")])
    engine = pod.injected[0]
    reference = env_of(engine)["DAPR_WORKFLOWS_STORE"]["valueFrom"]["secretKeyRef"]
    secret = named(docs, "Secret", reference["name"])
    url = secret["stringData"][reference["key"]]
    assert urlsplit(url).scheme == "postgresql" and urlsplit(url).hostname
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert not any(d["kind"] == "PersistentVolumeClaim" for d in docs)


def test_postgresql_http_api_listens_where_the_probe_and_service_reach_it() -> None:
    docs = load("postgresql")
    pod = InjectedPod(one(docs, "Deployment"), [one(docs, "Component")])
    engine = pod.injected[0]
    host, _, port = env_value(
        engine, "DAPR_WORKFLOWS_HTTP_ADDRESS", serve_default("--http-address")
    ).rpartition(":")
    assert host == "0.0.0.0", "the kubelet's probe and the Service reach the pod's IP, not its loopback"
    ports = {p["name"]: p["containerPort"] for p in engine["ports"]}
    probe = engine["readinessProbe"]["httpGet"]
    assert ports[probe["port"]] == int(port)
    service = one(docs, "Service")
    assert (
        service["spec"]["selector"].items()
        <= one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert all(ports[p["targetPort"]] == int(port) for p in service["spec"]["ports"])


# ------------------------------------------------------------------------------ the Dockerfile

DOCKERFILE = REPO / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


def dockerfile_user() -> tuple[int, int]:
    users = [args for op, args in dockerfile_instructions() if op == "USER"]
    assert users, "the image must not run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and (not gid or gid.isdigit()), "numeric, so that Kubernetes can check runAsNonRoot"
    assert int(uid) != 0
    return int(uid), int(gid or uid)


def dockerignore_allows(path: str) -> bool:
    """.dockerignore's rule: the last pattern that matches the path or a parent of it decides."""
    allowed = True
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()]
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        if body.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, body[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatch(c, body) for c in candidates)
        if matched:
            allowed = negate
    return allowed


def copied_sources() -> list[tuple[str, str]]:
    """(source, destination in the build stage's WORKDIR) of each COPY from the build context."""
    copies = []
    for op, args in dockerfile_instructions():
        if op != "COPY" or args.startswith("--from"):
            continue
        *sources, dest = args.split()
        for source in sources:
            into_folder = dest.endswith("/") or len(sources) > 1
            target = f"{dest.rstrip('/')}/{Path(source).name}" if into_folder else dest
            copies.append((source, os.path.normpath(target)))
    return copies


def test_the_image_is_built_on_python_slim_and_runs_serve() -> None:
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    assert bases and all(b == "python:3.11-slim" for b in bases), bases
    entrypoints = [args for op, args in instructions if op == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    command = json.loads(entrypoints[0])
    assert command == ["dapr-workflows", "serve"]
    assert command[0] in CONSOLE_SCRIPTS, f"{command[0]} is not a console script of the package"
    assert not any(op == "CMD" for op, _ in instructions)
    assert not any(op == "EXPOSE" for op, _ in instructions), "the pod's containers need no published port"


def test_the_images_variables_are_read_by_serve() -> None:
    names: set[str] = set()
    for op, args in dockerfile_instructions():
        if op == "ENV":
            names |= set(re.findall(r"(\w+)=", args))
    ours = {n for n in names if not n.startswith("PYTHON") and n != "PATH"}
    assert "DAPR_WORKFLOWS_STORE" in ours
    assert ours <= serve_environment_variables(), sorted(ours - serve_environment_variables())


def test_every_copied_path_exists_and_passes_dockerignore() -> None:
    copies = copied_sources()
    assert copies
    for source, _ in copies:
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert dockerignore_allows(source), f"COPY {source}: .dockerignore leaves it out of the build context"
    assert not dockerignore_allows(".venv/bin/python")
    assert not dockerignore_allows("component/dapr_workflows_component/__pycache__/cli.cpython-311.pyc")


def context_files() -> Iterator[tuple[Path, str]]:
    """(file, where the Dockerfile's COPY puts it) for the files taken from the build context."""
    for source, dest in copied_sources():
        path = REPO / source
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            relative = file.relative_to(REPO).as_posix()
            if dockerignore_allows(relative):
                inside = file.relative_to(path).as_posix() if path.is_dir() else ""
                yield file, os.path.normpath(os.path.join(dest, inside))


def test_the_copied_files_build_the_package(tmp_path: Path) -> None:
    """The package builds (`pip install .` in the image builds this wheel) from only what the COPYs
    bring, where they put it."""
    context = tmp_path / "context"
    for file, target in context_files():
        (context / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, context / target)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "wheels").glob("dapr_workflows-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "dapr-workflows = dapr_workflows_component.cli:main" in archive.read(entry_points).decode()
    assert "dapr_workflows_component/cli.py" in names
    assert any(n.startswith("dapr_workflows_component/protos/") and n.endswith(".proto") for n in names)
    assert "dapr_workflows_ext/__init__.py" in names


def test_the_engine_may_serve_in_the_pods_socket_volume(engine: dict[str, Any]) -> None:
    """Kubernetes makes an emptyDir writable by every user without the sticky bit, a folder the
    engine refuses unless told that it may serve there."""
    allowed = env_value(
        engine, "DAPR_WORKFLOWS_ALLOW_FOREIGN_SOCKET_FOLDER", serve_default("--allow-foreign-socket-folder")
    )
    assert allowed == "true"
