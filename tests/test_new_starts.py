"""A burst on Dapr's SDK worker: the instances that started first finish first (new_starts.py).

The SDK's worker runs a few work items at a time and queues the rest in its own process, first
come first served; the engine gives one worker at most `--worker-max-new-starts` (4) new starts'
first turns at once, so the later turns of the instances it already runs are not queued there
behind a window's worth of first turns. The workflows are started before the worker connects:
they all wait at the engine, as under a burst, and the test reads the order in which the worker
ran their code.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dapr.ext.workflow as wf
import pytest
from dapr_workflows_ext import workflow_client, workflow_runtime

from tests.harness.engine_process import EngineProcess

N = 60


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    engine = EngineProcess(tmp_path).start()
    yield engine
    engine.kill()


def run_burst(engine: EngineProcess) -> list[tuple[str, int]]:
    """Starts N one-activity workflows, then the worker; what it ran, in order."""
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()

    def note(what: str, i: int) -> None:
        with lock:
            ran.append((what, i))

    runtime = workflow_runtime(engine.dapr_address)

    @runtime.activity(name="echo")
    def echo(ctx: wf.WorkflowActivityContext, i: int) -> int:
        return i

    @runtime.workflow(name="one_activity")
    def one_activity(ctx: wf.DaprWorkflowContext, i: int) -> Any:
        if not ctx.is_replaying:
            note("first turn", i)
        result = yield ctx.call_activity(echo, input=i)
        note("last turn", i)
        return result

    client = workflow_client(engine.dapr_address)
    ids = [client.schedule_new_workflow(one_activity, input=i) for i in range(N)]
    runtime.start()
    try:
        for i, instance_id in enumerate(ids):
            state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
            assert state is not None and state.serialized_output == str(i), state
    finally:
        runtime.shutdown()
    return ran


def test_under_a_burst_the_first_instances_finish_before_most_new_ones_start(engine: EngineProcess) -> None:
    ran = run_burst(engine)
    firsts = [i for what, i in ran if what == "first turn"]
    assert sorted(firsts) == list(range(N))
    first_done = next(k for k, (what, _) in enumerate(ran) if what == "last turn")
    # With a window of 100 first turns (the old order), all 60 ran before any instance finished.
    started_before = sum(1 for what, _ in ran[:first_done] if what == "first turn")
    assert started_before <= N // 4, ran
    # And completions stream out: half the instances are done before the last third start.
    half_done = [k for k, (what, _) in enumerate(ran) if what == "last turn"][N // 2 - 1]
    assert sum(1 for what, _ in ran[:half_done] if what == "first turn") < N * 2 // 3 + 5, ran
