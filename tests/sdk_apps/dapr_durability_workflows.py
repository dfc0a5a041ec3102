"""Workflows of the durability tests, written with Dapr's workflow SDK."""

from __future__ import annotations

import dapr.ext.workflow as wf

from tests.sdk_apps.dapr_workflows import count  # noqa: F401 - shared activity counters


def register(runtime: wf.WorkflowRuntime, client: wf.DaprWorkflowClient) -> None:
    pass
