"""History propagation with Dapr's SDK on a real engine: `propagation=` on `call_activity` and
`call_child_workflow`, read with `get_propagated_history()` in the activity and the child.

parent_wf runs `step` (no propagation), then `inspect` with OWN_HISTORY, then child_wf with
LINEAGE; child_wf runs `inspect` with LINEAGE and once with OWN_HISTORY, and returns what it got
itself. Each `inspect` reports the chain it got: (app, instance, workflow name) per chunk, oldest
first, and the activities the chunks record.
"""

from __future__ import annotations

import json
from typing import Any

import dapr.ext.workflow as wf
from dapr.ext.workflow.propagation import PropagatedHistory, PropagationScope
from dapr_workflows_ext import workflow_client, workflow_runtime

from tests.harness.engine_process import EngineProcess

APP = "propagation-app"


def summary(history: PropagatedHistory | None) -> Any:
    if history is None:
        return None
    return {
        "scope": history.scope.name,
        "apps": history.get_app_ids(),
        "chain": [[w.app_id, w.instance_id, w.name] for w in history.get_workflows()],
        "step_outputs": [r.output for w in history.get_workflows() for r in w.get_activities_by_name("step")],
    }


def register(runtime: wf.WorkflowRuntime) -> None:
    @runtime.activity(name="step")
    def step(ctx: wf.WorkflowActivityContext, value: int) -> int:
        return value * 2

    @runtime.activity(name="inspect")
    def inspect(ctx: wf.WorkflowActivityContext, _: Any) -> Any:
        return summary(ctx.get_propagated_history())

    @runtime.workflow(name="child_wf")
    def child_wf(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        mine = summary(ctx.get_propagated_history())
        lineage = yield ctx.call_activity(inspect, input=None, propagation=PropagationScope.LINEAGE)
        own = yield ctx.call_activity(inspect, input=None, propagation=PropagationScope.OWN_HISTORY)
        return {"child": mine, "lineage": lineage, "own": own}

    @runtime.workflow(name="parent_wf")
    def parent_wf(ctx: wf.DaprWorkflowContext, _: Any) -> Any:
        doubled = yield ctx.call_activity(step, input=21)
        plain = yield ctx.call_activity(inspect, input=None)
        own = yield ctx.call_activity(inspect, input=None, propagation=PropagationScope.OWN_HISTORY)
        child = yield ctx.call_child_workflow(
            child_wf, input=None, instance_id=f"{ctx.instance_id}-child", propagation=PropagationScope.LINEAGE
        )
        return {"doubled": doubled, "plain": plain, "own": own, "child": child}


def test_propagated_history_reaches_activities_and_children(engine: EngineProcess) -> None:
    runtime = workflow_runtime(engine.dapr_address, app_id=APP)
    register(runtime)
    runtime.start()
    try:
        client = workflow_client(engine.dapr_address)
        instance_id = client.schedule_new_workflow("parent_wf", input=None, app_id=APP)
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status.name == "COMPLETED", state
        out = json.loads(state.serialized_output or "null")
    finally:
        runtime.shutdown()
    child_id = f"{instance_id}-child"
    parent_chunk = [APP, instance_id, "parent_wf"]
    child_chunk = [APP, child_id, "child_wf"]
    assert out["doubled"] == 42
    assert out["plain"] is None  # no propagation asked for: none given
    assert out["own"] == {
        "scope": "OWN_HISTORY",
        "apps": [APP],
        "chain": [parent_chunk],
        "step_outputs": ["42"],
    }
    child = out["child"]
    assert child["child"] == {
        "scope": "LINEAGE",
        "apps": [APP],
        "chain": [parent_chunk],
        "step_outputs": ["42"],
    }
    # LINEAGE from the child: the parent's chunk (as the child got it), then the child's own.
    assert child["lineage"] == {
        "scope": "LINEAGE",
        "apps": [APP],
        "chain": [parent_chunk, child_chunk],
        "step_outputs": ["42"],
    }
    # OWN_HISTORY from the child: the child's chunk only.
    assert child["own"] == {"scope": "OWN_HISTORY", "apps": [APP], "chain": [child_chunk], "step_outputs": []}
