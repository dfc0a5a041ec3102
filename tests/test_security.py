"""Who may call: the API token (Dapr's convention), TLS, client certificates and the access policy.

Real engine processes; real SDK workers and clients in their own processes (their tokens and
certificates come from their environment, as Dapr's SDK takes `DAPR_API_TOKEN`); raw gRPC and
plain HTTPS clients in the test process. Certificates come from a CA made for the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from dapr_workflows_component.access_policy import PolicyFileError, load_policy
from dapr_workflows_component.protos import durabletask_dialect_pb2 as dt_pb

from tests.harness.certs import Pair, ThrowawayCa
from tests.harness.daprd import Daprd, component_yaml
from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import SERVICE
from tests.harness.sdk_host import SdkError, SdkHost
from tests.harness.shared import unique, wait_until

TOKEN = "s3cret"
ENGINE_ENV = {"DAPR_API_TOKEN": TOKEN}


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[Callable[..., SdkHost]]:
    started: list[SdkHost] = []

    def start(dialect: str, address: str, worker: bool = True, **env: str) -> SdkHost:
        log = tmp_path / f"{dialect}-host-{len(started) + 1}.log"
        host = SdkHost(dialect, address, log, worker=worker, env=env)
        started.append(host)
        return host

    yield start
    for host in started:
        if host.proc.poll() is None:
            host.close()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCa:
    return ThrowawayCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_pair(ca: ThrowawayCa) -> Pair:
    return ca.issue("engine", server=True)


@contextmanager
def _engine(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path, "--socket-name", "", *args, env=env).start()
    try:
        yield proc
    finally:
        proc.kill()


def refusal(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """The log of an engine that refuses to start with `args`."""
    with pytest.raises(RuntimeError, match="the engine exited") as err:
        EngineProcess(tmp_path, "--socket-name", "", *args, env=env).start()
    return str(err.value)


# ------------------------------------------------------------------------------ raw clients


def grpc_call(
    address: str,
    method: str,
    request: Any,
    metadata: list[tuple[str, str]] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> bytes:
    channel = (
        grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    )
    with channel:
        call = channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)
        return call(request.SerializeToString(), metadata=metadata, timeout=10)  # type: ignore[no-any-return]


def grpc_error(*args: Any, **kwargs: Any) -> grpc.RpcError:
    try:
        grpc_call(*args, **kwargs)
    except grpc.RpcError as err:
        return err
    raise AssertionError("the call succeeded; an error was expected")


def http(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    body: bytes | None = None,
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, _body(response.headers, response.read())
    except urllib.error.HTTPError as err:
        return err.code, _body(err.headers, err.read())


def _body(headers: Any, raw: bytes) -> Any:
    """JSON when the answer says so; the router's own 404 is text."""
    return json.loads(raw) if headers.get_content_type() == "application/json" else raw.decode()


def client_context(ca: ThrowawayCa, pair: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.pem))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


def credentials(ca: ThrowawayCa, pair: Pair | None = None) -> grpc.ChannelCredentials:
    if pair is None:
        return grpc.ssl_channel_credentials(ca.pem.read_bytes())
    return grpc.ssl_channel_credentials(ca.pem.read_bytes(), pair.key.read_bytes(), pair.cert.read_bytes())


def get_request(instance_id: str) -> dt_pb.GetInstanceRequest:
    return dt_pb.GetInstanceRequest(instanceId=instance_id)


def run_chain(host: SdkHost) -> None:
    instance_id = host.call("start", workflow="chain", input={"n": 3, "start": 1})
    state = host.call("wait_done", instance_id=instance_id, timeout=60)
    assert state["status"] == "COMPLETED" and state["output"] == "4"


# ------------------------------------------------------------------------------ the API token


@pytest.fixture
def token_engine(tmp_path: Path) -> Iterator[EngineProcess]:
    """An engine with DAPR_API_TOKEN=s3cret in its environment and no token flag."""
    with _engine(tmp_path, "--http-start-timeout-seconds", "0", env=ENGINE_ENV) as proc:
        yield proc


