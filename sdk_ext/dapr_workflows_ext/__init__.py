"""dapr-workflows' extension of the Dapr Python SDK.

`workflow_runtime()` and `workflow_client()` connect Dapr's workflow SDK to the dapr-workflows
engine, at the address `dapr-workflows serve` listens on.
"""

from .worker import engine_address, workflow_client, workflow_runtime

__all__ = ["engine_address", "workflow_client", "workflow_runtime"]
