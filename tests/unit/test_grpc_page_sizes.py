"""gRPC listings serve at most the listings' page size: durabletask's SDK asks 2**31-1 instances for
"all" and follows the continuation token, so a larger page is served as the largest, not refused."""

from __future__ import annotations

import pytest
from dapr_workflows_component import workflows
from dapr_workflows_component.engine.grpc_server import DaprDialectServer, DurableTaskDialectServer
from dapr_workflows_component.protos import dapr_dialect_pb2 as pb
from dapr_workflows_component.protos import durabletask_dialect_pb2 as mpb
from dapr_workflows_component.workflows import MAX_PAGE_SIZE, StartRequest, WorkflowError, page_size

from tests.unit.engine_parts import engine_on, run

ALL = (1 << 31) - 1


def test_page_size_clamps_only_when_asked() -> None:
    assert page_size(ALL, clamp=True) == MAX_PAGE_SIZE
    assert page_size(0, clamp=True) == workflows.DEFAULT_PAGE_SIZE
    with pytest.raises(WorkflowError):
        page_size(MAX_PAGE_SIZE + 1)
    assert page_size(-1, clamp=True) == workflows.DEFAULT_PAGE_SIZE
    with pytest.raises(WorkflowError):
        page_size(-1)


def test_every_grpc_listing_serves_a_huge_page_as_the_largest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflows, "MAX_PAGE_SIZE", 2)

    async def go() -> None:
        engine = await engine_on()
        try:
            for i in range(3):
                await engine.start_workflow(StartRequest(name="wf", instance_id=f"i{i}", dialect="dapr"))
            dapr = DaprDialectServer(engine).extra_unary()["ListInstanceIDs"]
            answer = pb.ListInstanceIDsResponse.FromString(
                await dapr(pb.ListInstanceIDsRequest(pageSize=2**32 - 1).SerializeToString(), None)  # type: ignore[arg-type]
            )
            assert list(answer.instanceIds) == ["i0", "i1"] and answer.continuationToken == "i1"
            ms = DurableTaskDialectServer(engine).extra_unary()
            listing = mpb.ListInstanceIdsRequest(pageSize=ALL).SerializeToString()
            ids = mpb.ListInstanceIdsResponse.FromString(await ms["ListInstanceIds"](listing, None))  # type: ignore[arg-type]
            assert list(ids.instanceIds) == ["i0", "i1"] and ids.lastInstanceKey.value == "i1"
            query = mpb.QueryInstancesRequest()
            query.query.maxInstanceCount = ALL
            states = mpb.QueryInstancesResponse.FromString(
                await ms["QueryInstances"](query.SerializeToString(), None)  # type: ignore[arg-type]
            )
            assert [s.instanceId for s in states.orchestrationState] == ["i0", "i1"]
            assert states.continuationToken.value == "i1"
        finally:
            await engine.stop()

    run(go())
