"""Concurrency limits: the in-memory core (engine/concurrency.py), the file's format
(concurrency_file.py), and the gates in an in-process engine on SQLite (dispatch's hooks)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from dapr_workflows_component.concurrency_file import (
    ConcurrencyFileError,
    load_limits,
    parse_limits,
    with_flags,
)
from dapr_workflows_component.engine.concurrency import (
    ACTIVITY,
    WAIT_LOG_INTERVAL_SECONDS,
    WAIT_LOG_LINES_PER_GATE,
    WORKFLOW,
    ConcurrencyLimits,
    Gate,
    Limiter,
    Throttled,
    activity_name,
)
from dapr_workflows_component.engine.dispatch import ActivityWork, InstanceWork, WorkState
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.protos import durabletask_dialect_pb2 as durabletask_pb

from tests.unit.engine_parts import activity_done, engine_on, next_item, response, run, schedule, start, take


@dataclass(frozen=True)
class Turn:
    instance_id: str


@dataclass(frozen=True)
class Act:
    activity_id: int


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Leases:
    """The lease policy's side: shared or not, and the transactions run in the background."""

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.later: list[Any] = []

    def release_later(self, release: Any) -> None:
        self.later.append(release)


def limiter(shared: bool = False, **limits: Any) -> tuple[Limiter, list[str], Clock]:
    woken: list[str] = []
    clock = Clock()
    leases = Leases(shared)
    lim = Limiter(ConcurrencyLimits(**limits), leases, "engine-1", woken.append, ("dapr",), Turn, clock)
    return lim, woken, clock


def take_now(lim: Limiter, key: Any, name: str | None = None) -> bool:
    """What dispatch does with a queued key: the check, the reservation, and once read, its name."""
    if not lim.admits(key):
        return False
    lim.reserve(key)
    try:
        lim.admit(key, name or "")
    except Throttled as err:
        lim.refused(key, err)
        lim.taken(key, leased=False, queued=True)
        return False
    return True


# ---------------------------------------------------------------- the core


def test_no_limits_admit_everything_and_count_nothing() -> None:
    lim, woken, _ = limiter()
    assert not lim.enabled
    assert all(take_now(lim, Act(i), "a") for i in range(1000))
    assert lim.running(ACTIVITY) == 0 and woken == []


def test_a_global_cap_admits_that_many_and_a_free_slot_admits_the_next() -> None:
    lim, woken, _ = limiter(activities=2)
    assert take_now(lim, Act(1)) and take_now(lim, Act(2))
    assert not take_now(lim, Act(3))
    assert lim.running(ACTIVITY) == 2
    # Workflow turns have gates of their own.
    assert take_now(lim, Turn("w"))
    lim.free(Act(1))
    assert woken == ["dapr"]
    assert take_now(lim, Act(3))
    assert not take_now(lim, Act(4))


def test_a_taken_key_counts_until_its_attempt_ends_unleased() -> None:
    lim, _, _ = limiter(workflows=1)
    lim.reserve(Turn("a"))  # CLAIMING: the store is being read
    assert not lim.admits(Turn("b"))
    lim.taken(Turn("a"), leased=False, queued=False)  # nothing to do after all
    assert lim.admits(Turn("b"))
    lim.reserve(Turn("b"))
    lim.taken(Turn("b"), leased=True, queued=False)  # leased: still counts
    assert not lim.admits(Turn("c"))


def test_a_named_cap_holds_back_only_that_name() -> None:
    lim, _, _ = limiter(activity_names={"send_email": 1})
    assert take_now(lim, Act(1), "send_email")
    # The second one is refused once read, and waits with its name known.
    assert not take_now(lim, Act(2), "send_email")
    assert not lim.admits(Act(2))
    # Other names, and keys whose name is not known yet, go past it.
    assert take_now(lim, Act(3), "charge_card")
    assert take_now(lim, Act(4), "charge_card")
    lim.free(Act(1))
    assert take_now(lim, Act(2), "send_email")
    assert lim.running(ACTIVITY, "send_email") == 1


