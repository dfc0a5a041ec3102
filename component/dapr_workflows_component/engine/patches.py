"""The patches a workflow's code reports (daprd's rule), read from every turn's history."""

from __future__ import annotations

from ..protos import dapr_dialect_pb2 as pb


def patch_mismatch(history: list[bytes], reported: list[str]) -> str | None:
    """Whether a turn that reports `reported` patches may apply, by daprd's rule: the patches the
    history recorded (each once, in the order first seen) must begin the reported ones. A worker
    whose code dropped an `is_patched` check reports fewer: None if the turn may apply, else the
    stall's description, worded as daprd words it."""
    recorded: list[str] = []
    for raw in history:
        event = pb.HistoryEvent.FromString(raw)
        # This runs on every event of every turn: WhichOneof is far cheaper than HasField here.
        if event.WhichOneof("eventType") == "workflowStarted" and event.workflowStarted.HasField("version"):
            recorded.extend(p for p in event.workflowStarted.version.patches if p not in recorded)
    if not recorded or reported[: len(recorded)] == recorded:
        return None
    return (
        f"Patch mismatch. History patches: [{', '.join(recorded)}], "
        f"current patches: [{', '.join(reported)}]. "
    )


def started_marker(marker: bytes, resp: pb.WorkflowResponse) -> bytes:
    """The turn's workflowStarted event as recorded: with the version (and patches) the worker
    reported, if it reported one; else as it was given."""
    if not resp.HasField("version"):
        return marker
    started = pb.HistoryEvent.FromString(marker)
    started.workflowStarted.version.CopyFrom(resp.version)
    return started.SerializeToString()
