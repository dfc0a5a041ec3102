"""Triggers with a real daprd and real event sources: workflows started by messages and bindings.

One engine runs `--triggers` (the file below) and a Dapr-SDK worker; one daprd has the engine's
HTTP port as its app port and three event sources: daprd's in-memory pub/sub, Redis streams on a
throw-away redis-server, and a cron input binding firing every second. Messages are published
through daprd's publish API, as full CloudEvents when a test needs to choose their `id`.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.daprd import Daprd, component_yaml
from tests.harness.engine_process import EngineProcess
from tests.harness.redis_server import RedisServer
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import wait_until

REPO = Path(__file__).resolve().parents[1]
CONSUMER_GROUP = "triggers-test"

TRIGGERS: dict[str, Any] = {
    "triggers": [
        {"name": "mem-orders", "pubsub": "memqueue", "topic": "orders", "workflow": "echo_input"},
        {
            "name": "mem-keyed",
            "pubsub": "memqueue",
            "topic": "keyed",
            "workflow": "echo_input",
            "instanceID": {"field": "orderId"},
            "input": {"field": "order"},
        },
        {
            "name": "redis-orders",
            "pubsub": "redisqueue",
            "topic": "orders",
            "workflow": "echo_input",
            "deadLetterTopic": "orders-dead",
        },
        {
            "name": "redis-keyed",
            "pubsub": "redisqueue",
            "topic": "keyed",
            "workflow": "echo_input",
            "instanceID": {"field": "orderId", "prefix": "rk-"},
            "input": {"field": "order"},
            "deadLetterTopic": "keyed-dead",
        },
        # The default instance ID of a binding: its name and the cron event's readTimeUTC.
        {"name": "tick", "binding": "tick", "workflow": "echo_input"},
        {
            "name": "jobs",
            "binding": "jobs",
            "workflow": "echo_input",
            "instanceID": {"field": "jobId"},
            "input": {"field": "job"},
        },
    ]
}


def component(name: str, kind: str, **metadata: str) -> str:
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {kind}",
        "  version: v1",
        "  metadata:" if metadata else "  metadata: []",
    ]
    for key, value in metadata.items():
        lines += [f"    - name: {key}", f"      value: {json.dumps(value)}"]
    return "\n".join(lines) + "\n"


def resources(redis: RedisServer) -> dict[str, str]:
    sample = REPO / "samples" / "triggers" / "resources"
    return {
        # The workflows binding, for the app's own calls; the triggers need only the HTTP port.
        "workflows.yaml": component_yaml(metadata={"direction": "output"}),
        "memqueue.yaml": component("memqueue", "pubsub.in-memory"),
        "redisqueue.yaml": component(
            "redisqueue",
            "pubsub.redis",
            redisHost=redis.address,
            redisPassword="",
            consumerID=CONSUMER_GROUP,
        ),
        "tick.yaml": component("tick", "bindings.cron", schedule="@every 1s"),
        # The sample's retry policy, on this test's Redis pub/sub.
        "resiliency.yaml": (sample / "resiliency.yaml").read_text().replace("orderpubsub", "redisqueue"),
    }


@dataclass
class Stack:
    engine: EngineProcess
    sdk: SdkHost
    daprd: Daprd
    redis: RedisServer


@pytest.fixture(scope="module")
def stack(
    dapr_bin: Path, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("triggers")
    triggers = workdir / "triggers.yaml"
    triggers.write_text(json.dumps(TRIGGERS, indent=2))  # JSON is YAML too
    with contextlib.ExitStack() as cleanup:
        engine = EngineProcess(workdir, "--triggers", str(triggers)).start()
        cleanup.callback(engine.kill)
        sdk = SdkHost("dapr", engine.address("dapr"), workdir / "dapr-host.log")
        cleanup.callback(sdk.close)
        app_port = int(engine.http_address.rsplit(":", 1)[1])
        daprd = Daprd(dapr_bin, engine, workdir, resources(redis_server), app_port=app_port)
        cleanup.callback(daprd.kill)
        daprd.start()
        yield Stack(engine, sdk, daprd, redis_server)


# ---------------------------------------------------------------------------------------- helpers


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    return status, (json.loads(raw) if raw.strip() else None)


def cloud_event(source: str, event_id: str, data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "com.example.order",
        "datacontenttype": "application/json",
        "data": data,
    }


def publish(daprd: Daprd, pubsub: str, topic: str, event: dict[str, Any]) -> None:
    """A full CloudEvent through daprd's publish API: daprd keeps its id and source."""
    status, body = http(
        "POST",
        f"http://127.0.0.1:{daprd.http_port}/v1.0/publish/{pubsub}/{topic}",
        json.dumps(event).encode(),
        {"Content-Type": "application/cloudevents+json"},
    )
    assert status == 204, (status, body)