def test_durabletask_clients_need_the_token(
    token_engine: EngineProcess, start_host: Callable[..., SdkHost]
) -> None:
    address = token_engine.durabletask_address
    for metadata in (None, [("dapr-api-token", "wrong")], [("dapr-api-token", "")]):
        err = grpc_error(address, "GetInstance", get_request("x"), metadata=metadata)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        assert TOKEN not in err.details() and "dapr-api-token" in err.details()
    ok = grpc_call(address, "GetInstance", get_request("x"), metadata=[("dapr-api-token", TOKEN)])
    assert not dt_pb.GetInstanceResponse.FromString(ok).exists
    err = grpc_error(token_engine.dapr_address, "GetInstance", get_request("x"))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # Dapr's dialect alike
    # A server stream (a worker's work items) is refused before its first message.
    with grpc.insecure_channel(address) as channel:
        stream = channel.unary_stream(SERVICE + "GetWorkItems", request_serializer=None)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stream(dt_pb.GetWorkItemsRequest().SerializeToString(), timeout=10)))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # The durabletask SDK, as its users would pass the token: metadata=[("dapr-api-token", ...)].
    without = start_host("durabletask", address, worker=False)
    with pytest.raises(SdkError, match="UNAUTHENTICATED"):
        without.call("start", workflow="chain", input={"n": 1, "start": 0})
    wrong = start_host("durabletask", address, worker=False, SDK_HOST_API_TOKEN="wrong")
    with pytest.raises(SdkError, match="UNAUTHENTICATED"):
        wrong.call("start", workflow="chain", input={"n": 1, "start": 0})
    run_chain(start_host("durabletask", address, SDK_HOST_API_TOKEN=TOKEN))
    assert TOKEN not in token_engine.log_text()


def test_dapr_sdk_sends_dapr_api_token(
    token_engine: EngineProcess, start_host: Callable[..., SdkHost]
) -> None:
    """Dapr's WorkflowRuntime and DaprWorkflowClient send $DAPR_API_TOKEN: unchanged apps work."""
    without = start_host("dapr", token_engine.dapr_address, worker=False)
    with pytest.raises(SdkError, match="UNAUTHENTICATED"):
        without.call("start", workflow="chain", input={"n": 1, "start": 0})
    run_chain(start_host("dapr", token_engine.dapr_address, DAPR_API_TOKEN=TOKEN))


def test_http_api_needs_the_token(token_engine: EngineProcess) -> None:
    base = token_engine.http_url + "/v1.0/workflows/dapr"
    for headers in ({}, {"dapr-api-token": "wrong"}):
        status, body = http(f"{base}/missing", headers=headers)
        assert status == 401
        assert body["errorCode"] == "ERR_UNAUTHENTICATED" and TOKEN not in body["message"]
        # Every route, whether it exists or not, answers 401 before anything else.
        assert http(f"{base}/missing/terminate", "POST", headers)[0] == 401
        assert http(token_engine.http_url + "/no/such/route", headers=headers)[0] == 401
    authorized = {"dapr-api-token": TOKEN}
    status, body = http(f"{base}/missing", headers=authorized)
    assert (status, body["errorCode"]) == (404, "ERR_INSTANCE_NOT_FOUND")
    assert http(token_engine.http_url + "/no/such/route", headers=authorized)[0] == 404
    # The API's description holds no data: probes and tools read it without a token.
    assert http(token_engine.http_url + "/v1.0/workflows/openapi.json")[0] == 200
    status, body = http(f"{base}/chain/start", "POST", authorized, body=b'{"n": 1, "start": 0}')
    assert status == 202 and body["instanceID"]


def test_the_flag_wins_over_dapr_api_token(tmp_path: Path) -> None:
    with _engine(tmp_path, env={**ENGINE_ENV, "DAPR_WORKFLOWS_API_TOKEN": "from-flag"}) as engine:
        address = engine.durabletask_address
        err = grpc_error(address, "GetInstance", get_request("x"), metadata=[("dapr-api-token", TOKEN)])
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        grpc_call(address, "GetInstance", get_request("x"), metadata=[("dapr-api-token", "from-flag")])
        assert "API token required (--api-token)" in engine.log_text()


def test_trigger_routes_check_app_api_token(tmp_path: Path) -> None:
    """daprd sends APP_API_TOKEN to its app; the engine's own token is not what it sends."""
    triggers = tmp_path / "triggers.yaml"
    triggers.write_text(json.dumps({"triggers": [{"name": "tick", "binding": "tick", "workflow": "chain"}]}))
    env = {**ENGINE_ENV, "APP_API_TOKEN": "from-daprd"}
    with _engine(tmp_path, "--triggers", str(triggers), env=env) as engine:
        url = engine.http_url
        for path, method in (("/dapr/subscribe", "GET"), ("/tick", "OPTIONS")):
            assert http(url + path, method)[0] == 401
            assert http(url + path, method, {"dapr-api-token": TOKEN})[0] == 401
            assert http(url + path, method, {"dapr-api-token": "from-daprd"})[0] == 200
        # The Workflow API still takes the engine's token, not daprd's.
        assert http(url + "/v1.0/workflows/dapr/x", headers={"dapr-api-token": "from-daprd"})[0] == 401