def test_every_gate_of_an_item_must_have_room() -> None:
    lim, _, _ = limiter(workflows=3, workflow_names={"slow": 1})
    assert take_now(lim, Turn("s1"), "slow")
    assert not take_now(lim, Turn("s2"), "slow")
    assert take_now(lim, Turn("f1"), "fast") and take_now(lim, Turn("f2"), "fast")
    # The global cap is reached: "fast" waits too now.
    assert not lim.admits(Turn("f3"))
    lim.free(Turn("s1"))
    assert take_now(lim, Turn("s2"), "slow")


def test_a_wait_is_logged_once_per_item_with_what_holds_it_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "dapr_workflows.engine")
    lim, _, _ = limiter(workflows=1)
    assert take_now(lim, Turn("a"))
    for _ in range(50):  # every look at the queue
        assert not lim.admits(Turn("b"))
    waits = [r.getMessage() for r in caplog.records if "waits" in r.getMessage()]
    assert waits == [
        "workflow 'b' waits, queued: --max-concurrent-workflows=1 reached (1 running); "
        "it goes out when one ends"
    ]
    lim.free(Turn("a"))
    assert take_now(lim, Turn("b"))
    assert lim.waiting_logged() == 0


def test_what_a_waiting_key_taught_goes_when_its_work_goes() -> None:
    lim, _, _ = limiter(activity_names={"send_email": 1})
    assert take_now(lim, Act(1), "send_email")
    assert not take_now(lim, Act(2), "send_email")  # refused once read: its name is kept, its wait logged
    assert lim.waiting_named() == 1 and lim.waiting_logged() == 1
    lim.forget(Act(2))  # e.g. its instance purged while it waited
    assert lim.waiting_named() == 0 and lim.waiting_logged() == 0
    assert lim.running(ACTIVITY, "send_email") == 1  # what is leased still counts


def test_thousands_waiting_behind_one_gate_log_a_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "dapr_workflows.engine")
    lim, _, clock = limiter(workflows=1)
    assert take_now(lim, Turn("a"))
    for n in range(5000):
        assert not lim.admits(Turn(f"w{n}"))
    lines = [r.getMessage() for r in caplog.records if "wait" in r.getMessage()]
    assert len(lines) == WAIT_LOG_LINES_PER_GATE + 1
    assert lines[-1].startswith("more items wait for --max-concurrent-workflows=1")
    caplog.clear()
    clock.now += WAIT_LOG_INTERVAL_SECONDS  # the next interval names a few again
    assert not lim.admits(Turn("late"))
    assert [r.getMessage() for r in caplog.records][:1] == [
        "workflow 'late' waits, queued: --max-concurrent-workflows=1 reached (1 running); "
        "it goes out when one ends"
    ]


def test_a_gate_the_shared_store_refused_waits_a_backoff_or_a_local_end() -> None:
    lim, _, clock = limiter(shared=True, activities=2)
    assert take_now(lim, Act(1))
    lim.reserve(Act(2))
    full = Throttled(Gate(ACTIVITY, None, 2, shared=True), "a", running=2, in_store=True)
    lim.refused(Act(2), full)
    lim.taken(Act(2), leased=False, queued=True)
    # Locally one runs, but the store said full: not tried again before the backoff...
    assert not lim.admits(Act(2))
    clock.now += 0.05
    assert lim.admits(Act(2))
    # ...which doubles while the store keeps refusing,
    lim.refused(Act(2), full)
    clock.now += 0.03
    assert not lim.admits(Act(2))
    # and ends when a lease of the gate ends here (its slot frees in the store).
    lim.free(Act(1))
    assert lim.admits(Act(2))


def test_the_backoff_ends_when_its_timer_fires_whatever_the_clock_says() -> None:
    """The loop's timer may fire before the limiter's clock reaches the end of the backoff (uvloop
    counts whole milliseconds): the gate must be open to the takers it wakes then, or they would
    wait, unwoken, until their next health ping."""

    async def scenario() -> tuple[bool, bool, list[str]]:
        lim, woken, _ = limiter(shared=True, activities=2)
        lim.reserve(Act(1))
        lim.refused(Act(1), Throttled(Gate(ACTIVITY, None, 2, shared=True), "a", running=2, in_store=True))
        lim.taken(Act(1), leased=False, queued=True)
        blocked = not lim.admits(Act(1))
        woken.clear()
        await asyncio.sleep(0.1)  # past the first backoff (20 ms); the clock stands still
        return blocked, lim.admits(Act(1)), woken

    blocked, admitted_when_woken, woken = asyncio.run(scenario())
    assert blocked
    assert woken == ["dapr"]
    assert admitted_when_woken