def instance(engine: EngineProcess, instance_id: str) -> dict[str, Any] | None:
    status, body = http("GET", f"{engine.http_url}/v1.0/workflows/dapr/{instance_id}")
    if status == 404:
        return None
    assert status == 200, (status, body)
    return dict(body)


def ids_with_prefix(sdk: SdkHost, prefix: str) -> list[str]:
    return sorted(i for i in sdk.call("list_ids", page_size=1000) if i.startswith(prefix))


def wait_completed(sdk: SdkHost, instance_ids: list[str], timeout: float = 90.0) -> list[dict[str, Any]]:
    """Waits (in the SDK host, concurrently) until all have finished; returns their states."""
    futures = [sdk.submit("wait_done", instance_id=i, timeout=timeout) for i in instance_ids]
    states = [f.result(timeout + 15) for f in futures]
    for instance_id, state in zip(instance_ids, states, strict=True):
        assert state is not None, f"{instance_id} does not exist"
        assert state["status"] == "COMPLETED", state
    return states


def output(state: dict[str, Any]) -> Any:
    return json.loads(state["output"])


def log_count(text: str, *fragments: str) -> int:
    return sum(1 for line in text.splitlines() if all(f in line for f in fragments))


def wait_log(read: Any, *fragments: str, timeout: float = 30.0) -> str:
    text: str = wait_until(read, lambda t: log_count(t, *fragments) > 0, timeout=timeout)
    return text


# ---------------------------------------------------------------------------------- subscription


def test_daprd_takes_the_subscriptions_and_the_binding(stack: Stack) -> None:
    status, subscriptions = http("GET", f"{stack.engine.http_url}/dapr/subscribe")
    assert status == 200
    assert {(s["pubsubname"], s["topic"], s["route"], s.get("deadLetterTopic")) for s in subscriptions} == {
        ("memqueue", "orders", "/dapr-workflows/triggers/mem-orders", None),
        ("memqueue", "keyed", "/dapr-workflows/triggers/mem-keyed", None),
        ("redisqueue", "orders", "/dapr-workflows/triggers/redis-orders", "orders-dead"),
        ("redisqueue", "keyed", "/dapr-workflows/triggers/redis-keyed", "keyed-dead"),
    }
    # daprd subscribed for its app (the engine) and reads the cron binding for it (OPTIONS /tick).
    log = stack.daprd.log_text()
    assert "app has not subscribed to binding tick" not in log
    wait_log(stack.engine.log_text, "trigger 'tick': event started workflow 'echo_input'", timeout=20)


# ------------------------------------------------------------------------------------- pub/sub


