"""What the workflow methods answer: the instance ID of a start, the state of an instance."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class WorkflowRuntimeStatus(str, enum.Enum):
    """The runtime status of an instance.

    Members are named like the Workflow API's strings (`RUNNING`); their values are what the Dapr
    SDK's `get_workflow` answered (`"Running"`), so printing a status keeps working as it did with
    the SDK. A status equals both spellings, whatever their case: `"Running"` (the SDK's) and
    `"RUNNING"` (the docs' and the HTTP API's). Its hash is its value's, so it finds and is found
    under `"Running"` in sets and dicts.
    """

    UNKNOWN = "Unknown"
    RUNNING = "Running"
    COMPLETED = "Completed"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    FAILED = "Failed"
    CANCELED = "Canceled"
    TERMINATED = "Terminated"
    PENDING = "Pending"
    SUSPENDED = "Suspended"
    STALLED = "Stalled"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, WorkflowRuntimeStatus):
            return self is other
        if isinstance(other, str):
            return _spelling(other) == _spelling(self.value)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self.value)

    @property
    def is_terminal(self) -> bool:
        """True once the instance has finished (completed, failed, terminated or canceled)."""
        return self in _TERMINAL

    @classmethod
    def parse(cls, name: str) -> WorkflowRuntimeStatus:
        """`RUNNING` (or `ORCHESTRATION_STATUS_RUNNING`) -> RUNNING; anything else -> UNKNOWN."""
        key = name.strip().upper().removeprefix("ORCHESTRATION_STATUS_")
        return cls.__members__.get(key, cls.UNKNOWN)


def _spelling(text: str) -> str:
    """One spelling of a status name: `RUNNING`, `Running` and `running` alike; `ContinuedAsNew` and
    `CONTINUED_AS_NEW` alike."""
    return text.replace("_", "").upper()


_TERMINAL = frozenset(
    {
        WorkflowRuntimeStatus.COMPLETED,
        WorkflowRuntimeStatus.FAILED,
        WorkflowRuntimeStatus.TERMINATED,
        WorkflowRuntimeStatus.CANCELED,
    }
)


@dataclass
class StartWorkflowResponse:
    """The answer of `start_workflow`: the ID of the new instance."""

    instance_id: str


@dataclass
class GetWorkflowResponse:
    """The state of one instance, as `get_workflow` answers it.

    The times are timezone-aware (UTC). `properties` holds `dapr.workflow.input`, `.output`,
    `.custom_status` and `.failure.*` as the engine reports them (JSON text).
    """

    instance_id: str
    workflow_name: str
    created_at: datetime
    last_updated_at: datetime
    runtime_status: WorkflowRuntimeStatus
    properties: dict[str, str] = field(default_factory=dict)


__all__ = ["GetWorkflowResponse", "StartWorkflowResponse", "WorkflowRuntimeStatus"]