def test_an_engine_refused_by_the_shared_store_records_that_it_waits() -> None:
    leases = Leases(shared=True)
    lim = Limiter(ConcurrencyLimits(activities=1), leases, "engine-7", lambda d: None, ("dapr",), Turn)
    lim.reserve(Act(1))
    lim.refused(Act(1), Throttled(Gate(ACTIVITY, None, 1, shared=True), "a", running=1, in_store=True))

    class Tx:
        waits: list[tuple[str, str, float]] = []

        def wait_for_slot(self, lock: str, engine: str, seconds: float) -> None:
            self.waits.append((lock, engine, seconds))

    (record,) = leases.later
    record(Tx())
    assert Tx.waits == [("dapr-workflows concurrency activity ", "engine-7", 1.0)]


def test_a_shared_store_decides_names_in_the_store() -> None:
    # With a shared store, `admit` records the name but never refuses: the claim's transaction
    # counted the store's leases (a refusal after the claim committed would strand the lease).
    lim, _, _ = limiter(shared=True, activity_names={"a": 1})
    assert take_now(lim, Act(1), "a")
    lim.reserve(Act(2))
    lim.admit(Act(2), "a")
    assert lim.running(ACTIVITY, "a") == 2


class FakeTx:
    """What `check_store` asks of the transaction, with the counts a store would answer."""

    def __init__(self, every: int, named: int, preceded: list[str] | None = None) -> None:
        self.counts = (every, named)
        self.preceded = preceded or []
        self.locked: list[str] = []
        self.asked: list[tuple[str, str, object]] = []

    def count_leased(
        self, kind: str, name: str, exclude: str | int, locks: list[str], engine: str
    ) -> tuple[int, int, list[str]]:
        self.locked += locks
        self.asked.append((kind, name, exclude))
        return (*self.counts, self.preceded)


def test_the_store_check_locks_the_item_gates_in_order_and_counts_the_others() -> None:
    lim, _, _ = limiter(shared=True, workflows=5, engine_workflows=9, workflow_names={"slow": 2})
    tx = FakeTx(every=4, named=1)
    lim.check_store(tx, Turn("i"), "slow")  # type: ignore[arg-type]
    assert tx.locked == ["dapr-workflows concurrency workflow ", "dapr-workflows concurrency workflow slow"]
    assert tx.asked == [("workflow", "slow", "i")]
    with pytest.raises(Throttled) as full:
        lim.check_store(FakeTx(every=5, named=0), Turn("j"), "slow")  # type: ignore[arg-type]
    assert full.value.gate.name is None and full.value.in_store
    with pytest.raises(Throttled) as named:
        lim.check_store(FakeTx(every=0, named=2), Turn("j"), "slow")  # type: ignore[arg-type]
    assert named.value.gate.name == "slow"
    # A name without a cap of its own: only the global gate is locked.
    tx = FakeTx(every=0, named=0)
    lim.check_store(tx, Turn("k"), "fast")  # type: ignore[arg-type]
    assert tx.locked == ["dapr-workflows concurrency workflow "]
    # A slot is free, but another engine has waited longer for it: its turn first.
    with pytest.raises(Throttled) as behind:
        lim.check_store(FakeTx(every=0, named=0, preceded=[tx.locked[0]]), Turn("j"), "fast")  # type: ignore[arg-type]
    assert behind.value.gate.name is None
    # Without a shared store there is nothing to check there.
    local, _, _ = limiter(workflows=1)
    tx = FakeTx(every=9, named=9)
    local.check_store(tx, Turn("k"), "fast")  # type: ignore[arg-type]
    assert tx.locked == [] and local.activity_check(Act(1)) is None


def test_the_gates_of_the_limits_and_their_labels() -> None:
    limits = ConcurrencyLimits(
        workflows=50, activities=0, engine_activities=10, workflow_names={"b": 2, "a": 0, "c": 1}
    )
    assert [g.label for g in limits.gates()] == [
        "--max-concurrent-workflows=50",
        "workflowConcurrencyLimits b=2",
        "workflowConcurrencyLimits c=1",
        "maxConcurrentActivityInvocations=10 (this engine)",
    ]
    assert [g.kind for g in limits.gates()] == [WORKFLOW, WORKFLOW, WORKFLOW, ACTIVITY]
    assert ConcurrencyLimits().summary() == "none"


