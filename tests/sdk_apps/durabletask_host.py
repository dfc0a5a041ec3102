"""SDK host for Microsoft's durabletask SDK: worker and client in one process."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
from durabletask import client as dt_client
from durabletask import worker as dt_worker
from durabletask.internal.grpc_interceptor import DefaultClientInterceptorImpl

from tests.sdk_apps import (
    durabletask_durability_workflows,
    durabletask_entity_workflows,
    durabletask_rewind_workflows,
)
from tests.sdk_apps import durabletask_workflows as catalog
from tests.sdk_apps.host_loop import parse_args, serve

# durabletask's names of history events whose Dapr name (WorkflowHistoryEventType) differs.
_DAPR_KIND_NAMES = {
    "ORCHESTRATOR_STARTED": "WORKFLOW_STARTED",
    "ORCHESTRATOR_COMPLETED": "WORKFLOW_COMPLETED",
}


def state_dict(state: Any) -> dict[str, Any] | None:
    if state is None:
        return None
    failure = state.failure_details
    return {
        "instance_id": state.instance_id,
        "name": state.name,
        "status": state.runtime_status.name,
        "input": state.serialized_input,
        "output": state.serialized_output,
        "custom_status": state.serialized_custom_status,
        "failure": None if failure is None else {"type": failure.error_type, "message": failure.message},
        "created_at": state.created_at.isoformat(),
        "updated_at": state.last_updated_at.isoformat(),
    }


def connection(address: str) -> dict[str, Any]:
    """How the worker and the client connect: an `https://` address for TLS (roots from
    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH), SDK_HOST_API_TOKEN as the `dapr-api-token` metadata, and
    SDK_HOST_CLIENT_CERT / _KEY for a client certificate (mutual TLS) on a channel of our own."""
    token = os.environ.get("SDK_HOST_API_TOKEN")
    metadata = [("dapr-api-token", token)] if token else None
    cert_file = os.environ.get("SDK_HOST_CLIENT_CERT")
    if not cert_file:
        return {"host_address": address, "metadata": metadata}
    roots = Path(os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"]).read_bytes()
    credentials = grpc.ssl_channel_credentials(
        roots, Path(os.environ["SDK_HOST_CLIENT_KEY"]).read_bytes(), Path(cert_file).read_bytes()
    )
    channel = grpc.secure_channel(address.removeprefix("https://"), credentials)
    interceptors = [DefaultClientInterceptorImpl(metadata)] if metadata else None
    return {"channel": channel, "interceptors": interceptors}


def main() -> None:
    args = parse_args()
    worker = dt_worker.TaskHubGrpcWorker(**connection(args.address))
    client = dt_client.TaskHubGrpcClient(**connection(args.address))
    catalog.register(worker, client)
    durabletask_durability_workflows.register(worker, client)
    durabletask_rewind_workflows.register(worker, client)
    durabletask_entity_workflows.register(worker, client)
    if not args.no_worker:
        worker.start()

    def start(
        workflow: str,
        input: Any = None,
        instance_id: str | None = None,
        start_at: str | None = None,
        replaceable: list[str] | None = None,
    ) -> str:
        when = datetime.fromisoformat(start_at).astimezone(timezone.utc) if start_at else None
        policy = None
        if replaceable is not None:
            from durabletask.internal import orchestrator_service_pb2 as pb

            policy = pb.OrchestrationIdReusePolicy(
                replaceableStatus=[getattr(pb, f"ORCHESTRATION_STATUS_{s}") for s in replaceable]
            )
        return client.schedule_new_orchestration(
            workflow, input=input, instance_id=instance_id, start_at=when, reuse_id_policy=policy
        )

    def history(instance_id: str) -> list[dict[str, Any]]:
        """The history (read with StreamInstanceHistory) as `{event_id, kind, name}`.

        Kinds are spelled like the Dapr host's (WorkflowHistoryEventType names), so tests compare
        them across dialects: `TaskScheduledEvent` becomes `TASK_SCHEDULED`, and durabletask's
        sub-orchestration and orchestrator-started events get Dapr's child-workflow names.
        """
        out = []
        for e in client.get_orchestration_history(instance_id):
            kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(e).__name__.removesuffix("Event")).upper()
            kind = kind.replace("SUB_ORCHESTRATION_", "CHILD_WORKFLOW_")
            kind = _DAPR_KIND_NAMES.get(kind, kind)
            out.append({"event_id": e.event_id, "kind": kind, "name": getattr(e, "name", None)})
        return out

    ops = {
        "ping": lambda: "pong",
        "start": start,
        "get": lambda instance_id, fetch_payloads=True: state_dict(
            client.get_orchestration_state(instance_id, fetch_payloads=fetch_payloads)
        ),
        "wait_start": lambda instance_id, timeout=30: state_dict(
            client.wait_for_orchestration_start(instance_id, timeout=timeout)
        ),
        "wait_done": lambda instance_id, timeout=60: state_dict(
            client.wait_for_orchestration_completion(instance_id, timeout=timeout)
        ),
        "raise_event": lambda instance_id, name, data=None: client.raise_orchestration_event(
            instance_id, name, data=data
        ),
        "suspend": lambda instance_id: client.suspend_orchestration(instance_id),
        "resume": lambda instance_id: client.resume_orchestration(instance_id),
        # `recursive` is passed on only when given, so that without it the SDK's default applies.
        "terminate": lambda instance_id, output=None, **recursive: client.terminate_orchestration(
            instance_id, output=output, **recursive
        ),
        "purge": lambda instance_id, **recursive: (
            client.purge_orchestration(instance_id, **recursive).deleted_instance_count
        ),
        "history": history,
        "list_ids": lambda page_size=50: list(client.list_instance_ids(page_size=page_size).items),
        "restart": lambda instance_id, new_instance_id=False: client.restart_orchestration(
            instance_id, restart_with_new_instance_id=new_instance_id
        ),
        "counter": lambda key: catalog.COUNTERS.get(key, 0),
        "reset_counters": lambda: catalog.COUNTERS.clear(),
        "json": lambda value: json.dumps(value),
    }

    ops.update(durabletask_durability_workflows.extra_ops(client))
    ops.update(durabletask_rewind_workflows.extra_ops(client))
    ops.update(durabletask_entity_workflows.extra_ops(client))

    def shutdown() -> None:
        if not args.no_worker:
            worker.stop()

    serve(ops, shutdown)


if __name__ == "__main__":
    main()
