"""What the workflow methods answer: the instance ID of a start, the state of an instance."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class WorkflowRuntimeStatus(str, enum.Enum):
    """The runtime status of an instance.

    Members are named like the Workflow API's strings (`RUNNING`); their values are what the Dapr
    SDK's `get_workflow` answered (`"Running"`), so `status == "Running"` and printing a status keep
    working as they did with the SDK.
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

    @property
    def is_terminal(self) -> bool:
        """True once the instance has finished (completed, failed, terminated or canceled)."""
        return self in _TERMINAL

    @classmethod
    def parse(cls, name: str) -> WorkflowRuntimeStatus:
        """`RUNNING` (or `ORCHESTRATION_STATUS_RUNNING`) -> RUNNING; anything else -> UNKNOWN."""
        key = name.strip().upper().removeprefix("ORCHESTRATION_STATUS_")
        return cls.__members__.get(key, cls.UNKNOWN)


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
