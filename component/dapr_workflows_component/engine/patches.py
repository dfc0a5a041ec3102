"""The patches a workflow's code reports (daprd's rule), checked on every turn against those its
history recorded: read from the history's events once, then carried from turn to turn with the
cached history (history_cache.py) as each applied turn adds the patches it reported."""

from __future__ import annotations

from ..protos import dapr_dialect_pb2 as pb


def recorded_patches(history: list[bytes]) -> list[str]:
    """The patches the history recorded: each once, in the order first seen."""
    recorded: list[str] = []
    for raw in history:
        event = pb.HistoryEvent.FromString(raw)
        # This reads every event of a history: WhichOneof is far cheaper than HasField here.
        if event.WhichOneof("eventType") == "workflowStarted" and event.workflowStarted.HasField("version"):
            recorded.extend(p for p in event.workflowStarted.version.patches if p not in recorded)
    return recorded


def patches_after(recorded: list[str], events: list[bytes]) -> list[str]:
    """The patches a history records once `events` are appended to it, given those it recorded:
    the same as reading the whole longer history, reading only the new events."""
    added = recorded_patches(events)
    return recorded + [p for p in added if p not in recorded] if added else recorded


def patch_mismatch(
    history: list[bytes], reported: list[str], recorded: list[str] | None = None
) -> str | None:
    """Whether a turn that reports `reported` patches may apply, by daprd's rule: the patches the
    history recorded (`recorded`, if known; else read from `history`) must begin the reported ones.
    A worker whose code dropped an `is_patched` check reports fewer: None if the turn may apply, else
    the stall's description, worded as daprd words it."""
    if recorded is None:
        recorded = recorded_patches(history)
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
