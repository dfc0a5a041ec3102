"""Dapr's workflow SDK, pointed at the dapr-workflows engine instead of daprd."""

from __future__ import annotations

import os
from typing import Any

import dapr.ext.workflow as wf
from dapr.ext.workflow._durabletask.internal.grpc_interceptor import DefaultClientInterceptorImpl

# The variable and default of `dapr-workflows serve --engine-address`.
ENGINE_ADDRESS_VARIABLE = "DAPR_WORKFLOWS_ENGINE_ADDRESS"
DEFAULT_ENGINE_ADDRESS = "127.0.0.1:4100"
# The variable `dapr run` and Dapr's sidecar injector set to the app's ID, and the gRPC metadata
# key the engine reads it from (multi-app workflows: work of an app goes to that app's workers).
APP_ID_VARIABLE = "APP_ID"
APP_ID_METADATA = "dapr-app-id"


def engine_address(address: str | None = None) -> tuple[str, str]:
    """(host, port) of the engine: `address`, else $DAPR_WORKFLOWS_ENGINE_ADDRESS, else the default.

    `https://HOST:PORT` keeps its scheme in the host, which Dapr's SDK reads as TLS.
    """
    value = address or os.environ.get(ENGINE_ADDRESS_VARIABLE) or DEFAULT_ENGINE_ADDRESS
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"the engine address must be HOST:PORT, not {value!r}")
    return host.strip("[]"), port


def workflow_runtime(
    address: str | None = None, app_id: str | None = None, **options: Any
) -> wf.WorkflowRuntime:
    """A `WorkflowRuntime` whose worker takes its work from the dapr-workflows engine.

    Its worker tells the engine which app it serves: `app_id`, else $APP_ID (set by `dapr run` and
    the sidecar injector); then it gets the work of that app only (`call_activity(...,
    app_id=...)`, `call_child_workflow(..., app_id=...)`). Without either it says nothing.
    """
    host, port = engine_address(address)
    app = app_id if app_id is not None else os.environ.get(APP_ID_VARIABLE, "")
    if app:
        given = list(options.pop("interceptors", None) or ())
        options["interceptors"] = [*given, DefaultClientInterceptorImpl([(APP_ID_METADATA, app)])]
    return wf.WorkflowRuntime(host=host, port=port, **options)


def workflow_client(address: str | None = None, **options: Any) -> wf.DaprWorkflowClient:
    """A `DaprWorkflowClient` that manages instances on the dapr-workflows engine."""
    host, port = engine_address(address)
    return wf.DaprWorkflowClient(host=host, port=port, **options)