CRON = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: tick
spec:
  type: bindings.cron
  version: v1
  metadata:
    - name: schedule
      value: "@every 1s"
"""


def test_daprd_reaches_the_engine_with_the_tokens_of_a_dapr_deployment(
    dapr_bin: Path, tmp_path: Path, start_host: Callable[..., SdkHost]
) -> None:
    """As on Kubernetes: daprd, the worker and the engine have DAPR_API_TOKEN; daprd's app token.

    daprd manages workflows through the component socket, which takes no token, and delivers the
    cron binding's events to the trigger routes with APP_API_TOKEN; with another app token, the
    trigger routes refuse it.
    """
    triggers = tmp_path / "triggers.yaml"
    tick = {"name": "tick", "binding": "tick", "workflow": "echo_input"}
    triggers.write_text(json.dumps({"triggers": [tick]}))
    env = {**ENGINE_ENV, "APP_API_TOKEN": "from-daprd"}
    engine = EngineProcess(tmp_path, "--triggers", str(triggers), env=env).start()
    try:
        worker = start_host("dapr", engine.dapr_address, DAPR_API_TOKEN=TOKEN)
        resources = {"workflows.yaml": component_yaml(metadata={"direction": "output"}), "tick.yaml": CRON}
        app_port = int(engine.http_address.rsplit(":", 1)[1])
        daprd_env = {"DAPR_API_TOKEN": TOKEN, "APP_API_TOKEN": "from-daprd"}
        daprd = Daprd(dapr_bin, engine, tmp_path, resources, app_port=app_port, env=daprd_env)
        try:
            daprd.start()
            instance_id = unique("through-daprd")
            metadata = {"workflowName": "echo_input", "instanceID": instance_id}
            start = json.dumps({"operation": "start", "metadata": metadata}).encode()
            url = f"http://127.0.0.1:{daprd.http_port}/v1.0/bindings/workflows"
            headers = {"Content-Type": "application/json"}
            assert http(url, "POST", headers, body=start)[0] == 401  # daprd's own check
            status, body = http(url, "POST", {**headers, "dapr-api-token": TOKEN}, body=start)
            assert (status, body) == (200, {"instanceID": instance_id})
            assert worker.call("wait_done", instance_id=instance_id)["status"] == "COMPLETED"

            ticks = wait_until(
                lambda: [i for i in worker.call("list_ids", page_size=1000) if i.startswith("tick_")],
                lambda found: len(found) >= 1,
            )
            assert worker.call("wait_done", instance_id=ticks[0])["status"] == "COMPLETED"
        finally:
            daprd.kill()

        other = Daprd(
            dapr_bin,
            engine,
            tmp_path,
            resources,
            app_id="wrong-token",
            app_port=app_port,
            env={**daprd_env, "APP_API_TOKEN": "not-the-apps"},
        )
        try:
            other.start()
            refused = "OPTIONS /tick failed: the dapr-api-token of the call is not daprd's APP_API_TOKEN"
            wait_until(engine.log_text, lambda text: refused in text)
        finally:
            other.kill()
        assert "from-daprd" not in engine.log_text() and TOKEN not in engine.log_text()
    finally:
        engine.kill()


# ------------------------------------------------------------------------------ TLS


def test_tls_for_every_sdk_and_http(
    tmp_path: Path, ca: ThrowawayCa, server_pair: Pair, start_host: Callable[..., SdkHost]
) -> None:
    args = ("--tls-cert-file", str(server_pair.cert), "--tls-key-file", str(server_pair.key))
    with _engine(tmp_path, *args) as engine:
        roots = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca.pem)}
        # An unchanged Dapr app: DAPR_GRPC_ENDPOINT=https://..., the CA trusted by gRPC's roots file.
        endpoint = f"https://{engine.dapr_address}"
        run_chain(start_host("dapr", "", DAPR_GRPC_ENDPOINT=endpoint, **roots))
        # dapr_workflows_ext.workflow_runtime() and workflow_client(), with the same address.
        run_chain(start_host("dapr", endpoint, **roots))
        run_chain(start_host("durabletask", f"https://{engine.durabletask_address}", **roots))

        status, body = http(
            f"https://{engine.http_address}/v1.0/workflows/dapr/missing", context=client_context(ca)
        )
        assert (status, body["errorCode"]) == (404, "ERR_INSTANCE_NOT_FOUND")
        # Plain text is not served any more.
        err = grpc_error(engine.durabletask_address, "GetInstance", get_request("x"))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(OSError):  # the TLS port closes a plain-text connection
            http(f"http://{engine.http_address}/v1.0/workflows/dapr/missing")
        assert "security: no API token; TLS" in engine.log_text()


def test_mutual_tls_requires_a_client_certificate(
    tmp_path: Path, ca: ThrowawayCa, server_pair: Pair, start_host: Callable[..., SdkHost]
) -> None:
    client = ca.issue("orders")
    other_ca = ThrowawayCa(tmp_path)
    stranger = other_ca.issue("stranger")
    args = (
        *("--tls-cert-file", str(server_pair.cert), "--tls-key-file", str(server_pair.key)),
        *("--tls-client-ca-file", str(ca.pem)),
    )
    with _engine(tmp_path, *args) as engine:
        env = {
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca.pem),
            "SDK_HOST_CLIENT_CERT": str(client.cert),
            "SDK_HOST_CLIENT_KEY": str(client.key),
        }
        run_chain(start_host("durabletask", f"https://{engine.durabletask_address}", **env))

        address = engine.durabletask_address
        grpc_call(address, "GetInstance", get_request("x"), credentials=credentials(ca, client))
        for creds in (credentials(ca), credentials(ca, stranger)):
            err = grpc_error(address, "GetInstance", get_request("x"), credentials=creds)
            assert err.code() == grpc.StatusCode.UNAVAILABLE  # the handshake is refused

        url = f"https://{engine.http_address}/v1.0/workflows/dapr/missing"
        assert http(url, context=client_context(ca, client))[0] == 404
        status, body = http(url, context=client_context(ca))
        assert status == 401 and "client certificate" in body["message"]
        with pytest.raises(OSError):  # the TLS port closes a plain-text connection
            http(url, context=client_context(ca, stranger))


def test_daprd_delivers_trigger_events_over_tls_with_client_certificates_required(
    dapr_bin: Path, tmp_path: Path, ca: ThrowawayCa, server_pair: Pair, start_host: Callable[..., SdkHost]
) -> None:
    """daprd has no client certificate of ours: the trigger routes take its events without one
    (with APP_API_TOKEN), while the API's routes on the same listener still require one."""
    triggers = tmp_path / "triggers.yaml"
    tick = {"name": "tick", "binding": "tick", "workflow": "echo_input"}
    triggers.write_text(json.dumps({"triggers": [tick]}))
    args = (
        *("--tls-cert-file", str(server_pair.cert), "--tls-key-file", str(server_pair.key)),
        *("--tls-client-ca-file", str(ca.pem), "--triggers", str(triggers)),
    )
    engine = EngineProcess(tmp_path, *args, env={"APP_API_TOKEN": "from-daprd"}).start()
    try:
        worker_pair = ca.issue("worker")
        worker_env = {
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca.pem),
            "SDK_HOST_CLIENT_CERT": str(worker_pair.cert),
            "SDK_HOST_CLIENT_KEY": str(worker_pair.key),
        }
        worker = start_host("durabletask", f"https://{engine.durabletask_address}", **worker_env)
        app_port = int(engine.http_address.rsplit(":", 1)[1])
        daprd = Daprd(
            dapr_bin,
            engine,
            tmp_path,
            {"workflows.yaml": component_yaml(metadata={"direction": "output"}), "tick.yaml": CRON},
            app_port=app_port,
            extra_args=("--app-protocol", "https"),
            env={"APP_API_TOKEN": "from-daprd"},
        )
        try:
            daprd.start()
            ticks = wait_until(
                lambda: [i for i in worker.call("list_ids") if i.startswith("tick_")],
                lambda found: len(found) >= 1,
            )
            # Started for Dapr-SDK workers (which cannot present a client certificate, so none runs it here).
            assert worker.call("get", instance_id=ticks[0])["name"] == "echo_input"
        finally:
            daprd.kill()
        url = f"https://{engine.http_address}/v1.0/workflows/dapr/x"
        status, body = http(url, context=client_context(ca))
        assert status == 401 and "client certificate" in body["message"]
    finally:
        engine.kill()