def test_an_activity_name_is_read_from_either_dialects_request() -> None:
    dapr = pb.ActivityRequest(name="send_email", taskExecutionId="x-1").SerializeToString()
    durable = durabletask_pb.ActivityRequest(name="charge", tags={"k": "\u00e9"}).SerializeToString()
    assert activity_name(dapr) == "send_email"
    assert activity_name(durable) == "charge"
    assert activity_name(b"\xff\xff") == ""


# ---------------------------------------------------------------- the file

DAPR_CONFIGURATION = """
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: limits
spec:
  tracing:
    samplingRate: "1"
  workflow:
    globalMaxConcurrentWorkflowInvocations: 50
    globalMaxConcurrentActivityInvocations: 200
    maxConcurrentWorkflowInvocations: 20
    maxConcurrentActivityInvocations: 100
    stateRetentionPolicy:
      anyTerminal: 24h
    activityConcurrencyLimits:
      - name: SendEmail
        maxConcurrent: 5
    workflowConcurrencyLimits:
      - name: OrderProcess
        maxConcurrent: 20
"""


def test_a_dapr_configuration_file_gives_its_workflow_limits(tmp_path: Any) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(DAPR_CONFIGURATION)
    assert load_limits(str(path)) == ConcurrencyLimits(
        workflows=50,
        activities=200,
        engine_workflows=20,
        engine_activities=100,
        workflow_names={"OrderProcess": 20},
        activity_names={"SendEmail": 5},
    )
    as_json = tmp_path / "limits.json"
    as_json.write_text(
        '{"spec": {"workflow": {"activityConcurrencyLimits": [{"name": "a", "maxConcurrent": 1}]}}}'
    )
    assert load_limits(str(as_json)) == ConcurrencyLimits(activity_names={"a": 1})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("- 1\n", "the file must be a mapping, not a list"),
        ("kind: Component\nspec: {workflow: {}}\n", "kind must be Configuration, not 'Component'"),
        ("spec: {}\n", "spec.workflow must be a mapping, not nothing"),
        ("spec: {workflow: {maxConcurrentWorkflows: 3}}\n", "spec.workflow.maxConcurrentWorkflows is not a"),
        (
            "spec: {workflow: {globalMaxConcurrentWorkflowInvocations: -1}}\n",
            "globalMaxConcurrentWorkflowInvocations must be from 0 (no limit)",
        ),
        (
            "spec: {workflow: {globalMaxConcurrentActivityInvocations: '5'}}\n",
            "globalMaxConcurrentActivityInvocations must be a whole number, not '5'",
        ),
        ("spec: {workflow: {maxConcurrentActivityInvocations: true}}\n", "must be a whole number, not True"),
        (
            "spec: {workflow: {activityConcurrencyLimits: {a: 1}}}\n",
            "must be a list of {name, maxConcurrent}",
        ),
        (
            "spec: {workflow: {activityConcurrencyLimits: [{name: a}]}}\n",
            "activityConcurrencyLimits[0].maxConcurrent is missing",
        ),
        (
            "spec: {workflow: {workflowConcurrencyLimits: [{maxConcurrent: 1}]}}\n",
            "workflowConcurrencyLimits[0].name must be a workflow or activity name, not None",
        ),
        (
            "spec: {workflow: {workflowConcurrencyLimits: [{name: a, maxConcurrent: 1}, "
            "{name: a, maxConcurrent: 2}]}}\n",
            "workflowConcurrencyLimits[1]: 'a' is limited twice",
        ),
        (
            "spec: {workflow: {workflowConcurrencyLimits: [{name: a, max: 1}]}}\n",
            "workflowConcurrencyLimits[0].max is not known",
        ),
        ("spec: {workflow: {a: [}\n", "is not valid YAML or JSON"),
    ],
)
def test_a_bad_file_is_one_clear_error(tmp_path: Any, text: str, message: str) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    with pytest.raises(ConcurrencyFileError) as err:
        load_limits(str(path))
    assert message in str(err.value)
    assert "\n" not in str(err.value).split(": ", 1)[0]


