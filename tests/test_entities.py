"""Durable entities (durabletask's entity API) with real durabletask 1.12 workers and clients, each
scenario compared with the SDK's own reference backend (`durabletask.testing`) running it too; on
SQLite and PostgreSQL. The entities and orchestrations: tests/sdk_apps/durabletask_entity_workflows.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness.durability import call_after_restart, wait_until, wait_worker_connected
from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkError, SdkHost

STORES = ("sqlite", "postgresql")


def _done(host: SdkHost, instance_id: str) -> tuple[str, Any]:
    state = host.call("wait_done", instance_id=instance_id)
    assert state is not None
    return state["status"], state["output"]


def _run(host: SdkHost, workflow: str, args: Any) -> tuple[str, Any]:
    iid = uuid.uuid4().hex
    host.call("start", workflow=workflow, input=args, instance_id=iid)
    return _done(host, iid)


def _state(host: SdkHost, entity: str, key: str) -> Any:
    found = host.call("get_entity", entity=entity, key=key)
    return None if found is None else found["state"]


def _settled(host: SdkHost, entity: str, key: str, expected: Any, timeout: float = 20) -> Any:
    """The entity's state once it is `expected` (signals are one-way: their effect comes later)."""
    wait_until(lambda: _state(host, entity, key) == expected, timeout, f"{entity}@{key} to be {expected}")
    return _state(host, entity, key)


# ---------------------------------------------------------------- scenarios, run on both backends


def function_and_class_entities(host: SdkHost) -> dict[str, Any]:
    """A function-based counter signalled and called from an orchestration and signalled by a
    client; a class-based account whose failing operation reaches the orchestration as an error
    and leaves the state as it was."""
    key = uuid.uuid4().hex
    flow = _run(host, "counter_flow", {"key": key})
    host.call("signal_entity", entity="counter", key=key, operation="add", input=2)
    after_signal = _settled(host, "counter", key, 10)
    account = _run(host, "account_flow", {"key": key})
    return {
        "counter flow": flow,
        "after client signal": after_signal,
        "account flow": account,
        "account state": _state(host, "Account", key),
        "missing": host.call("get_entity", entity="counter", key=f"{key}-none"),
    }


def entity_failure(host: SdkHost) -> dict[str, Any]:
    """An entity operation that raises: the signal's failure is logged, the state rolls back, and
    the entity keeps working."""
    key = uuid.uuid4().hex
    host.call("signal_entity", entity="counter", key=key, operation="add", input=7)
    host.call("signal_entity", entity="counter", key=key, operation="fail")
    host.call("signal_entity", entity="counter", key=key, operation="add", input=1)
    return {"state": _settled(host, "counter", key, 8)}


def entities_that_send(host: SdkHost) -> dict[str, Any]:
    """An entity that signals another entity and one that starts an orchestration."""
    key, iid = uuid.uuid4().hex, uuid.uuid4().hex
    host.call(
        "signal_entity", entity="counter", key=key, operation="forward", input={"to": f"{key}-b", "amount": 4}
    )
    forwarded = _settled(host, "counter", f"{key}-b", 4)
    start = {"workflow": "echo_flow", "instance_id": iid, "input": {"from": "entity"}}
    host.call("signal_entity", entity="counter", key=key, operation="start", input=start)
    wait_until(lambda: host.call("get", instance_id=iid), 20, "the entity's orchestration to exist")
    return {"forwarded": forwarded, "started": _done(host, iid)}


def delayed_signals(host: SdkHost) -> dict[str, Any]:
    """Signals scheduled for later (from a client and from an orchestration) run then, not before."""
    key = uuid.uuid4().hex
    sent = time.monotonic()
    host.call("signal_entity", entity="counter", key=key, operation="add", input=1, delay=3)
    flow = _run(host, "delayed_signal_flow", {"key": key, "seconds": 3})
    early = _state(host, "counter", key)
    value = _settled(host, "counter", key, 2, timeout=30)
    return {"flow": flow, "early": early, "late": value, "waited": time.monotonic() - sent >= 2.5}


def locks(host: SdkHost) -> dict[str, Any]:
    """Critical sections: transfers between two accounts, started together, each under a lock of
    both; none sees another's half-done transfer, so the total stays and each moves its amount."""
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    _run(host, "account_flow", {"key": a})  # balance 6
    ids = []
    for amount in (1, 2, 3):
        iid = uuid.uuid4().hex
        host.call(
            "start",
            workflow="transfer_flow",
            input={"source": a, "target": b, "amount": amount},
            instance_id=iid,
        )
        ids.append(iid)
    outcomes = sorted(_done(host, iid)[0] for iid in ids)
    return {
        "outcomes": outcomes,
        "balances": [_state(host, "Account", a), _state(host, "Account", b)],
        "locked after": host.call("get_entity", entity="Account", key=a)["locked_by"],
    }