# ------------------------------------------------------------------------------ the access policy

POLICY = """
apiVersion: dapr.io/v1alpha1
kind: WorkflowAccessPolicy
metadata:
  name: shop
spec:
  tokens:
    - name: orders
      file: orders.token
    - name: auditor
      env: AUDITOR_TOKEN
  rules:
    - name: workers
      callers: [{token: default}]
      workflows: [{name: "*", operations: ["*"]}]
    - name: orders-app
      callers: [{token: orders}]
      workflows:
        - name: "chain*"
          operations: [start, get]
    - name: audit
      callers: [{token: auditor}, {certificateSubject: "%(auditor_subject)s"}]
      workflows: [{name: "*", operations: [get, list, history]}]
"""


def _denied(err: grpc.RpcError, *fragments: str) -> None:
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.details()
    for fragment in fragments:
        assert fragment in err.details(), err.details()


def test_access_policy_by_token(tmp_path: Path, start_host: Callable[..., SdkHost]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % {"auditor_subject": "CN=unused"})
    (tmp_path / "orders.token").write_text("orders-secret\n")
    env = {**ENGINE_ENV, "AUDITOR_TOKEN": "auditor-secret"}
    # certificateSubject callers need mutual TLS: this engine has none, so the rule is refused.
    refused = refusal(tmp_path, "--access-policy", str(policy), env=env)
    assert "certificate subjects: that needs --tls-client-ca-file" in refused
    policy.write_text(POLICY.replace(', {certificateSubject: "%(auditor_subject)s"}', ""))

    args = ("--access-policy", str(policy), "--http-start-timeout-seconds", "0")
    with _engine(tmp_path, *args, env=env) as engine:
        worker = start_host("durabletask", engine.durabletask_address, SDK_HOST_API_TOKEN=TOKEN)
        address = engine.durabletask_address
        orders = [("dapr-api-token", "orders-secret")]
        auditor = [("dapr-api-token", "auditor-secret")]

        chain = unique("chain")
        start = dt_pb.CreateInstanceRequest(name="chain", instanceId=chain)
        start.input.value = '{"n": 2, "start": 0}'
        grpc_call(address, "StartInstance", start, metadata=orders)
        assert worker.call("wait_done", instance_id=chain)["status"] == "COMPLETED"
        assert dt_pb.GetInstanceResponse.FromString(
            grpc_call(address, "GetInstance", get_request(chain), metadata=orders)
        ).exists

        other = dt_pb.CreateInstanceRequest(name="fan_out", instanceId=unique("fan"))
        _denied(
            grpc_error(address, "StartInstance", other, metadata=orders),
            "schedule on workflow 'fan_out' is not allowed",
            "rule 'orders-app'",
            "token 'orders'",
        )
        terminate = dt_pb.TerminateRequest(instanceId=chain)
        _denied(grpc_error(address, "TerminateInstance", terminate, metadata=orders), "rule 'orders-app'")
        _denied(grpc_error(address, "QueryInstances", dt_pb.QueryInstancesRequest(), metadata=orders))
        _denied(grpc_error(address, "GetWorkItems", dt_pb.GetWorkItemsRequest(), metadata=orders))

        grpc_call(address, "QueryInstances", dt_pb.QueryInstancesRequest(), metadata=auditor)
        grpc_call(address, "GetInstance", get_request(chain), metadata=auditor)
        _denied(grpc_error(address, "StartInstance", start, metadata=auditor), "rule 'audit'")
        _denied(grpc_error(address, "PurgeInstances", dt_pb.PurgeInstancesRequest(instanceId=chain),
                           metadata=auditor), "purge on workflow 'chain'")

        # Dapr's SDK sends whichever token its DAPR_API_TOKEN holds: here the auditor's.
        audit = start_host("dapr", engine.dapr_address, worker=False, DAPR_API_TOKEN="auditor-secret")
        assert chain in audit.call("list_ids")
        assert audit.call("get", instance_id=chain)["status"] == "COMPLETED"
        assert audit.call("history", instance_id=chain)[0]["kind"] == "WORKFLOW_STARTED"
        with pytest.raises(SdkError, match="PERMISSION_DENIED") as denied:
            audit.call("terminate", instance_id=chain)
        assert "rule 'audit'" in denied.value.message
        with pytest.raises(SdkError, match="PERMISSION_DENIED"):
            audit.call("rerun", instance_id=chain, event_id=0)

        # The same table and decisions on the HTTP API.
        base = engine.http_url + "/v1.0/workflows/dapr"
        status, body = http(f"{base}/chain/start", "POST", {"dapr-api-token": "orders-secret"}, body=b"{}")
        assert status == 202
        status, body = http(f"{base}/{chain}/terminate", "POST", {"dapr-api-token": "orders-secret"})
        assert status == 403 and body["errorCode"] == "ERR_PERMISSION_DENIED"
        assert "rule 'orders-app'" in body["message"]
        assert http(f"{base}/{chain}", headers={"dapr-api-token": "auditor-secret"})[0] == 200
        status, body = http(f"{base}/{chain}/purge", "POST", {"dapr-api-token": TOKEN})
        assert status == 202
        assert "access policy 'shop' (3 rules)" in engine.log_text()


