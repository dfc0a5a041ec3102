"""Talks to the engine over raw gRPC with our own generated messages, no workflow SDK.

The test process may import `dapr_workflows_component.protos` (our package names, so no clash with
either SDK). Requests are serialised by hand and sent with `request_serializer=None`, which also lets
a test send bytes that are no protobuf message at all.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import grpc
from dapr_workflows_component.protos import dapr_dialect_pb2 as dapr_pb
from dapr_workflows_component.protos import durabletask_dialect_pb2 as dt_pb

SERVICE = "/TaskHubSidecarService/"


def messages(dialect: str) -> ModuleType:
    return dapr_pb if dialect == "dapr" else dt_pb


class RawClient:
    """A gRPC channel to one dialect's port; every call takes and returns bytes."""

    def __init__(self, address: str, dialect: str) -> None:
        self.dialect = dialect
        self.pb = messages(dialect)
        # No client-side size limits: the engine's own limits are what the tests look at.
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unary(self, method: str, request: bytes | Any, timeout: float | None = 10.0) -> bytes:
        """Calls `method` (a name, or a full `/service/method` path); `timeout=None` sets no deadline."""
        path = method if method.startswith("/") else SERVICE + method
        payload = request if isinstance(request, bytes) else request.SerializeToString()
        call = self.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        return call(payload, timeout=timeout)  # type: ignore[no-any-return]

    def error(self, method: str, request: bytes | Any, timeout: float | None = 10.0) -> grpc.RpcError:
        """Calls `method` expecting it to fail; returns the error (its code() and details())."""
        try:
            self.unary(method, request, timeout)
        except grpc.RpcError as err:
            return err
        raise AssertionError(f"{method} succeeded; an error was expected")

    # -- calls of both dialects, decoded

    def start(self, name: str, instance_id: str, input: str | None = None) -> str:
        req = self.pb.CreateInstanceRequest(name=name, instanceId=instance_id)
        if input is not None:
            req.input.value = input
        return str(self.pb.CreateInstanceResponse.FromString(self.unary("StartInstance", req)).instanceId)

    def get(self, instance_id: str) -> Any:
        """The instance's WorkflowState / OrchestrationState, or None."""
        raw = self.unary(
            "GetInstance", self.pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True)
        )
        return state_of(self.pb, raw)

    def wait_done(self, instance_id: str, timeout: float | None) -> Any:
        req = self.pb.GetInstanceRequest(instanceId=instance_id, getInputsAndOutputs=True)
        return state_of(self.pb, self.unary("WaitForInstanceCompletion", req, timeout=timeout))

    def history(self, instance_id: str) -> list[Any]:
        """The instance's history events, each parsed as this dialect's HistoryEvent."""
        if self.dialect == "dapr":
            raw = self.unary("GetInstanceHistory", dapr_pb.GetInstanceHistoryRequest(instanceId=instance_id))
            return list(dapr_pb.GetInstanceHistoryResponse.FromString(raw).events)
        call = self.channel.unary_stream(
            SERVICE + "StreamInstanceHistory", request_serializer=None, response_deserializer=None
        )
        events: list[Any] = []
        req = dt_pb.StreamInstanceHistoryRequest(instanceId=instance_id).SerializeToString()
        for chunk in call(req, timeout=10):
            events.extend(dt_pb.HistoryChunk.FromString(chunk).events)
        return events

    def work_items(self, request: Any = None) -> WorkItemStream:
        """A worker's stream; `request` is its GetWorkItemsRequest (default: an empty one)."""
        return WorkItemStream(self, request)


def state_of(pb: ModuleType, raw: bytes) -> Any:
    resp = pb.GetInstanceResponse.FromString(raw)
    if not resp.exists:
        return None
    return resp.workflowState if pb is dapr_pb else resp.orchestrationState


def status_name(pb: ModuleType, state: Any) -> str:
    """RUNNING, COMPLETED, ... from a WorkflowState or OrchestrationState."""
    number = state.workflowStatus if pb is dapr_pb else state.orchestrationStatus
    return str(pb.OrchestrationStatus.Name(number)).removeprefix("ORCHESTRATION_STATUS_")


class WorkItemStream:
    """A raw worker: the GetWorkItems server stream, read on a thread into a queue."""

    def __init__(self, client: RawClient, request: Any = None) -> None:
        self.pb = client.pb
        call = client.channel.unary_stream(
            SERVICE + "GetWorkItems", request_serializer=None, response_deserializer=None
        )
        self._stream = call((request or self.pb.GetWorkItemsRequest()).SerializeToString())
        self._items: queue.Queue[Any] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for raw in self._stream:
                self._items.put(self.pb.WorkItem.FromString(raw))
        except grpc.RpcError as err:
            self._items.put(err)

    def next(self, timeout: float = 10.0, skip_pings: bool = True) -> Any:
        """The next work item (a WorkItem of this dialect)."""
        while True:
            item = self._items.get(timeout=timeout)
            if isinstance(item, grpc.RpcError):
                raise item
            if skip_pings and item.WhichOneof("request") == "healthPing":
                continue
            return item

    def pending(self, wait: float) -> list[Any]:
        """The work items (no pings) that arrive within the next `wait` seconds."""
        deadline = time.monotonic() + wait
        out = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.next(timeout=left))
            except queue.Empty:
                break
        return out

    def cancel(self) -> None:
        self._stream.cancel()

    def __iter__(self) -> Iterator[Any]:
        while True:
            yield self.next()
