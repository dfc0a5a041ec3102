"""The Workflow HTTP API of the Dapr docs, served by `dapr-workflows serve`, with its status codes.

A plain HTTP client (urllib, http.client, a raw socket) talks to a real engine process while a real
Dapr-SDK worker runs the workflows. One engine and worker serve most of the module (`api`); tests use
unique instance IDs. Tests of settings start engines of their own.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.harness.engine_process import EngineProcess, free_port
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique, wait_until

VERSIONS = ("v1.0", "v1.0-beta1", "v1.0-alpha1")
HTTP_LIMIT = 8192  # --http-max-body-bytes of the shared engine
PAYLOAD_LIMIT = 4096  # its --max-payload-bytes: smaller, so that the engine's own check shows too


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def error(self, status: int, code: str, *fragments: str) -> None:
        """The answer is the JSON error `code` with HTTP `status`, its message naming `fragments`."""
        assert self.status == status, f"expected {status}, got {self.status}: {self.body!r}"
        assert self.headers["Content-Type"].startswith("application/json")
        doc = self.json
        assert set(doc) == {"errorCode", "message"}, doc
        assert doc["errorCode"] == code, doc
        for fragment in fragments:
            assert fragment in doc["message"], f"{fragment!r} not in {doc['message']!r}"


class Api:
    """The HTTP API of one engine."""

    def __init__(self, engine: EngineProcess, worker: SdkHost | None = None) -> None:
        self.engine = engine
        self.worker = worker
        self.base = engine.http_url

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> Answer:
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(response.status, response.headers, response.read())
        except urllib.error.HTTPError as err:
            return Answer(err.code, err.headers, err.read())

    # The routes, with the docs' paths; `v` is the API version of the path.

    def start(
        self, workflow: str, input: Any = None, instance_id: str | None = None, v: str = "v1.0"
    ) -> Answer:
        query = "" if instance_id is None else "?instanceID=" + urllib.parse.quote(instance_id, safe="")
        body = None if input is None else json.dumps(input)
        return self.call("POST", f"/{v}/workflows/dapr/{urllib.parse.quote(workflow)}/start{query}", body)

    def started(self, workflow: str, input: Any = None, prefix: str | None = None) -> str:
        instance_id = unique(prefix or workflow.replace("_", "-"))
        answer = self.start(workflow, input, instance_id)
        assert answer.status == 202, answer
        return instance_id

    def get(self, instance_id: str, v: str = "v1.0") -> Answer:
        return self.call("GET", f"/{v}/workflows/dapr/{urllib.parse.quote(instance_id, safe='')}")

    def state(self, instance_id: str) -> dict[str, Any]:
        answer = self.get(instance_id)
        assert answer.status == 200, answer
        doc: dict[str, Any] = answer.json
        return doc

    def status(self, instance_id: str) -> str:
        return str(self.state(instance_id)["runtimeStatus"])

    def action(
        self, instance_id: str, action: str, body: bytes | str | None = None, v: str = "v1.0"
    ) -> Answer:
        return self.call(
            "POST", f"/{v}/workflows/dapr/{urllib.parse.quote(instance_id, safe='')}/{action}", body
        )

    def wait_status(self, instance_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        state: dict[str, Any] = wait_until(
            lambda: self.state(instance_id), lambda s: s["runtimeStatus"] == status, timeout
        )
        return state


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An engine with a Dapr-SDK worker, and its HTTP API."""
    workdir = tmp_path_factory.mktemp("http-api")
    engine = EngineProcess(
        workdir,
        "--max-payload-bytes",
        str(PAYLOAD_LIMIT),
        "--http-max-body-bytes",
        str(HTTP_LIMIT),
    ).start()
    try:
        engine.wait_http()
        worker = SdkHost("dapr", engine.dapr_address, workdir / "dapr-host.log")
        try:
            yield Api(engine, worker)
        finally:
            worker.close()
    finally:
        engine.kill()
    assert "Traceback" not in engine.log_text(), engine.log_text()


def output(state: dict[str, Any]) -> Any:
    raw = state["properties"].get("dapr.workflow.output")
    return None if raw is None else json.loads(raw)


def event_names_in_history(api: Api, instance_id: str) -> list[str]:
    assert api.worker is not None
    return [
        e["name"] for e in api.worker.call("history", instance_id=instance_id) if e["kind"] == "EVENT_RAISED"
    ]