def test_access_policy_by_certificate_subject(
    tmp_path: Path, ca: ThrowawayCa, server_pair: Pair, start_host: Callable[..., SdkHost]
) -> None:
    worker_pair, auditor_pair, nobody = ca.issue("worker"), ca.issue("auditor"), ca.issue("nobody")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""
kind: WorkflowAccessPolicy
metadata: {{name: by-certificate}}
spec:
  rules:
    - callers: [{{certificateSubject: "{ca.subject("worker")}"}}]
      workflows: [{{name: "*", operations: ["*"]}}]
    - callers: [{{certificateSubject: "{ca.subject("auditor")}"}}]
      workflows: [{{name: "*", operations: [get]}}]
"""
    )
    args = (
        *("--tls-cert-file", str(server_pair.cert), "--tls-key-file", str(server_pair.key)),
        *("--tls-client-ca-file", str(ca.pem), "--access-policy", str(policy)),
    )
    with _engine(tmp_path, *args) as engine:
        env = {
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca.pem),
            "SDK_HOST_CLIENT_CERT": str(worker_pair.cert),
            "SDK_HOST_CLIENT_KEY": str(worker_pair.key),
        }
        worker = start_host("durabletask", f"https://{engine.durabletask_address}", **env)
        instance_id = worker.call("start", workflow="chain", input={"n": 2, "start": 0})
        assert worker.call("wait_done", instance_id=instance_id)["status"] == "COMPLETED"

        address = engine.durabletask_address
        grpc_call(address, "GetInstance", get_request(instance_id), credentials=credentials(ca, auditor_pair))
        _denied(
            grpc_error(address, "PurgeInstances", dt_pb.PurgeInstancesRequest(instanceId=instance_id),
                       credentials=credentials(ca, auditor_pair)),
            "rule 2",
            f"certificate subject {ca.subject('auditor')!r}",
        )
        _denied(
            grpc_error(address, "GetInstance", get_request(instance_id), credentials=credentials(ca, nobody)),
            "no rule of access policy 'by-certificate'",
        )
        url = f"https://{engine.http_address}/v1.0/workflows/dapr/{instance_id}"
        assert http(url, context=client_context(ca, auditor_pair))[0] == 200
        status, body = http(url + "/terminate", "POST", context=client_context(ca, auditor_pair))
        assert status == 403 and "rule 2" in body["message"]


ANY_GET = "{callers: [{token: default}], workflows: [{name: '*', operations: [get]}]}"


def test_bad_policy_files_are_refused_with_one_sentence(tmp_path: Path) -> None:
    cases = {
        "spec: {rules: [{callers: [{appID: a}], workflows: [{name: '*', operations: [get]}]}]}": "appID",
        "spec: {rules: [{callers: [{token: default}], workflows: [{name: '*', operations: [fly]}]}]}": (
            "unknown operation 'fly'"
        ),
        "spec: {rules: [{callers: [{token: ghost}], workflows: [{name: '*', operations: [get]}]}]}": (
            "names token 'ghost'"
        ),
        "spec: {rules: []}": "spec.rules must be a non-empty list",
        "spec: {tokens: [{name: a, env: NOT_SET_ANYWHERE}], rules: [" + ANY_GET + "]}": (
            "NOT_SET_ANYWHERE is not set"
        ),
        "spec: {tokens: [{name: a, file: missing.token}], rules: [" + ANY_GET + "]}": "cannot read",
        "spec: {rules: [{callers: [{token: default}], activities: [{name: x}]}]}": "activities",
        "kind: Configuration\nspec: {rules: []}": "kind must be WorkflowAccessPolicy",
        "[not, a, mapping": "not valid YAML",
    }
    policy = tmp_path / "policy.yaml"
    for text, fragment in cases.items():
        policy.write_text(text)
        with pytest.raises(PolicyFileError, match=re.escape(fragment)):
            load_policy(str(policy))
    # What serve says about one of them: one line, no traceback.
    refused = refusal(tmp_path, "--access-policy", str(policy), env=ENGINE_ENV)
    assert "dapr-workflows: --access-policy: " in refused and "not valid YAML" in refused
    assert "Traceback" not in refused


# ------------------------------------------------------------------------------ routes served later


def test_routes_added_beside_the_api_take_the_token_and_the_policy(tmp_path: Path) -> None:
    """The middleware covers every route of the HTTP listener, whoever adds it (the dashboard,
    management routes): here an in-process server with such routes, and the engine's own store."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from dapr_workflows_component.access_policy import AccessPolicy, Caller, Grant, Rule
    from dapr_workflows_component.engine import Engine, EngineSettings
    from dapr_workflows_component.http_api import HttpApi, HttpSettings
    from dapr_workflows_component.security import Guard, Tokens, http_guard
    from dapr_workflows_component.store import open_store
    from dapr_workflows_component.telemetry.recorder import Telemetry

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    # /healthz, /readyz and /metrics are the engine's own (telemetry); the others stand for routes
    # added later.
    paths = ("/dashboard/{tail:.*}", "/added/{tail:.*}")
    extra = [web.get(p, ok) for p in paths] + [web.post("/dashboard/{tail:.*}", ok)]
    reader = Rule("rule 'reader'", (Caller(token="reader"),), (Grant("*", frozenset({"get"})),))
    admin = Rule("rule 'admin'", (Caller(token="default"),), (Grant("*", frozenset({"*"})),))
    policy = AccessPolicy("routes", (reader, admin))

    async def run(metrics_without_token: bool) -> dict[str, int]:
        store = open_store(f"sqlite:///{tmp_path / 'routes.db'}")
        engine = Engine(store, EngineSettings(), Telemetry.from_environment(serve_metrics=True))
        guard = Guard(Tokens([("default", TOKEN), ("reader", "read-only")]), policy, False, engine)
        middleware = http_guard(guard, [], None, metrics_without_token)
        api = HttpApi(engine, HttpSettings(middlewares=(middleware,)), routes=extra)
        statuses = {}
        async with TestClient(TestServer(api.application())) as client:
            for name, path, token in (
                ("healthz", "/healthz", None),
                ("readyz", "/readyz", None),
                ("metrics", "/metrics", None),
                ("metrics-token", "/metrics", TOKEN),
                ("dashboard", "/dashboard/instances/x", None),
                ("dotted", "/dashboard/../v1.0/workflows/dapr/missing", None),
                ("encoded", "/dashboard/%2E%2E/v1.0/workflows/dapr/missing", None),
                ("post-dashboard", "/dashboard/instances/x", None),
                ("added", "/added/route", None),
                ("added-token", "/added/route", TOKEN),
                ("added-reader", "/added/route", "read-only"),
                ("head-reader", "/v1.0/workflows/dapr/missing", "read-only"),
            ):
                headers = {"dapr-api-token": token} if token else {}
                method = name.partition("-")[0].upper() if name.startswith(("head", "post")) else "GET"
                statuses[name] = (await client.request(method, path, headers=headers)).status
        await store.close()
        return statuses

    statuses = asyncio.run(run(False))
    assert statuses.pop("readyz") != 401  # 503 here: this engine was never started
    assert statuses == {
        "healthz": 200,
        "metrics": 401,
        "metrics-token": 200,
        # The dashboard's page needs no token (its requests for data carry it); nothing else there.
        "dashboard": 200,
        "post-dashboard": 401,
        # No spelling of a path under /dashboard/ reaches the API without the token.
        "dotted": 401,
        "encoded": 401,
        "added": 401,
        "added-token": 200,
        # A route the table does not list needs an operation "*" under a policy.
        "added-reader": 403,
        "head-reader": 404,  # HEAD is GET: allowed, and the instance does not exist
    }
    assert asyncio.run(run(True))["metrics"] == 200


