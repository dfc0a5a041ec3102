"""dapr-workflows' extension of the Dapr Python SDK.

`DaprClient` is the Dapr SDK's client with the workflow methods of the Dapr docs
(`start_workflow`, `get_workflow`, `raise_workflow_event`, `pause_workflow`, `resume_workflow`,
`purge_workflow`, `terminate_workflow`) for daprd's built-in engine (`workflow_component="dapr"`)
and for dapr-workflows through daprd; `dapr_workflows_ext.aio.DaprClient` is its asyncio twin.
Their errors are in `dapr_workflows_ext.errors`.

`workflow_runtime()` and `workflow_client()` connect Dapr's workflow SDK to the dapr-workflows
engine, at the address `dapr-workflows serve` listens on.

`DaprGrpcClient` is `DaprClient` under the name `dapr.clients` also exports it by, so code written
against `from dapr.clients import DaprGrpcClient` changes only its import.
"""

from .client import DaprClient
from .errors import (
    DaprWorkflowError,
    InvalidWorkflowRequestError,
    NotAWorkflowComponentError,
    WorkflowAlreadyExistsError,
    WorkflowNotFoundError,
    WorkflowStateError,
    WorkflowUnavailableError,
)
from .responses import GetWorkflowResponse, StartWorkflowResponse, WorkflowRuntimeStatus
from .worker import engine_address, workflow_client, workflow_runtime

DaprGrpcClient = DaprClient

__all__ = [
    "DaprClient",
    "DaprGrpcClient",
    "DaprWorkflowError",
    "GetWorkflowResponse",
    "InvalidWorkflowRequestError",
    "NotAWorkflowComponentError",
    "StartWorkflowResponse",
    "WorkflowAlreadyExistsError",
    "WorkflowNotFoundError",
    "WorkflowRuntimeStatus",
    "WorkflowStateError",
    "WorkflowUnavailableError",
    "engine_address",
    "workflow_client",
    "workflow_runtime",
]