def test_a_missing_file_and_flags_that_disagree_with_the_file() -> None:
    with pytest.raises(ConcurrencyFileError, match=r"cannot read '/nonexistent/limits\.yaml'"):
        load_limits("/nonexistent/limits.yaml")
    from_file = parse_limits({"spec": {"workflow": {"globalMaxConcurrentWorkflowInvocations": 5}}})
    assert with_flags(from_file, 0, 3) == ConcurrencyLimits(workflows=5, activities=3)
    assert with_flags(from_file, 5, 0) == from_file
    with pytest.raises(ConcurrencyFileError, match="--max-concurrent-workflows 6 and the file's"):
        with_flags(from_file, 6, 0)


# ---------------------------------------------------------------- in an engine (SQLite)


def activity_names(items: list[pb.WorkItem]) -> list[str]:
    return [i.activityRequest.name for i in items]


def test_an_engine_gives_out_no_more_activities_than_the_cap_and_the_next_when_one_ends() -> None:
    async def body() -> None:
        engine = await engine_on(concurrency=ConcurrencyLimits(activities=2))
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        turn = await take(engine, worker)
        await engine.complete_orchestration(response(turn, *(schedule(i, "work") for i in range(1, 6))))
        running = [await take(engine, worker), await take(engine, worker)]
        assert await next_item(engine, worker) is None  # a health ping: nothing more goes out
        assert engine.dispatch.limits.running("activity") == 2
        assert len([k for k in engine.dispatch.queued() if isinstance(k, ActivityWork)]) == 3
        # One ends: the next goes out at once (the worker waiting for work is woken).
        waiting = asyncio.ensure_future(take(engine, worker))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await engine.complete_activity(activity_done(running[0], '"ok"'))
        third = await asyncio.wait_for(waiting, 1.0)
        assert third.activityRequest.taskId == 3
        await engine.stop()

    run(body())


def test_an_engine_throttles_one_activity_name_and_not_the_others() -> None:
    async def body() -> None:
        engine = await engine_on(concurrency=ConcurrencyLimits(activity_names={"slow": 1}))
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        turn = await take(engine, worker)
        actions = [schedule(1, "slow"), schedule(2, "slow"), schedule(3, "fast"), schedule(4, "fast")]
        await engine.complete_orchestration(response(turn, *actions))
        given = [await take(engine, worker) for _ in range(3)]
        assert activity_names(given) == ["slow", "fast", "fast"]
        assert await next_item(engine, worker) is None
        # The second "slow" waits, queued, with its name known.
        (waiting,) = [k for k in engine.dispatch.queued() if isinstance(k, ActivityWork)]
        assert engine.dispatch.state(waiting) == WorkState.QUEUED
        await engine.complete_activity(activity_done(given[0], '"ok"'))
        assert activity_names([await take(engine, worker)]) == ["slow"]
        await engine.stop()

    run(body())


def test_an_engine_holds_workflow_turns_to_the_cap() -> None:
    async def body() -> None:
        engine = await engine_on(concurrency=ConcurrencyLimits(workflows=1))
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await start(engine, "b")
        first = await take(engine, worker)
        assert await next_item(engine, worker) is None
        assert engine.dispatch.state(InstanceWork("b")) == WorkState.QUEUED
        await engine.complete_orchestration(response(first))
        second = await take(engine, worker)
        assert second.workflowRequest.instanceId == "b"
        await engine.stop()

    run(body())


def test_an_engine_forgets_the_waits_of_workflows_purged_while_queued() -> None:
    async def body() -> None:
        engine = await engine_on(concurrency=ConcurrencyLimits(workflow_names={"wf": 1}))
        limits = engine.dispatch.limits
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await take(engine, worker)  # holds the one slot of "wf"
        for instance_id in ("b", "c", "d"):
            await start(engine, instance_id)
        assert await next_item(engine, worker) is None  # each refused once read: they wait, named
        assert limits.waiting_named() == 3 and limits.waiting_logged() == 3
        for instance_id in ("b", "c"):
            await engine.purge(instance_id, force=True)
        assert limits.waiting_named() == 1 and limits.waiting_logged() == 1
        assert engine.dispatch.state(InstanceWork("d")) == WorkState.QUEUED
        await engine.stop()

    run(body())
