"""Work-item filters and strict versioning (durabletask's `GetWorkItemsRequest.workItemFilters`)
with real durabletask workers, each in its own process, registering only some orchestrators,
activities and entities and sending the filters the SDK generates from them; on SQLite and PostgreSQL.

Checked: each worker gets only the work it registered (an orchestration on one worker calls an
activity only another has); a name no worker registered waits, PENDING, logged once, and completes
when a worker that has it connects; with strict versioning an orchestration whose version no
connected worker has stays PENDING instead of failing, and runs when a worker of that version
connects, its activities on a worker of its version too; each entity's operations run on the
worker that registered it, and none on a worker whose filters list no entities. The first two
scenarios, the PENDING version and the entities are also run on durabletask's own reference
backend, which must observe the same (it never gives a strict worker an activity, which the SDK
schedules without a version: see eligibility.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.durability import connected_workers, wait_until, wait_worker_connected
from tests.harness.engine_process import EngineProcess
from tests.harness.reference_backend import reference_backend
from tests.harness.sdk_host import SdkHost

STORES = ("sqlite", "postgresql")
HOST = "tests.sdk_apps.durabletask_filter_host"

Hosts = Callable[..., SdkHost]


@pytest.fixture
def workers(engine: EngineProcess, tmp_path: Path) -> Iterator[Hosts]:
    """Starts filter hosts: `workers(tag, "name,name", version=None, worker=True)`; waits until
    each worker's stream is connected."""
    started: list[SdkHost] = []

    def start(tag: str, register: str = "", version: str | None = None, worker: bool = True) -> SdkHost:
        before = connected_workers(engine, "durabletask")
        args = ("--tag", tag, "--register", register, *(("--version", version) if version else ()))
        host = SdkHost(
            "durabletask",
            engine.address("durabletask"),
            tmp_path / f"{tag}.log",
            worker=worker,
            module=HOST,
            host_args=args,
        )
        started.append(host)
        if worker:
            wait_worker_connected(engine, "durabletask", count=before + 1)
        return host

    yield start
    for host in started:
        host.close()


@pytest.fixture
def reference_workers(tmp_path: Path) -> Iterator[Hosts]:
    """Filter hosts on durabletask's reference backend (`durabletask.testing`), in a process of its own."""
    with reference_backend(tmp_path / "reference-backend.log") as address:
        started: list[SdkHost] = []

        def start(tag: str, register: str = "", version: str | None = None, worker: bool = True) -> SdkHost:
            args = ("--tag", tag, "--register", register, *(("--version", version) if version else ()))
            host = SdkHost(
                "durabletask",
                address,
                tmp_path / f"ref-{tag}.log",
                worker,
                module=HOST,
                host_args=args,
            )
            started.append(host)
            return host

        yield start
        for host in started:
            host.close()


def output(state: dict[str, Any] | None) -> Any:
    assert state is not None and state["status"] == "COMPLETED", state
    return json.loads(state["output"])


def status(client: SdkHost, instance_id: str) -> str:
    state = client.call("get", instance_id=instance_id)
    assert state is not None
    return str(state["status"])


def test_each_worker_gets_only_what_it_registered(engine: EngineProcess, workers: Hosts) -> None:
    a = workers("A", "alpha_flow,alpha_step")
    workers("B", "beta_flow,beta_step")
    runs = []
    for flow in ("alpha_flow", "beta_flow") * 3:
        iid = uuid.uuid4().hex
        a.call("start", workflow=flow, instance_id=iid)
        runs.append((flow, iid))
    results = [(flow, output(a.call("wait_done", instance_id=iid))) for flow, iid in runs]
    for flow, result in results:
        if flow == "alpha_flow":  # on A, its second activity only B has
            assert result == {"flow": "A", "alpha": "A", "beta": "B"}
        else:
            assert result == {"flow": "B", "beta": "B"}
    log = engine.log_text()
    assert "not registered" not in log.lower() and "Traceback" not in log


def test_an_unregistered_name_waits_pending_until_a_worker_has_it(
    engine: EngineProcess, workers: Hosts
) -> None:
    a = workers("A", "alpha_flow,alpha_step,beta_step")
    waiting = [uuid.uuid4().hex for _ in range(3)]
    for iid in waiting:
        a.call("start", workflow="gamma_flow", instance_id=iid)
    done = uuid.uuid4().hex
    a.call("start", workflow="alpha_flow", instance_id=done)
    assert output(a.call("wait_done", instance_id=done)) == {"flow": "A", "alpha": "A", "beta": "A"}
    wait_until(
        lambda: "waits for a worker that handles orchestration 'gamma_flow'" in engine.log_text(),
        10,
        "the engine to log that gamma_flow waits",
    )
    time.sleep(1.0)  # it would have been given to A (and failed there) by now
    assert [status(a, iid) for iid in waiting] == ["PENDING"] * 3
    assert engine.log_text().count("handles orchestration 'gamma_flow'") == 1  # logged once
    workers("C", "gamma_flow")
    assert [output(a.call("wait_done", instance_id=iid)) for iid in waiting] == [{"flow": "C"}] * 3