def lock_released_on_failure_and_termination(host: SdkHost) -> dict[str, Any]:
    """An orchestration that fails inside its critical section, and one terminated inside it, free
    their locks: the next critical section on those entities goes ahead."""
    key, held = uuid.uuid4().hex, uuid.uuid4().hex
    failed = _run(host, "lock_then_fail", {"key": key})
    again = _run(host, "lock_then_fail", {"key": key})
    _run(host, "account_flow", {"key": held})
    waiting = uuid.uuid4().hex
    args = {"source": held, "target": f"{held}-b", "amount": 1, "wait_event": "go"}
    host.call("start", workflow="transfer_flow", input=args, instance_id=waiting)
    wait_until(
        lambda: (host.call("get_entity", entity="Account", key=held) or {}).get("locked_by"),
        20,
        "the lock to be granted",
    )
    host.call("terminate", instance_id=waiting)
    terminated = _done(host, waiting)[0]
    after = _run(host, "transfer_flow", {"source": held, "target": f"{held}-b", "amount": 2})
    return {
        "failed": failed[0],
        "again": again[0],
        "counter": _state(host, "counter", key),
        "terminated": terminated,
        "after": after,
    }


def queries_and_cleaning(host: SdkHost) -> dict[str, Any]:
    """QueryEntities by prefix (paged), and CleanEntityStorage removing entities with no state."""
    key = uuid.uuid4().hex
    for n in range(3):
        host.call("signal_entity", entity="counter", key=f"{key}-{n}", operation="add", input=n + 1)
    for n in range(3):
        _settled(host, "counter", f"{key}-{n}", n + 1)
    host.call("signal_entity", entity="counter", key=f"{key}-1", operation="delete")
    wait_until(lambda: _state(host, "counter", f"{key}-1") is None, 20, "the delete")
    listed = host.call("query_entities", prefix=f"@counter@{key}", page_size=2)
    cleaned = host.call("clean_entities")
    return {
        "listed": [i.rsplit("-", 1)[1] for i in listed],
        "cleaned": cleaned,
        "after clean": [i.rsplit("-", 1)[1] for i in host.call("query_entities", prefix=f"@counter@{key}")],
    }


