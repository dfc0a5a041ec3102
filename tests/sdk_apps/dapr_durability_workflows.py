"""Workflows of the durability tests, written with Dapr's workflow SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dapr.ext.workflow as wf

from tests.sdk_apps.dapr_workflows import count  # noqa: F401 - shared activity counters


def register(runtime: wf.WorkflowRuntime, client: wf.DaprWorkflowClient) -> None:
    pass


def extra_ops(client: Any) -> dict[str, Callable[..., Any]]:
    """Host operations the durability tests need beyond the common ones."""
    return {}