def test_settings_that_cannot_work_are_refused(tmp_path: Path, server_pair: Pair) -> None:
    from dapr_workflows_component.security import SecurityError, load_security

    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "spec: {tokens: [{name: a, env: SAME_TOKEN}], "
        "rules: [{callers: [{token: a}], workflows: [{name: '*', operations: [get]}]}]}"
    )
    os.environ["SAME_TOKEN"] = "same"
    try:
        loaded = load_policy(str(policy))
    finally:
        del os.environ["SAME_TOKEN"]
    cert, key = str(server_pair.cert), str(server_pair.key)
    cases: list[tuple[tuple[Any, ...], str]] = [
        (("", cert, "", "", None), "TLS needs both --tls-cert-file and --tls-key-file"),
        (("", "", "", cert, None), "--tls-client-ca-file needs --tls-cert-file"),
        (("", cert, str(tmp_path / "nope.pem"), "", None), "--tls-key-file: cannot read"),
        (("", key, cert, "", None), "the TLS files cannot be used"),
        (("same", "", "", "", loaded), "are the same"),
    ]
    for args, fragment in cases:
        with pytest.raises(SecurityError, match=re.escape(fragment)):
            load_security(*args, metrics_without_token=False)
    no_callers = tmp_path / "open.yaml"
    no_callers.write_text("spec: {rules: [" + ANY_GET + "]}")
    refused = refusal(tmp_path, "--access-policy", str(no_callers))
    assert "--access-policy needs callers that can be told apart" in refused