SCENARIOS: list[Callable[[SdkHost], dict[str, Any]]] = [
    function_and_class_entities,
    entity_failure,
    entities_that_send,
    delayed_signals,
    locks,
    lock_released_on_failure_and_termination,
    queries_and_cleaning,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_entities_as_the_reference_backend(
    scenario: Callable[[SdkHost], dict[str, Any]], ours: SdkHost, reference: SdkHost
) -> None:
    expected = scenario(reference)
    assert scenario(ours) == expected


def test_entity_results(ours: SdkHost) -> None:
    """The figures themselves (the comparison above holds them against the reference)."""
    assert function_and_class_entities(ours) == {
        "counter flow": ("COMPLETED", "8"),
        "after client signal": 10,
        "account flow": ("COMPLETED", "[6, true]"),
        "account state": 6,
        "missing": None,
    }
    assert locks(ours) == {"outcomes": ["COMPLETED"] * 3, "balances": [0, 6], "locked after": None}


def _lock_of(host: SdkHost, key: str) -> str | None:
    found = host.call("get_entity", entity="Account", key=key)
    return None if found is None else found["locked_by"]


def test_kill_while_an_entity_holds_a_lock(engine: EngineProcess, ours: SdkHost) -> None:
    """The engine dies (SIGKILL) while an orchestration holds a lock on two accounts, another
    critical section waits for it and a client's signal waits behind it. After the restart the
    lock is still held and nothing overtook it; once the holder goes on, everything runs in order."""
    held, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert _run(ours, "account_flow", {"key": held}) == ("COMPLETED", "[6, true]")
    holder, waiter = uuid.uuid4().hex, uuid.uuid4().hex
    args = {"source": held, "target": other, "amount": 1, "wait_event": "go"}
    ours.call("start", workflow="transfer_flow", input=args, instance_id=holder)
    lock = wait_until(lambda: _lock_of(ours, held), 20, "the holder's lock")
    ours.call(
        "start",
        workflow="transfer_flow",
        input={"source": held, "target": other, "amount": 2},
        instance_id=waiter,
    )
    # Its first turn asked for the lock: it runs, and waits.
    wait_until(lambda: ours.call("get", instance_id=waiter)["status"] == "RUNNING", 20, "the waiter")
    ours.call("signal_entity", entity="Account", key=held, operation="deposit", input=100)
    wait_until(lambda: ours.call("get_entity", entity="Account", key=held)["backlog"] >= 1, 20, "the deposit")

    engine.kill()
    engine.start()
    wait_worker_connected(engine, "durabletask")
    assert call_after_restart(ours, "get_entity", entity="Account", key=held) == {
        "id": f"@account@{held}",
        "state": 6,
        "locked_by": lock,
        "backlog": 1,
    }
    assert ours.call("get", instance_id=waiter)["status"] == "RUNNING"

    ours.call("raise_event", instance_id=holder, name="go")
    assert _done(ours, holder) == ("COMPLETED", "[5, 1]")
    assert _done(ours, waiter) == ("COMPLETED", "[3, 3]")
    assert _settled(ours, "Account", held, 103) == 103
    assert _lock_of(ours, held) is None and _lock_of(ours, other) is None


def test_entities_are_listed_and_read_like_instances_and_purged_with_their_state(ours: SdkHost) -> None:
    """An entity is an instance `@name@key` (running while it exists): GetInstance and the listing
    show it, purging it deletes its state, and calls meant for workflows refuse it."""
    key = uuid.uuid4().hex
    ours.call("signal_entity", entity="counter", key=key, operation="add", input=3)
    _settled(ours, "counter", key, 3)
    entity_id = f"@counter@{key}"
    state = ours.call("get", instance_id=entity_id)
    assert (state["name"], state["status"]) == ("counter", "RUNNING")
    assert entity_id in ours.call("list_ids", page_size=1000)
    for op, args in (("terminate", {}), ("suspend", {}), ("raise_event", {"name": "x"})):
        with pytest.raises(SdkError) as err:
            ours.call(op, instance_id=entity_id, **args)
        assert "FAILED_PRECONDITION" in str(err.value) and "durable entity" in str(err.value)
    with pytest.raises(SdkError) as err:
        ours.call("start", workflow="echo_flow", instance_id=f"@counter@{key}-2")
    assert "INVALID_ARGUMENT" in str(err.value)
    assert ours.call("purge", instance_id=entity_id) == 1
    assert ours.call("get_entity", entity="counter", key=key) is None
    assert ours.call("get", instance_id=entity_id) is None
    ours.call("signal_entity", entity="counter", key=key, operation="add", input=1)
    assert _settled(ours, "counter", key, 1) == 1  # a new entity, from nothing


def test_a_child_workflow_under_an_entity_id_fails_its_parent(ours: SdkHost) -> None:
    """Its work would go to the entity's lease and never run: the parent fails with the reason, and
    the entity stays an entity."""
    key = uuid.uuid4().hex
    status, _ = _run(ours, "child_at_entity_id", {"child_id": f"@counter@{key}"})
    assert status == "FAILED"
    assert ours.call("get", instance_id=f"@counter@{key}") is None
    ours.call("signal_entity", entity="counter", key=key, operation="add", input=2)
    assert _settled(ours, "counter", key, 2) == 2


def test_two_engines_sharing_postgresql_run_each_entity_one_batch_at_a_time(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two engines (replicas) on one PostgreSQL database, a worker and client on each: signals and
    critical sections sent through both reach the same entities, each operation applied once."""
    engines = [
        EngineProcess(
            tmp_path, "--store-lease-seconds", "2", store_url=postgres_url, log_name=f"engine-{n}.log"
        )
        for n in "ab"
    ]
    hosts: list[SdkHost] = []
    try:
        for n, engine in zip("ab", engines, strict=True):
            engine.start()
            hosts.append(SdkHost("durabletask", engine.address("durabletask"), tmp_path / f"host-{n}.log"))
        key, a, b = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
        for n in range(20):
            hosts[n % 2].call("signal_entity", entity="counter", key=key, operation="add", input=1)
        assert _settled(hosts[0], "counter", key, 20, timeout=40) == 20
        _run(hosts[0], "account_flow", {"key": a})  # balance 6
        ids = []
        for n, amount in enumerate((1, 2, 3)):
            iid = uuid.uuid4().hex
            args = {"source": a, "target": b, "amount": amount}
            hosts[n % 2].call("start", workflow="transfer_flow", input=args, instance_id=iid)
            ids.append(iid)
        assert [_done(hosts[0], iid)[0] for iid in ids] == ["COMPLETED"] * 3
        assert [_state(hosts[1], "Account", a), _state(hosts[1], "Account", b)] == [0, 6]
    finally:
        for host in hosts:
            host.close()
        for engine in engines:
            engine.kill()


def test_a_delayed_signal_survives_a_kill(engine: EngineProcess, ours: SdkHost) -> None:
    """A signal scheduled 8 s ahead is a durable timer: the engine dies (SIGKILL) before it is due,
    and after the restart the signal runs once, not before its time."""
    key = uuid.uuid4().hex
    sent = time.monotonic()
    ours.call("signal_entity", entity="counter", key=key, operation="add", input=1, delay=8)
    engine.kill()
    engine.start()
    wait_worker_connected(engine, "durabletask")
    found = call_after_restart(ours, "get_entity", entity="counter", key=key)
    if time.monotonic() - sent < 7.5:  # else the restart (on a loaded machine) took longer than the delay
        assert (found["state"], found["backlog"]) == (None, 1)
    assert _settled(ours, "counter", key, 1, timeout=30) == 1
    assert time.monotonic() - sent >= 7.5
    time.sleep(1)
    assert _state(ours, "counter", key) == 1
