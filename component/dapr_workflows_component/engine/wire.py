"""Building history events and encoding work items.

The engine keeps history in the Dapr dialect's message types. Both dialects number the fields of
work items, requests and history events alike wherever the engine writes them (the differences lie in
fields only the other dialect sets, which the adapters strip on the way in), so one encoding serves
both. Work items are assembled from stored event bytes without parsing them again.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from google.protobuf import timestamp_pb2, wrappers_pb2
from google.protobuf.message import DecodeError, Message

from ..protos import dapr_dialect_pb2 as pb
from ..protos import durabletask_dialect_pb2 as durabletask_pb
from ..workflows import ErrorCode, WorkflowError, require_timestamp, unregistered_workflow_message

log = logging.getLogger("dapr_workflows.engine")


def parse(cls: type[Any], raw: bytes) -> Any:
    """A request's message; bytes that are not one are the caller's error, in one sentence."""
    try:
        return cls.FromString(raw)
    except DecodeError as err:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT, f"malformed {cls.DESCRIPTOR.name} message: {err}"
        ) from None


def now_us() -> int:
    return time.time_ns() // 1000


def new_execution_id() -> str:
    return uuid.uuid4().hex


def timestamp(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def micros(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def micros_or_none(msg: Message, name: str) -> int | None:
    """A caller's optional timestamp field, checked to fit the store."""
    return require_timestamp(name, micros(getattr(msg, name))) if msg.HasField(name) else None


def string_value(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string_value_bytes(value: str) -> bytes:
    return _field(1, value.encode())


def encode_workflow_work_item(
    instance_id: str,
    execution_id: str,
    past: list[bytes],
    new: list[bytes],
    token: str,
    propagated: bytes | None = None,
    cached_count: int = 0,
) -> bytes:
    """WorkItem{workflowRequest=1: {instanceId=1, executionId=2, pastEvents=3, newEvents=4,
    propagatedHistory=8, cachedHistory=9 (Dapr's dialect)}, token=10}.

    With `cached_count` > 0, `past` holds only the events after the first `cached_count`
    committed ones, which the worker keeps (stateful history)."""
    parts = [_field(1, instance_id.encode()), _field(2, _string_value_bytes(execution_id))]
    parts.extend(_field(3, e) for e in past)
    parts.extend(_field(4, e) for e in new)
    if propagated is not None:
        parts.append(_field(8, propagated))
    if cached_count > 0:
        parts.append(_field(9, pb.CachedHistory(eventCount=cached_count).SerializeToString()))
    return _field(1, b"".join(parts)) + _field(10, token.encode())


def encode_activity_work_item(request: bytes, token: str) -> bytes:
    """WorkItem{activityRequest = 2, completionToken = 10}."""
    return _field(2, request) + _field(10, token.encode())


def encode_health_ping(field_number: int) -> bytes:
    return _field(field_number, b"")


def encode_history_events(field_number: int, events: list[bytes]) -> bytes:
    """A message whose only field is `repeated HistoryEvent` at `field_number`."""
    return b"".join(_field(field_number, e) for e in events)


def history_event(micros_now: int, event_id: int = -1, **event: object) -> pb.HistoryEvent:
    return pb.HistoryEvent(eventId=event_id, timestamp=timestamp(micros_now), **event)  # type: ignore[arg-type]


def failure_details(error_type: str, message: str) -> pb.TaskFailureDetails:
    return pb.TaskFailureDetails(errorType=error_type, errorMessage=message)


def explain_unregistered(response: pb.WorkflowResponse, workflow_name: str, dialects: list[str]) -> None:
    """A worker that failed the workflow because it has none of that name: its failure message
    becomes the sentence of `unregistered_workflow_message` (the stack trace stays as sent)."""
    for action in response.actions:
        # The kind first: looking at a member of the oneof costs more than asking which is set.
        if action.WhichOneof("workflowActionType") != "completeWorkflow":
            continue
        done = action.completeWorkflow
        if not done.HasField("failureDetails"):
            continue
        message = unregistered_workflow_message(done.failureDetails.errorType, workflow_name, dialects)
        if message is not None:
            done.failureDetails.errorMessage = message
            log.warning("%s", message)


def event_type(event: bytes) -> str | None:
    kind: str | None = pb.HistoryEvent.FromString(event).WhichOneof("eventType")
    return kind


def activity_name(request: bytes) -> str:
    """The name of a stored ActivityRequest (field 1 in both dialects), read without parsing the rest
    (its input may be large): the engine writes field 1 first, as protobuf orders fields by number.
    Otherwise the whole request is parsed, by the other dialect's message if one cannot; "" if none can."""
    if request[:1] == b"\x0a":
        length, shift, pos = 0, 0, 1
        while pos < len(request) and shift < 35:
            byte = request[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                if pos + length <= len(request):
                    return request[pos : pos + length].decode("utf-8", "replace")
                break
            shift += 7
    for message in (pb.ActivityRequest, durabletask_pb.ActivityRequest):
        try:
            return str(message.FromString(request).name)
        except DecodeError:
            continue
    return ""
