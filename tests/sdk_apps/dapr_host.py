"""SDK host for Dapr's workflow SDK (`dapr.ext.workflow`): worker and client in one process."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import dapr.ext.workflow as wf
from dapr_workflows_ext import workflow_client, workflow_runtime

from tests.sdk_apps import dapr_durability_workflows
from tests.sdk_apps import dapr_workflows as catalog
from tests.sdk_apps.host_loop import parse_args, serve


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


def export_sdk_spans(endpoint: str) -> None:
    """Sends the SDK's own spans (it makes them when OpenTelemetry is installed) to an OTLP receiver."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-host"}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)


def main() -> None:
    args = parse_args()
    # Set by a test that receives traces (tests/test_telemetry.py).
    if os.environ.get("SDK_HOST_OTLP_ENDPOINT"):
        export_sdk_spans(os.environ["SDK_HOST_OTLP_ENDPOINT"])
    if args.address:
        # Configured the way a user of `dapr-workflows serve` would: one variable for both.
        os.environ["DAPR_WORKFLOWS_ENGINE_ADDRESS"] = args.address
        runtime = workflow_runtime()
        client = workflow_client()
    else:
        # An unchanged Dapr app: the SDK finds its endpoint itself (DAPR_GRPC_ENDPOINT).
        runtime = wf.WorkflowRuntime()
        client = wf.DaprWorkflowClient()
    catalog.register(runtime, client)
    dapr_durability_workflows.register(runtime, client)
    if not args.no_worker:
        runtime.start()

    def start(
        workflow: str, input: Any = None, instance_id: str | None = None, start_at: str | None = None
    ) -> str:
        when = datetime.fromisoformat(start_at).astimezone(timezone.utc) if start_at else None
        return client.schedule_new_workflow(workflow, input=input, instance_id=instance_id, start_at=when)

    def history(instance_id: str) -> list[dict[str, Any]]:
        """The history as `{event_id, kind, name}`; kinds are WorkflowHistoryEventType names."""
        return [
            {"event_id": e.event_id, "kind": e.event_type.name, "name": e.name}
            for e in client.get_workflow_history(instance_id)
        ]

    def set_code_version(key: str, version: int) -> None:
        catalog.CODE_VERSIONS[key] = version

    ops = {
        "ping": lambda: "pong",
        "start": start,
        "get": lambda instance_id, fetch_payloads=True: state_dict(
            client.get_workflow_state(instance_id, fetch_payloads=fetch_payloads)
        ),
        "wait_start": lambda instance_id, timeout=30: state_dict(
            client.wait_for_workflow_start(instance_id, timeout_in_seconds=timeout)
        ),
        "wait_done": lambda instance_id, timeout=60: state_dict(
            client.wait_for_workflow_completion(instance_id, timeout_in_seconds=timeout)
        ),
        "raise_event": lambda instance_id, name, data=None: client.raise_workflow_event(
            instance_id, name, data=data
        ),
        "suspend": lambda instance_id: client.pause_workflow(instance_id),
        "resume": lambda instance_id: client.resume_workflow(instance_id),
        # `recursive` is passed on only when given, so that without it the SDK's default applies.
        "terminate": lambda instance_id, output=None, **recursive: client.terminate_workflow(
            instance_id, output=output, **recursive
        ),
        "purge": lambda instance_id, **recursive: client.purge_workflow(instance_id, **recursive),
        "history": history,
        "list_ids": lambda page_size=50: list(client.iter_workflow_instance_ids(page_size=page_size)),
        "list_page": lambda page_size, continuation_token=None: (
            lambda page: {"ids": list(page.instance_ids), "token": page.continuation_token}
        )(client.list_workflow_instance_ids(page_size=page_size, continuation_token=continuation_token)),
        "set_code_version": set_code_version,
        "rerun": lambda instance_id, event_id, new_instance_id=None, **kw: client.rerun_workflow_from_event(
            instance_id, event_id, new_instance_id=new_instance_id, **kw
        ),
        "counter": lambda key: catalog.COUNTERS.get(key, 0),
        "reset_counters": lambda: catalog.COUNTERS.clear(),
        "json": lambda value: json.dumps(value),
    }

    ops.update(dapr_durability_workflows.extra_ops(client))

    def shutdown() -> None:
        if not args.no_worker:
            runtime.shutdown()

    serve(ops, shutdown)


if __name__ == "__main__":
    main()