# ------------------------------------------------------------------------------- the docs' sequence


def test_the_docs_sequence_start_pause_resume_raise_event_terminate_purge(api: Api) -> None:
    """Each call has taken effect when it answers: the GET right after shows it."""
    instance_id = unique("docs")
    answer = api.start("wait_events", {"names": ["first", "second"]}, instance_id)
    assert answer.status == 202
    assert answer.json == {"instanceID": instance_id}
    assert api.status(instance_id) == "RUNNING"  # start waited for the worker

    assert api.action(instance_id, "pause").status == 202
    assert api.status(instance_id) == "SUSPENDED"
    assert api.action(instance_id, "resume").status == 202
    assert api.status(instance_id) == "RUNNING"

    assert api.action(instance_id, "raiseEvent/first", '{"n": 1}').status == 202
    wait_until(lambda: event_names_in_history(api, instance_id), lambda names: names == ["first"])
    assert api.status(instance_id) == "RUNNING"  # it waits for "second" now

    assert api.action(instance_id, "terminate").status == 202
    assert api.status(instance_id) == "TERMINATED"
    assert api.action(instance_id, "purge").status == 202
    api.get(instance_id).error(404, "ERR_INSTANCE_NOT_FOUND", instance_id)


def test_raised_events_complete_a_workflow_and_get_shows_output_and_custom_status(api: Api) -> None:
    instance_id = api.started("custom_status_wf", {})
    # Dapr's SDK sends a custom status that is a string as it is, not as JSON.
    waiting = wait_until(
        lambda: api.state(instance_id)["properties"], lambda p: "dapr.workflow.custom_status" in p
    )
    assert waiting["dapr.workflow.custom_status"] == "waiting"
    assert api.action(instance_id, "raiseEvent/next", "7").status == 202
    state = api.wait_status(instance_id, "COMPLETED")
    assert output(state) == 7
    assert state["properties"]["dapr.workflow.custom_status"] == "done-7"


# ------------------------------------------------------------------------------------------- start


def test_start_answers_202_with_the_id_and_the_location_of_the_instance(api: Api) -> None:
    instance_id = unique("chain")
    answer = api.start("chain", {"n": 3, "start": 1}, instance_id)
    assert answer.status == 202
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json == {"instanceID": instance_id}
    assert answer.headers["Location"] == f"/v1.0/workflows/dapr/{instance_id}"
    state = wait_until(
        lambda: api.call("GET", answer.headers["Location"]).json, lambda s: s["runtimeStatus"] == "COMPLETED"
    )
    assert output(state) == 4

    # The GET body of the Workflow API.
    assert set(state) == {
        "instanceID",
        "workflowName",
        "createdAt",
        "lastUpdatedAt",
        "runtimeStatus",
        "properties",
    }
    assert state["instanceID"] == instance_id
    assert state["workflowName"] == "chain"
    assert json.loads(state["properties"]["dapr.workflow.input"]) == {"n": 3, "start": 1}
    for key in ("createdAt", "lastUpdatedAt"):
        assert state[key].endswith("Z"), state[key]
        when = datetime.fromisoformat(state[key].replace("Z", "+00:00"))
        assert when.tzinfo == timezone.utc
        assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60
    assert state["lastUpdatedAt"] >= state["createdAt"]