def test_strict_versioning_leaves_an_unknown_version_pending_until_its_worker_connects(
    engine: EngineProcess, workers: Hosts
) -> None:
    v1 = workers("old", "versioned_flow,versioned_step", version="1.0")
    newer, older = uuid.uuid4().hex, uuid.uuid4().hex
    v1.call("start", workflow="versioned_flow", instance_id=newer, version="2.0")
    v1.call("start", workflow="versioned_flow", instance_id=older, version="1.0")
    assert output(v1.call("wait_done", instance_id=older)) == {
        "flow": "old@1.0",
        "step": "old@1.0",
        "version": "1.0",
    }
    time.sleep(1.0)
    assert status(v1, newer) == "PENDING"  # not failed by the 1.0 worker
    assert "version '2.0'" in engine.log_text()
    workers("new", "versioned_flow,versioned_step", version="2.0")
    assert output(v1.call("wait_done", instance_id=newer)) == {
        "flow": "new@2.0",
        "step": "new@2.0",  # its activity, unversioned, went to a worker of its version
        "version": "2.0",
    }


def observed(workers: Hosts) -> dict[str, Any]:
    """What a client sees, on either backend: two workers with their own names, a name no worker has,
    and a version no worker has (strict versioning)."""
    a = workers("A", "alpha_flow,alpha_step")
    workers("B", "beta_flow,beta_step")
    workers("old", "versioned_flow", version="1.0")
    ids = {name: uuid.uuid4().hex for name in ("alpha", "beta", "gamma", "v2")}
    for name, flow in (("alpha", "alpha_flow"), ("beta", "beta_flow"), ("gamma", "gamma_flow")):
        a.call("start", workflow=flow, instance_id=ids[name])
    a.call("start", workflow="versioned_flow", instance_id=ids["v2"], version="2.0")
    seen: dict[str, Any] = {
        "alpha": output(a.call("wait_done", instance_id=ids["alpha"])),
        "beta": output(a.call("wait_done", instance_id=ids["beta"])),
    }
    time.sleep(1.5)
    seen["waiting"] = [status(a, ids["gamma"]), status(a, ids["v2"])]
    workers("C", "gamma_flow")
    seen["gamma"] = output(a.call("wait_done", instance_id=ids["gamma"]))
    return seen


def test_filters_as_the_reference_backend(workers: Hosts, reference_workers: Hosts) -> None:
    expected = observed(reference_workers)
    assert expected == {
        "alpha": {"flow": "A", "alpha": "A", "beta": "B"},
        "beta": {"flow": "B", "beta": "B"},
        "waiting": ["PENDING", "PENDING"],
        "gamma": {"flow": "C"},
    }
    assert observed(workers) == expected


def observed_entities(workers: Hosts) -> dict[str, Any]:
    """Entity filters, on either backend: A runs an orchestration and an entity, B another entity that
    the orchestration calls, C only an orchestration (its filters list no entities); an entity no
    worker has waits until D, which has it, connects."""
    a = workers("A", "entity_flow,alpha_entity")
    workers("B", "beta_entity")
    workers("C", "gamma_flow")
    key, iid = uuid.uuid4().hex, uuid.uuid4().hex
    a.call("start", workflow="entity_flow", instance_id=iid, input=key)
    seen: dict[str, Any] = {"flow": output(a.call("wait_done", instance_id=iid))}
    for entity in ("beta_entity", "beta_entity", "gamma_entity", "alpha_entity"):
        a.call("signal_entity", entity=entity, key=key)

    def state_of(entity: str) -> Any:
        return a.call("entity_state", entity=entity, key=key)

    for entity, expected in (("beta_entity", ["B"] * 3), ("alpha_entity", ["A"] * 2)):
        wait_until(lambda e=entity, x=expected: state_of(e) == x, 20, f"{entity} to be {expected}")
        seen[entity] = state_of(entity)
    time.sleep(1.0)  # it would have been given to A, B or C (and failed there) by now
    seen["gamma waiting"] = state_of("gamma_entity")
    workers("D", "gamma_entity")
    wait_until(lambda: state_of("gamma_entity") is not None, 20, "gamma_entity to run")
    seen["gamma_entity"] = state_of("gamma_entity")
    return seen


def test_entity_filters_send_each_entity_to_its_own_worker_as_the_reference_backend(
    engine: EngineProcess, workers: Hosts, reference_workers: Hosts
) -> None:
    expected = observed_entities(reference_workers)
    assert expected == {
        "flow": {"flow": "A", "alpha": ["A"], "beta": ["B"]},
        "beta_entity": ["B", "B", "B"],
        "alpha_entity": ["A", "A"],
        "gamma waiting": None,
        "gamma_entity": ["D"],
    }
    assert observed_entities(workers) == expected
    log = engine.log_text()
    assert "waits for a worker that handles entity 'gamma_entity'" in log
    assert "not registered" not in log.lower() and "Traceback" not in log
