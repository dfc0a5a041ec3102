"""Workflows of the durability tests, written with Microsoft's durabletask SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durabletask import client as dt_client
from durabletask import worker as dt_worker

from tests.sdk_apps.durabletask_workflows import count  # noqa: F401 - shared activity counters


def register(worker: dt_worker.TaskHubGrpcWorker, client: dt_client.TaskHubGrpcClient) -> None:
    pass


def extra_ops(client: Any) -> dict[str, Callable[..., Any]]:
    """Host operations the durability tests need beyond the common ones."""
    return {}