def test_start_passes_the_body_as_is_and_an_empty_body_means_no_input(api: Api) -> None:
    # Any JSON value, whatever the Content-Type says (curl -d sends a form type).
    instance_id = unique("as-is")
    body = '{"n": 1,   "start": 41}'
    answer = api.call(
        "POST",
        f"/v1.0/workflows/dapr/chain/start?instanceID={instance_id}",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 202
    assert api.state(instance_id)["properties"]["dapr.workflow.input"] == body
    assert output(api.wait_status(instance_id, "COMPLETED")) == 42

    for empty in (b"", b"null"):
        instance_id = unique("no-input")
        answer = api.call("POST", f"/v1.0/workflows/dapr/wait_events/start?instanceID={instance_id}", empty)
        assert answer.status == 202
        assert "dapr.workflow.input" not in api.state(instance_id)["properties"]
        api.action(instance_id, "terminate")


def test_start_without_an_instance_id_makes_one_up(api: Api) -> None:
    first = api.start("chain", {"n": 1})
    second = api.call("POST", "/v1.0/workflows/dapr/chain/start?instanceID=", '{"n": 1}')
    assert first.status == second.status == 202
    ids = [first.json["instanceID"], second.json["instanceID"]]
    assert all(ids) and ids[0] != ids[1]
    for instance_id in ids:
        assert output(api.wait_status(instance_id, "COMPLETED")) == 1


def test_start_waits_until_a_worker_runs_the_instance(api: Api) -> None:
    for _ in range(5):
        instance_id = api.started("wait_events", {"names": ["never"]})
        assert api.status(instance_id) == "RUNNING"
        api.action(instance_id, "terminate")


def test_start_of_an_id_in_use_is_409_whatever_its_state(api: Api) -> None:
    running = api.started("wait_events", {"names": ["never"]})
    done = api.started("chain", {"n": 1})
    api.wait_status(done, "COMPLETED")
    for instance_id, status in ((running, "RUNNING"), (done, "COMPLETED")):
        api.start("chain", {"n": 1}, instance_id).error(409, "ERR_INSTANCE_EXISTS", instance_id, status)
    api.action(running, "terminate")
    api.start("chain", {"n": 1}, running).error(409, "ERR_INSTANCE_EXISTS", "TERMINATED")
    # Purged, the ID is free again.
    assert api.action(running, "purge").status == 202
    assert api.start("chain", {"n": 1}, running).status == 202


@pytest.mark.parametrize(
    "bad_id",
    ["bad id!", "a.b", "a:b", "caf\u00e9", "x" * 257],
    ids=["space", "dot", "colon", "non-ascii", "too-long"],
)
def test_start_with_a_malformed_instance_id_is_400(api: Api, bad_id: str) -> None:
    api.start("chain", {"n": 1}, bad_id).error(400, "ERR_INVALID_REQUEST", "instance ID")
    api.get(bad_id).error(404, "ERR_INSTANCE_NOT_FOUND")


def test_start_with_an_instance_id_that_ends_in_a_newline_is_400(api: Api) -> None:
    instance_id = unique("newline") + "\n"
    api.start("chain", {"n": 1}, instance_id).error(400, "ERR_INVALID_REQUEST", "instance ID")


def test_start_with_a_body_that_is_not_json_is_400(api: Api) -> None:
    instance_id = unique("not-json")
    for body in (b"not json", b'{"n": 1', b"\xff\xfe"):
        answer = api.call("POST", f"/v1.0/workflows/dapr/chain/start?instanceID={instance_id}", body)
        answer.error(400, "ERR_INVALID_REQUEST", "not valid JSON")
    api.get(instance_id).error(404, "ERR_INSTANCE_NOT_FOUND")


def test_start_refuses_a_misspelt_or_repeated_instance_id_parameter(api: Api) -> None:
    answer = api.call("POST", "/v1.0/workflows/dapr/chain/start?instanceId=abc", '{"n": 1}')
    answer.error(400, "ERR_INVALID_REQUEST", "'instanceId'", "did you mean 'instanceID'")
    answer = api.call("POST", "/v1.0/workflows/dapr/chain/start?instanceID=a&instanceID=b", '{"n": 1}')
    answer.error(400, "ERR_INVALID_REQUEST", "'instanceID' is given 2 times")
    # Other parameters (daprd's appID, say) are ignored, as daprd ignores what it does not know.
    instance_id = unique("extra-param")
    answer = api.call(
        "POST", f"/v1.0/workflows/dapr/chain/start?instanceID={instance_id}&appID=x", '{"n": 1}'
    )
    assert answer.status == 202


def test_a_workflow_no_worker_knows_fails_and_get_shows_the_failure(api: Api) -> None:
    failing = api.started("fail_uncaught", {"message": "boom"})
    properties = api.wait_status(failing, "FAILED")["properties"]
    assert "boom" in properties["dapr.workflow.failure.error_message"]
    assert properties["dapr.workflow.failure.error_type"]
    unknown = api.started("no_such_workflow", {}, "unknown")
    assert api.wait_status(unknown, "FAILED")["properties"]["dapr.workflow.failure.error_message"]


# --------------------------------------------------------------------------------------------- get


def test_get_of_an_unknown_instance_is_404(api: Api) -> None:
    api.get("no-such-instance").error(404, "ERR_INSTANCE_NOT_FOUND", "'no-such-instance'")
    # Any ID is looked up, also those a caller could not choose (child IDs have a colon).
    api.get("a/b:0001").error(404, "ERR_INSTANCE_NOT_FOUND", "'a/b:0001'")


# ----------------------------------------------------------------------- terminate and raiseEvent


def test_terminate_records_the_body_as_output_at_once(api: Api) -> None:
    instance_id = api.started("wait_events", {"names": ["never"]})
    assert api.action(instance_id, "terminate", '{"reason": "test"}').status == 202
    state = api.state(instance_id)
    assert state["runtimeStatus"] == "TERMINATED"
    assert output(state) == {"reason": "test"}
    assert api.action(instance_id, "terminate").status == 202  # finished: nothing changes
    assert output(api.state(instance_id)) == {"reason": "test"}


def test_terminate_and_purge_are_recursive_unless_told_otherwise(api: Api) -> None:
    def parent_and_child(prefix: str) -> tuple[str, str]:
        child = unique(f"{prefix}-child")
        parent = api.started("parent_waiting_child", {"child_id": child}, prefix)
        wait_until(lambda: api.get(child).status, lambda s: s == 200)
        api.wait_status(child, "RUNNING")
        return parent, child

    parent, child = parent_and_child("shallow")
    assert api.action(parent, "terminate?recursive=false").status == 202
    assert api.status(parent) == "TERMINATED"
    assert api.status(child) == "RUNNING"
    assert api.action(parent, "purge?recursive=false").status == 202
    api.get(parent).error(404, "ERR_INSTANCE_NOT_FOUND")
    assert api.status(child) == "RUNNING"
    api.action(child, "terminate")

    parent, child = parent_and_child("deep")
    assert api.action(parent, "terminate").status == 202
    assert api.status(child) == "TERMINATED"
    assert api.action(parent, "purge").status == 202
    api.get(child).error(404, "ERR_INSTANCE_NOT_FOUND")


def test_a_recursive_parameter_that_is_not_a_bool_is_400(api: Api) -> None:
    instance_id = api.started("wait_events", {"names": ["never"]})
    for value in ("maybe", "", "1", "True", "yes"):  # an OpenAPI boolean: true or false
        answer = api.action(instance_id, f"terminate?recursive={value}")
        answer.error(400, "ERR_INVALID_REQUEST", f"recursive must be true or false, not {value!r}")
    api.action(instance_id, "terminate?Recursive=false").error(400, "ERR_INVALID_REQUEST", "did you mean")
    assert api.status(instance_id) == "RUNNING"
    api.action(instance_id, "terminate?recursive=true")
    api.call("DELETE", f"/v1.0/workflows/dapr/{instance_id}?recursive=2").error(400, "ERR_INVALID_REQUEST")


def test_raise_event_errors(api: Api) -> None:
    api.action("no-such-instance", "raiseEvent/x", "1").error(404, "ERR_INSTANCE_NOT_FOUND")
    waiting = api.started("wait_events", {"names": ["go"]})
    api.action(waiting, "raiseEvent/go", "not json").error(400, "ERR_INVALID_REQUEST", "event data")
    assert api.action(waiting, "raiseEvent/go", '"yes"').status == 202
    assert output(api.wait_status(waiting, "COMPLETED")) == ["yes"]
    api.action(waiting, "raiseEvent/go", "1").error(409, "ERR_INSTANCE_STATE", "COMPLETED")
    api.action("no-such-instance", "terminate").error(404, "ERR_INSTANCE_NOT_FOUND")
    api.action(waiting, "terminate", "{").error(400, "ERR_INVALID_REQUEST", "terminate output")


# -------------------------------------------------------------------------- pause, resume, purge


def test_pause_resume_and_purge_errors(api: Api) -> None:
    for action in ("pause", "resume", "purge"):
        api.action("no-such-instance", action).error(404, "ERR_INSTANCE_NOT_FOUND", "no-such-instance")
    running = api.started("wait_events", {"names": ["never"]})
    api.action(running, "purge").error(409, "ERR_INSTANCE_STATE", "RUNNING", "terminate it first")
    api.call("DELETE", f"/v1.0/workflows/dapr/{running}").error(409, "ERR_INSTANCE_STATE")
    assert api.action(running, "resume").status == 202  # not suspended: nothing to do
    assert api.action(running, "pause").status == 202
    assert api.action(running, "pause").status == 202  # already suspended: nothing to do
    assert api.status(running) == "SUSPENDED"
    api.action(running, "purge").error(409, "ERR_INSTANCE_STATE", "SUSPENDED")
    api.action(running, "terminate")
    for action in ("pause", "resume"):
        api.action(running, action).error(409, "ERR_INSTANCE_STATE", "TERMINATED")


def test_delete_is_an_alias_of_purge(api: Api) -> None:
    instance_id = api.started("chain", {"n": 1})
    api.wait_status(instance_id, "COMPLETED")
    answer = api.call("DELETE", f"/v1.0/workflows/dapr/{instance_id}")
    assert answer.status == 202
    assert answer.body == b""
    api.get(instance_id).error(404, "ERR_INSTANCE_NOT_FOUND")
    api.call("DELETE", f"/v1.0/workflows/dapr/{instance_id}").error(404, "ERR_INSTANCE_NOT_FOUND")


# ---------------------------------------------------------------------- versions and components


@pytest.mark.parametrize("version", VERSIONS[1:])
def test_the_beta1_and_alpha1_paths_are_aliases(api: Api, version: str) -> None:
    instance_id = unique("alias")
    answer = api.start("wait_events", {"names": ["go"]}, instance_id, v=version)
    assert answer.status == 202
    assert answer.headers["Location"] == f"/{version}/workflows/dapr/{instance_id}"
    assert api.get(instance_id, v=version).json["runtimeStatus"] == "RUNNING"
    assert api.action(instance_id, "pause", v=version).status == 202
    assert api.status(instance_id) == "SUSPENDED"
    assert api.action(instance_id, "resume", v=version).status == 202
    assert api.action(instance_id, "raiseEvent/go", "1", v=version).status == 202
    api.wait_status(instance_id, "COMPLETED")
    assert api.action(instance_id, "terminate", v=version).status == 202
    assert api.action(instance_id, "purge", v=version).status == 202
    api.get(instance_id, v=version).error(404, "ERR_INSTANCE_NOT_FOUND")
    assert api.call("GET", f"/{version}/workflows/nope/x").status == 404


ROUTES = [
    ("POST", "/{v}/workflows/{c}/chain/start"),
    ("GET", "/{v}/workflows/{c}/some-id"),
    ("DELETE", "/{v}/workflows/{c}/some-id"),
    ("POST", "/{v}/workflows/{c}/some-id/terminate"),
    ("POST", "/{v}/workflows/{c}/some-id/raiseEvent/e"),
    ("POST", "/{v}/workflows/{c}/some-id/pause"),
    ("POST", "/{v}/workflows/{c}/some-id/resume"),
    ("POST", "/{v}/workflows/{c}/some-id/purge"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_an_unknown_component_is_404_naming_the_accepted_ones(api: Api, method: str, route: str) -> None:
    for version in VERSIONS:
        answer = api.call(method, route.format(v=version, c="workflows"), "{}" if method == "POST" else None)
        answer.error(
            404, "ERR_WORKFLOW_COMPONENT_NOT_FOUND", "'workflows'", "'dapr'", "--http-component-names"
        )


def test_unknown_paths_and_methods(api: Api) -> None:
    assert api.call("GET", "/v2.0/workflows/dapr/x").status == 404
    assert api.call("POST", "/v1.0/workflows/dapr/x/unknown").status == 404
    answer = api.call("GET", "/v1.0/workflows/dapr/x/pause")
    assert answer.status == 405
    assert answer.headers["Allow"] == "POST"
    assert api.call("PUT", "/v1.0/workflows/dapr/x").status == 405


# ------------------------------------------------------------------------------------ body limits


def test_a_body_over_the_limit_is_413_with_the_limit(api: Api) -> None:
    instance_id = unique("large")
    big = json.dumps("x" * HTTP_LIMIT)  # HTTP_LIMIT + 2 bytes
    for path in (
        f"/v1.0/workflows/dapr/chain/start?instanceID={instance_id}",
        f"/v1.0/workflows/dapr/{instance_id}/terminate",
        f"/v1.0/workflows/dapr/{instance_id}/raiseEvent/e",
    ):
        answer = api.call("POST", path, big)
        answer.error(413, "ERR_PAYLOAD_TOO_LARGE", f"{HTTP_LIMIT + 2} bytes", f"limit is {HTTP_LIMIT} bytes")
    api.get(instance_id).error(404, "ERR_INSTANCE_NOT_FOUND")

    # A body within the HTTP limit but over the engine's payload limit meets the engine's own check.
    payload = json.dumps("x" * PAYLOAD_LIMIT)
    answer = api.call("POST", f"/v1.0/workflows/dapr/chain/start?instanceID={instance_id}", payload)
    answer.error(413, "ERR_PAYLOAD_TOO_LARGE", "workflow input", f"limit is {PAYLOAD_LIMIT} bytes")


def test_a_chunked_body_over_the_limit_is_413_too(api: Api) -> None:
    """Without a Content-Length the server counts as it reads, and stops reading at the limit."""
    host, port = api.engine.http_address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        chunks = iter([b'"' + b"x" * 4000, b"x" * 4000, b"x" * 4000 + b'"'])
        conn.request("POST", "/v1.0/workflows/dapr/chain/start", body=chunks, encode_chunked=True)
        response = conn.getresponse()
        answer = Answer(response.status, response.headers, response.read())
    finally:
        conn.close()
    answer.error(413, "ERR_PAYLOAD_TOO_LARGE", f"more than {HTTP_LIMIT} bytes")


def raw_request(api: Api, request: bytes) -> bytes:
    """Sends `request` as it is on a connection of its own; returns all the server answered."""
    host, port = api.engine.http_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_bodies_that_cannot_be_read_are_400_and_compressed_ones_are_read(api: Api) -> None:
    start = (
        b"POST /v1.0/workflows/dapr/chain/start?instanceID=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    )
    instance_id = unique("gzip").encode()
    body = gzip.compress(b'{"n": 2, "start": 5}')
    answer = raw_request(
        api, start % instance_id + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    assert answer.startswith(b"HTTP/1.1 202 "), answer
    assert output(api.wait_status(instance_id.decode(), "COMPLETED")) == 7

    # A compressed body is counted as it is decompressed.
    bomb = gzip.compress(b'"' + b"x" * (4 * HTTP_LIMIT) + b'"')
    answer = raw_request(
        api, start % b"bomb" + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"ERR_PAYLOAD_TOO_LARGE" in answer

    answer = raw_request(
        api, start % b"bad-gzip" + b"Content-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b'"errorCode": "ERR_INVALID_REQUEST"' in answer
    assert b"cannot be read" in answer

    # aiohttp refuses a request it cannot parse before it reaches the API: a 400 of its own.
    answer = raw_request(
        api, start % b"bad-chunks" + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.0 400 "), answer
    for instance_id in (b"bomb", b"bad-gzip", b"bad-chunks"):
        api.get(instance_id.decode()).error(404, "ERR_INSTANCE_NOT_FOUND")


def test_a_slow_client_does_not_hold_up_others(api: Api) -> None:
    """A client that sends half its request and stalls holds its own connection, nobody else's."""
    host, port = api.engine.http_address.rsplit(":", 1)
    stalled = []
    for _ in range(3):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(
            b'POST /v1.0/workflows/dapr/chain/start HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"n"'
        )
        stalled.append(s)
    half_headers = socket.create_connection((host, int(port)), timeout=30)
    half_headers.sendall(b"GET /v1.0/workflows/dapr/x HTTP/1.1\r\nHost: x\r\n")
    try:
        t0 = time.monotonic()
        instance_id = api.started("chain", {"n": 1})
        assert api.get(instance_id).status == 200
        assert time.monotonic() - t0 < 5
    finally:
        for s in [*stalled, half_headers]:
            s.close()
    assert output(api.wait_status(instance_id, "COMPLETED")) == 1


# ---------------------------------------------------------------------------------------- OpenAPI


def test_the_openapi_document_describes_every_route(api: Api) -> None:
    answer = api.call("GET", "/v1.0/workflows/openapi.json")
    assert answer.status == 200
    doc = answer.json
    assert doc["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    base = "/v1.0/workflows/{component}"
    assert operations == {
        ("POST", base + "/{workflowName}/start"),
        ("GET", base + "/{instanceID}"),
        ("DELETE", base + "/{instanceID}"),
        ("POST", base + "/{instanceID}/terminate"),
        ("POST", base + "/{instanceID}/raiseEvent/{eventName}"),
        ("POST", base + "/{instanceID}/pause"),
        ("POST", base + "/{instanceID}/resume"),
        ("POST", base + "/{instanceID}/purge"),
        ("GET", "/v1.0/workflows/openapi.json"),
        # the management routes
        ("GET", base),
        ("POST", base + "/purge"),
        ("POST", base + "/terminate"),
        ("GET", base + "/{instanceID}/history"),
        ("POST", base + "/{instanceID}/rerun"),
    }
    start = doc["paths"][base + "/{workflowName}/start"]["post"]
    assert set(start["responses"]) >= {"202", "400", "404", "409", "413"}
    component = next(p for p in start["parameters"] if p["name"] == "component")
    assert component["schema"]["enum"] == ["dapr"]
    assert str(HTTP_LIMIT) in doc["info"]["description"]


# ------------------------------------------------------------------------- settings of the server


def test_settings_component_names_default_body_limit_and_start_wait(tmp_path: Path) -> None:
    """No worker here: a start waits its --http-start-timeout-seconds, then answers all the same."""
    engine = EngineProcess(
        tmp_path,
        "--max-payload-bytes",
        "1024",
        "--http-start-timeout-seconds",
        "1",
        env={"DAPR_WORKFLOWS_HTTP_COMPONENT_NAMES": "dapr, workflows"},
    ).start()
    try:
        engine.wait_http()
        api = Api(engine)
        for name in ("dapr", "workflows"):
            instance_id = unique(name)
            t0 = time.monotonic()
            answer = api.call("POST", f"/v1.0/workflows/{name}/chain/start?instanceID={instance_id}", "{}")
            assert answer.status == 202
            assert 0.9 < time.monotonic() - t0 < 5
            assert answer.headers["Location"] == f"/v1.0/workflows/{name}/{instance_id}"
            assert api.call("GET", answer.headers["Location"]).json["runtimeStatus"] == "PENDING"
        api.call("GET", "/v1.0/workflows/other/x").error(
            404, "ERR_WORKFLOW_COMPONENT_NOT_FOUND", "'dapr', 'workflows'"
        )
        # The body limit defaults to --max-payload-bytes.
        answer = api.call("POST", "/v1.0/workflows/dapr/chain/start", json.dumps("x" * 1023))
        answer.error(413, "ERR_PAYLOAD_TOO_LARGE", "1025 bytes", "limit is 1024 bytes")
    finally:
        engine.kill()


def test_at_shutdown_a_start_that_waits_for_a_worker_answers_at_once(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path, "--http-start-timeout-seconds", "60").start()
    try:
        engine.wait_http()
        api = Api(engine)
        answers: list[Answer] = []
        instance_id = unique("shutdown")
        thread = threading.Thread(target=lambda: answers.append(api.start("chain", {}, instance_id)))
        thread.start()
        wait_until(lambda: "started workflow" in engine.log_text(), bool)
        t0 = time.monotonic()
        assert engine.stop() == 0
        thread.join(10)
        assert answers and answers[0].status == 202
        assert answers[0].json == {"instanceID": instance_id}
        assert time.monotonic() - t0 < 3
    finally:
        engine.kill()


def test_an_empty_http_address_disables_the_api(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path, "--http-address", "").start()
    try:
        host, port = engine.http_address.rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=1).close()
        assert "HTTP API" not in engine.log_text()
    finally:
        engine.kill()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-address", "localhost"], "--http-address: 'localhost' is not HOST:PORT"),
        (["--http-component-names", " , "], "--http-component-names must name at least one"),
        (["--http-max-body-bytes", "0"], "--http-max-body-bytes must be positive"),
        (["--http-start-timeout-seconds", "-1"], "--http-start-timeout-seconds must be zero or positive"),
        ("taken", "cannot listen on"),
    ],
    ids=["address", "names", "body", "timeout", "port-in-use"],
)
def test_bad_http_settings_stop_the_engine_with_a_clear_message(
    tmp_path: Path, args: list[str] | str, message: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if args == "taken":
            args = ["--http-address", f"127.0.0.1:{taken.getsockname()[1]}"]
        command = [
            sys.executable,
            "-m",
            "dapr_workflows_component.cli",
            "serve",
            "--store",
            f"sqlite:///{tmp_path / 'engine.db'}",
            "--engine-address",
            f"127.0.0.1:{free_port()}",
            "--durabletask-address",
            "",
            "--socket-name",
            "",
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