def test_every_grpc_method_and_http_route_has_its_row_in_the_table(tmp_path: Path) -> None:
    """A method or route added without a row would need an operation "*" under a policy."""
    from dapr_workflows_component.access_policy import GRPC_OPERATIONS, HTTP_OPERATIONS
    from dapr_workflows_component.engine import Engine, EngineSettings
    from dapr_workflows_component.engine.grpc_server import dialect_server
    from dapr_workflows_component.http_api import HttpApi, HttpSettings
    from dapr_workflows_component.security import OPEN_PATHS, OPEN_PREFIX
    from dapr_workflows_component.store import open_store

    engine = Engine(open_store(f"sqlite:///{tmp_path / 'table.db'}"), EngineSettings())
    for dialect in ("dapr", "durabletask"):
        methods = set(dialect_server(engine, dialect).handlers())
        missing = methods - set(GRPC_OPERATIONS)
        assert not missing, f"{dialect} dialect methods without a row: {sorted(missing)}"
    routes = {
        ("GET" if r.method == "HEAD" else r.method, r.resource.canonical)
        for r in HttpApi(engine, HttpSettings()).application().router.routes()
        if r.resource is not None
        and r.resource.canonical not in OPEN_PATHS
        and not r.resource.canonical.startswith(OPEN_PREFIX)  # the dashboard's page
    }
    missing_routes = routes - set(HTTP_OPERATIONS)
    assert not missing_routes, f"HTTP routes without a row: {sorted(missing_routes)}"