def publish_data(daprd: Daprd, pubsub: str, topic: str, data: Any, **cloud_event: str) -> None:
    """Plain JSON data; daprd wraps it in a CloudEvent whose attributes `cloud_event` overrides."""
    query = "&".join(f"metadata.cloudevent.{k}={v}" for k, v in cloud_event.items())
    status, body = http(
        "POST",
        f"http://127.0.0.1:{daprd.http_port}/v1.0/publish/{pubsub}/{topic}?{query}",
        json.dumps(data).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 204, (status, body)


@pytest.mark.parametrize(
    ("pubsub", "form"),
    [("memqueue", "cloudevent"), ("redisqueue", "cloudevent"), ("memqueue", "metadata")],
)
def test_the_same_message_twice_starts_one_instance(stack: Stack, pubsub: str, form: str) -> None:
    source = f"dup-{uuid.uuid4().hex[:8]}"
    trigger = "mem-orders" if pubsub == "memqueue" else "redis-orders"
    data = {"Name": "Paperclips", "TotalCost": 99.95}
    for _ in range(2):
        if form == "cloudevent":
            publish(stack.daprd, pubsub, "orders", cloud_event(source, "order-1", data))
        else:  # the publisher sets the CloudEvent's id and source through daprd's metadata
            publish_data(stack.daprd, pubsub, "orders", data, id="order-1", source=source)
    instance_id = f"{source}_order-1"
    wait_log(stack.engine.log_text, f"trigger '{trigger}': duplicate event 'order-1' from '{source}'")
    assert ids_with_prefix(stack.sdk, source) == [instance_id]
    (state,) = wait_completed(stack.sdk, [instance_id])
    assert output(state) == {"input": data, "step": 1}
    text = stack.engine.log_text()
    assert log_count(text, f"trigger '{trigger}'", "started workflow", repr(instance_id)) == 1


@pytest.mark.parametrize("pubsub", ["memqueue", "redisqueue"])
def test_200_messages_start_200_instances(stack: Stack, pubsub: str) -> None:
    source = f"batch-{uuid.uuid4().hex[:8]}"
    for n in range(200):
        publish(stack.daprd, pubsub, "orders", cloud_event(source, f"m{n:03}", {"n": n, "pubsub": pubsub}))
    expected = [f"{source}_m{n:03}" for n in range(200)]
    found = wait_until(lambda: ids_with_prefix(stack.sdk, source), lambda ids: len(ids) >= 200, timeout=60)
    assert found == expected
    states = wait_completed(stack.sdk, expected)
    assert [output(s)["input"] for s in states] == [{"n": n, "pubsub": pubsub} for n in range(200)]


def test_a_malformed_message_is_logged_and_acknowledged(stack: Stack) -> None:
    """In-memory pub/sub, no dead-letter topic: the message is dropped, later ones still start."""
    bad = f"bad-{uuid.uuid4().hex[:8]}"
    good = f"order-{uuid.uuid4().hex[:8]}"
    publish(stack.daprd, "memqueue", "keyed", cloud_event("shop", bad, {"order": {"item": "no ID"}}))
    publish(
        stack.daprd, "memqueue", "keyed", cloud_event("shop", good, {"orderId": good, "order": {"item": 1}})
    )
    (state,) = wait_completed(stack.sdk, [good])
    assert output(state) == {"input": {"item": 1}, "step": 1}
    text = wait_log(
        stack.engine.log_text,
        f"WARNING dapr_workflows.triggers: trigger 'mem-keyed': malformed event '{bad}' from 'shop' on "
        "pub/sub 'memqueue' topic 'keyed': the event's data has no field 'orderId'; answered DROP: "
        "daprd discards it (the trigger declares no deadLetterTopic)",
    )
    wait_log(stack.daprd.log_text, f"DROP status returned from app while processing pub/sub event {bad}")
    assert log_count(text, "malformed event", bad) == 1


def test_a_malformed_message_goes_to_the_dead_letter_topic(stack: Stack) -> None:
    """Redis streams with a dead-letter topic: daprd moves the dropped message there."""
    bad = f"bad-{uuid.uuid4().hex[:8]}"
    publish(stack.daprd, "redisqueue", "keyed", cloud_event("shop", bad, {"orderId": "not a valid ID!"}))
    wait_log(
        stack.engine.log_text,
        f"trigger 'redis-keyed': malformed event '{bad}' from 'shop'",
        "does not make a valid instance ID",
        "answered DROP: daprd moves it to the dead-letter topic 'keyed-dead'",
    )

    def dead_letters() -> list[dict[str, Any]]:
        entries = stack.redis.command("XRANGE", "keyed-dead", "-", "+")
        # Each stream entry is [id, [field, value, ...]]; "data" holds the message as published.
        return [json.loads(dict(zip(f[::2], f[1::2], strict=True))["data"]) for _, f in entries]

    letters = wait_until(dead_letters, lambda got: any(e["id"] == bad for e in got), timeout=30)
    (letter,) = [e for e in letters if e["id"] == bad]
    assert letter["data"] == {"orderId": "not a valid ID!"}
    # Acknowledged on the topic: nothing pending for redelivery in the consumer group.
    wait_until(lambda: stack.redis.command("XPENDING", "keyed", CONSUMER_GROUP)[0], lambda n: n == 0)

    good = f"g-{uuid.uuid4().hex[:8]}"
    publish(stack.daprd, "redisqueue", "keyed", cloud_event("shop", good, {"orderId": good, "order": "ok"}))
    (state,) = wait_completed(stack.sdk, [f"rk-{good}"])
    assert output(state) == {"input": "ok", "step": 1}
    assert log_count(stack.engine.log_text(), "malformed event", bad) == 1  # delivered once


def test_undeliverable_messages_are_dropped(stack: Stack) -> None:
    """What no redelivery can fix, posted to the route as daprd would: DROP, with the reason."""
    route = f"{stack.engine.http_url}/dapr-workflows/triggers/mem-orders"
    headers = {"Content-Type": "application/cloudevents+json"}
    too_large = json.dumps(cloud_event("big", "b-1", "x" * (4 * 1024 * 1024))).encode()
    for body, reason in [
        (b"not json", "the message is not a JSON CloudEvent"),
        (b"[1, 2]", "the message is not a JSON CloudEvent (not an object)"),
        (json.dumps({"id": "no-source"}).encode(), "the CloudEvent's source is null"),
        (too_large, "the limit is 4194304 bytes"),
    ]:
        assert http("POST", route, body, headers) == (200, {"status": "DROP"}), reason
        wait_log(stack.engine.log_text, "trigger 'mem-orders': malformed event", reason, "answered DROP")


# ------------------------------------------------------------------------------------- bindings


def test_the_cron_binding_starts_instances(stack: Stack) -> None:
    ids = wait_until(lambda: ids_with_prefix(stack.sdk, "tick_"), lambda found: len(found) >= 2, timeout=30)
    for state in wait_completed(stack.sdk, ids[:2]):
        assert output(state) == {"input": None, "step": 1}
        # The binding's name and the firing time: "tick_2026-01-02-03-04-05-...-UTC_<hash>".
        assert re.fullmatch(r"tick_\d{4}-\d\d-\d\d-[0-9-]+-UTC_[0-9a-f]{16}", state["instance_id"])


def test_a_repeated_binding_event_starts_one_instance(stack: Stack) -> None:
    """The same event POSTed again, as daprd does when the binding redelivers it."""
    url = stack.engine.http_url
    fired = {"readTimeUTC": "2030-01-02 03:04:05.000000001 +0000 UTC", "timeZone": "Local"}
    first = http("POST", f"{url}/tick", b"", fired)
    again = http("POST", f"{url}/dapr-workflows/triggers/tick", b"", fired)
    assert first[0] == again[0] == 200
    assert first[1]["outcome"] == "started"
    assert again[1] == {"outcome": "duplicate", "instanceID": first[1]["instanceID"]}

    job_id = f"job-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"jobId": job_id, "job": {"size": 3}}).encode()
    answers = [http("POST", f"{url}/jobs", body, {"Content-Type": "application/json"}) for _ in range(2)]
    assert [a[1] for a in answers] == [
        {"outcome": "started", "instanceID": job_id},
        {"outcome": "duplicate", "instanceID": job_id},
    ]
    assert ids_with_prefix(stack.sdk, job_id) == [job_id]
    (state,) = wait_completed(stack.sdk, [job_id])
    assert output(state) == {"input": {"size": 3}, "step": 1}
    wait_log(stack.engine.log_text, f"trigger 'jobs': duplicate event: instance '{job_id}' exists")


def test_a_malformed_binding_event_is_logged_and_acknowledged(stack: Stack) -> None:
    url = stack.engine.http_url
    assert http("OPTIONS", f"{url}/jobs")[0] == 200
    status, answer = http("POST", f"{url}/jobs", b"not json")
    assert (status, answer) == (200, {"outcome": "malformed"})
    wait_log(
        stack.engine.log_text,
        "trigger 'jobs': malformed event on input binding 'jobs': the event's data is not JSON; "
        "acknowledged without a start (an input binding has no dead-letter path)",
    )
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    status, answer = http("POST", f"{url}/jobs", json.dumps({"jobId": job_id, "job": 1}).encode())
    assert (status, answer) == (200, {"outcome": "started", "instanceID": job_id})
    wait_completed(stack.sdk, [job_id])


# ------------------------------------------------------------------------------ transient failures


def test_a_store_failure_asks_for_a_redelivery(tmp_path: Path) -> None:
    """The store cannot take the start now (its SQLite file is locked by another writer)."""
    triggers = tmp_path / "triggers.yaml"
    triggers.write_text(json.dumps({"triggers": TRIGGERS["triggers"][:1] + TRIGGERS["triggers"][-1:]}))
    engine = EngineProcess(tmp_path, "--triggers", str(triggers)).start()
    try:
        message = json.dumps(cloud_event("store", "e-1", {"x": 1})).encode()
        route = f"{engine.http_url}/dapr-workflows/triggers/mem-orders"
        job = json.dumps({"jobId": "job-1", "job": 1}).encode()
        locker = sqlite3.connect(engine.db_path, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")  # held until the answers are in
        answers: dict[str, Any] = {}
        calls = {"pubsub": (route, message), "binding": (f"{engine.http_url}/jobs", job)}

        def call(kind: str) -> None:
            answers[kind] = http("POST", *calls[kind])

        threads = [threading.Thread(target=call, args=(kind,)) for kind in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        locker.execute("ROLLBACK")
        locker.close()
        assert answers["pubsub"] == (200, {"status": "RETRY", "instanceID": "store_e-1"})
        assert answers["binding"] == (500, {"outcome": "failed", "instanceID": "job-1"})
        text = engine.log_text()
        assert log_count(
            text, "ERROR", "trigger 'mem-orders': cannot start workflow 'echo_input'", "answered RETRY"
        )
        assert log_count(text, "ERROR", "trigger 'jobs': cannot start workflow", "answered 500")
        # Redelivered once the store works again: started.
        assert http("POST", route, message) == (200, {"status": "SUCCESS", "instanceID": "store_e-1"})
        assert http("POST", f"{engine.http_url}/jobs", job)[1]["outcome"] == "started"
        assert instance(engine, "store_e-1") is not None
    finally:
        engine.kill()
