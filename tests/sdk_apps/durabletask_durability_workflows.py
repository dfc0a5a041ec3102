"""Workflows of the durability tests, written with Microsoft's durabletask SDK."""

from __future__ import annotations

from durabletask import client as dt_client
from durabletask import worker as dt_worker

from tests.sdk_apps.durabletask_workflows import count  # noqa: F401 - shared activity counters


def register(worker: dt_worker.TaskHubGrpcWorker, client: dt_client.TaskHubGrpcClient) -> None:
    pass
