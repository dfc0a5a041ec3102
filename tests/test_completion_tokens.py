"""Completion tokens cannot be guessed, and a result is applied only to the work item of its lease.

A worker that saw one token used to guess its neighbour (`<boot>-<counter>`) and complete another
worker's activity with its own result; the genuine result was then dropped as stale. Here two raw
workers each take one activity; the forgeries (a guessed neighbour, a right token with another
instance or task, a turn token on another instance) change nothing, are counted in the log, and
the genuine results are the ones recorded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from google.protobuf import wrappers_pb2

from tests.harness.durability import wait_worker_connected
from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient, WorkItemStream, status_name
from tests.harness.shared import unique

TOKEN = re.compile(r"^[0-9a-f]{12}-[A-Za-z0-9_-]{22,}$")  # boot ID, then 128 random bits or more


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path_factory.mktemp("tokens")).start()
    yield proc
    proc.kill()


def take_activity(client: RawClient, stream: WorkItemStream, iid: str, value: str) -> tuple[str, str]:
    """Starts `iid`, answers its first turn with one activity; returns (turn token, activity token)."""
    pb = client.pb
    client.start("raw_add", iid, input=value)
    turn = stream.next()
    assert turn.workflowRequest.instanceId == iid
    schedule = pb.WorkflowAction(id=0, scheduleTask=pb.ScheduleTaskAction(name="add_one"))
    schedule.scheduleTask.input.value = value
    client.unary(
        "CompleteOrchestratorTask",
        pb.WorkflowResponse(instanceId=iid, completionToken=turn.completionToken, actions=[schedule]),
    )
    item = stream.next()
    assert item.activityRequest.workflowInstance.instanceId == iid
    return turn.completionToken, item.completionToken


def activity_result(client: RawClient, iid: str, task: int, token: str, value: str) -> None:
    client.unary(
        "CompleteActivityTask",
        client.pb.ActivityResponse(
            instanceId=iid, taskId=task, result=wrappers_pb2.StringValue(value=value), completionToken=token
        ),
    )


def finish(client: RawClient, stream: WorkItemStream, iid: str) -> str:
    """Answers the instance's next turn by completing it with its activity's result."""
    pb = client.pb
    turn = stream.next()
    request = turn.workflowRequest
    assert request.instanceId == iid
    results = [e.taskCompleted.result.value for e in request.newEvents if e.HasField("taskCompleted")]
    assert len(results) == 1, results
    complete = pb.WorkflowAction(
        id=1, completeWorkflow=pb.CompleteWorkflowAction(workflowStatus=pb.ORCHESTRATION_STATUS_COMPLETED)
    )
    complete.completeWorkflow.result.value = results[0]
    client.unary(
        "CompleteOrchestratorTask",
        pb.WorkflowResponse(instanceId=iid, completionToken=turn.completionToken, actions=[complete]),
    )
    return str(results[0])


def test_forged_completions_change_nothing(engine: EngineProcess) -> None:
    a_id, b_id = unique("victim"), unique("forger")
    # One raw worker takes both activities; the forger, on its own connection, knows only its own
    # instance's tokens.
    with RawClient(engine.dapr_address, "dapr") as worker, RawClient(engine.dapr_address, "dapr") as forger:
        stream = worker.work_items()
        wait_worker_connected(engine, "dapr")
        a_turn, a_token = take_activity(worker, stream, a_id, "1")
        b_turn, b_token = take_activity(worker, stream, b_id, "2")
        try:
            # The forger guesses neighbours of its own token, the old way and a few more.
            boot, _, rest = b_token.partition("-")
            guesses = [f"{boot}-{n}" for n in range(1, 50)] + [f"{boot}-{rest[:-1]}{c}" for c in "AQgw"]
            guesses = [g for g in guesses if g != b_token]
            for guess in guesses:
                activity_result(forger, a_id, 0, guess, "666")
            # The victim's token with the wrong instance or task, and a leased turn's token (of a
            # third instance) sent as another instance's turn.
            activity_result(forger, b_id, 0, a_token, "666")
            activity_result(forger, a_id, 7, a_token, "666")
            c_id = unique("third")
            worker.start("raw_add", c_id, input="3")
            c_turn = stream.next().completionToken
            forger.unary(
                "CompleteOrchestratorTask",
                forger.pb.WorkflowResponse(instanceId=b_id, completionToken=c_turn, actions=[]),
            )
            # Nothing of that was applied: no turn came for any instance.
            assert stream.pending(wait=1.0) == []

            activity_result(worker, a_id, 0, a_token, "10")
            assert finish(worker, stream, a_id) == "10"
            activity_result(worker, b_id, 0, b_token, "20")
            assert finish(worker, stream, b_id) == "20"
        finally:
            stream.cancel()
        for iid, value in ((a_id, "10"), (b_id, "20")):
            state = worker.get(iid)
            assert status_name(worker.pb, state) == "COMPLETED" and state.output.value == value
    for token in (a_turn, a_token, b_turn, b_token):
        assert TOKEN.match(token), token
    log = engine.log_text()
    assert log.count("its completion token belongs to another work item") == 3, log[-3000:]
    assert log.count(f"ignored a stale activity result for {a_id!r} task 0") == len(guesses)