def test_policy_decisions_patterns_aliases_and_several_rules(tmp_path: Path) -> None:
    from dapr_workflows_component.access_policy import Identity
    from dapr_workflows_component.workflows import WorkflowError

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        """
spec:
  tokens: [{name: ops, file: ops.token}]
  rules:
    - callers: [{token: ops}]
      workflows: [{name: "Order*", operations: [suspend, resume]}]
    - name: reports
      callers: [{token: ops}]
      workflows: [{name: "report_?", operations: [start]}, {name: "*", operations: [list]}]
"""
    )
    (tmp_path / "ops.token").write_text("t")
    policy = load_policy(str(policy_file))
    ops = Identity(token="ops")
    allowed = [
        ("pause", "OrderProcessing"),  # suspend is Dapr's pause
        ("resume", "Order"),
        ("schedule", "report_1"),  # start is Dapr's schedule
        ("list", None),
    ]
    for operation, workflow in allowed:
        policy.decide(ops, operation, workflow)
    refused = [
        ("pause", "orderProcessing"),  # patterns are case-sensitive
        ("schedule", "report_10"),
        ("pause", None),  # a pattern other than "*" needs the workflow's name
        ("terminate", "Order"),
    ]
    for operation, workflow in refused:
        with pytest.raises(WorkflowError) as err:
            policy.decide(ops, operation, workflow)
        assert "rule 1, rule 'reports' of access policy 'policy.yaml'" in err.value.message
    with pytest.raises(WorkflowError, match=re.escape("no rule of access policy 'policy.yaml' names")):
        policy.decide(Identity(token="default"), "get", "Order")
