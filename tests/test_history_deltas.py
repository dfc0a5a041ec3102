"""Stateful-history deltas with Dapr's SDK on a real engine, counted off the wire.

A `WorkflowRuntime` advertises WORKER_CAPABILITY_STATEFUL_HISTORY: after its first turns of an
instance, each work item carries `cachedHistory{eventCount}` and only the events after them. A
client interceptor in the worker's process sees every work item the engine sends. A runtime
with `disable_stateful_history=True` gets full histories only. Outputs are checked either way
(the SDK replays the cached prefix plus the delta: a wrong history would fail the workflow).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dapr.ext.workflow as wf
import grpc
from dapr_workflows_ext import workflow_client, workflow_runtime

from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient

CHAIN = 30


@dataclass
class Sent:
    full: int = 0
    deltas: int = 0
    past_events: list[int] = field(default_factory=list)


class _Counting:
    """The work-item stream, counted as the worker reads it."""

    def __init__(self, call: Any, sent: Sent) -> None:
        self._call = call
        self._sent = sent

    def __iter__(self) -> _Counting:
        return self

    def __next__(self) -> Any:
        item = next(self._call)
        if item.HasField("workflowRequest"):
            req = item.workflowRequest
            if req.HasField("cachedHistory"):
                self._sent.deltas += 1
            else:
                self._sent.full += 1
            self._sent.past_events.append(len(req.pastEvents))
        return item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class CountWorkItems(grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.sent = Sent()

    def intercept_unary_stream(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        call = continuation(details, request)
        return _Counting(call, self.sent) if details.method.endswith("/GetWorkItems") else call


def register(runtime: wf.WorkflowRuntime) -> None:
    @runtime.activity(name="add_one")
    def add_one(ctx: wf.WorkflowActivityContext, value: int) -> int:
        return value + 1

    @runtime.workflow(name="chain")
    def chain(ctx: wf.DaprWorkflowContext, n: int) -> Any:
        value = 0
        for _ in range(n):
            value = yield ctx.call_activity(add_one, input=value)
        return value


def run_chain(engine: EngineProcess, **options: Any) -> tuple[Sent, Any]:
    counter = CountWorkItems()
    runtime = workflow_runtime(engine.dapr_address, interceptors=[counter], **options)
    register(runtime)
    runtime.start()
    try:
        client = workflow_client(engine.dapr_address)
        instance_id = client.schedule_new_workflow("chain", input=CHAIN)
        state = client.wait_for_workflow_completion(instance_id, timeout_in_seconds=120)
        assert state is not None and state.runtime_status.name == "COMPLETED", state
        return counter.sent, json.loads(state.serialized_output or "null")
    finally:
        runtime.shutdown()


def test_stateful_worker_gets_deltas(engine: EngineProcess) -> None:
    sent, output = run_chain(engine)
    assert output == CHAIN
    turns = CHAIN + 1
    assert sent.full + sent.deltas == turns, sent
    # The first two turns are full (nothing kept yet, then an empty history kept); the rest deltas.
    assert sent.full == 2 and sent.deltas == turns - 2, sent
    # Each delta carries only the previous turn's events, not the whole history.
    assert max(sent.past_events[2:]) <= 4, sent.past_events


def test_worker_without_the_capability_gets_full_histories(engine: EngineProcess) -> None:
    sent, output = run_chain(engine, disable_stateful_history=True)
    assert output == CHAIN
    assert sent.deltas == 0 and sent.full == CHAIN + 1, sent
    assert sent.past_events[-1] == 3 * CHAIN, sent.past_events  # the whole history


def test_deltas_per_stream_full_after_a_reconnect_and_a_restart(engine: EngineProcess) -> None:
    """A raw stateful worker: a delta only on the stream that kept the history, and only what
    follows the events it kept; full on a new stream and after the engine restarted."""
    with RawClient(engine.dapr_address, "dapr") as client:
        pb = client.pb
        stateful = pb.GetWorkItemsRequest(capabilities=[pb.WORKER_CAPABILITY_STATEFUL_HISTORY])
        instance_id = client.start("waiting", "deltas-1")

        def turn(stream: Any) -> Any:
            item = stream.next(timeout=15)
            req = item.workflowRequest
            # No actions: the workflow waits for the next event.
            done = pb.WorkflowResponse(instanceId=req.instanceId, completionToken=item.completionToken)
            client.unary("CompleteOrchestratorTask", done)
            return req

        def raise_event(n: int) -> None:
            client.unary("RaiseEvent", pb.RaiseEventRequest(instanceId=instance_id, name=f"e{n}"))

        a = client.work_items(stateful)
        first = turn(a)
        assert not first.HasField("cachedHistory") and len(first.pastEvents) == 0
        raise_event(1)
        second = turn(a)  # it kept an empty history: full
        assert not second.HasField("cachedHistory") and len(second.pastEvents) == 2
        raise_event(2)
        third = turn(a)
        assert third.cachedHistory.eventCount == 2, third
        committed = client.history(instance_id)
        # Only what follows the two kept events: the second turn's workflowStarted and event.
        assert [e.SerializeToString() for e in third.pastEvents] == [
            e.SerializeToString() for e in committed[2:4]
        ]
        a.cancel()
        b = client.work_items(stateful)
        raise_event(3)
        fourth = turn(b)  # another stream: full
        assert not fourth.HasField("cachedHistory") and len(fourth.pastEvents) == 6
        raise_event(4)
        assert turn(b).cachedHistory.eventCount == 6
        b.cancel()
    engine.restart()
    with RawClient(engine.dapr_address, "dapr") as client:
        c = client.work_items(stateful)
        client.unary("RaiseEvent", pb.RaiseEventRequest(instanceId=instance_id, name="e5"))
        item = c.next(timeout=15)
        assert not item.workflowRequest.HasField("cachedHistory")  # a restarted engine: full
        assert len(item.workflowRequest.pastEvents) == len(client.history(instance_id))
        c.cancel()
