"""The retention loop (engine/retention.py) in an in-process engine: a failed run is logged and
tried again, whatever the store raised."""

from __future__ import annotations

import asyncio
import sqlite3

from dapr_workflows_component.engine.retention import Retention
from dapr_workflows_component.management_rules import parse_retention
from dapr_workflows_component.workflows import InstanceQuery

from tests.unit.engine_parts import engine_on, eventually, run


def test_a_run_that_fails_with_a_store_error_is_tried_again() -> None:
    async def body() -> None:
        engine = await engine_on()
        real_purge = engine.purge_batch

        async def failing_purge(query: InstanceQuery) -> list[str]:
            engine.purge_batch = real_purge  # type: ignore[method-assign]
            raise sqlite3.OperationalError("database is locked")

        engine.purge_batch = failing_purge  # type: ignore[method-assign]
        retention = Retention(engine, parse_retention("completed=1s"))
        task = asyncio.create_task(retention.run())

        async def ran_again() -> bool:
            assert not task.done(), task.exception()
            return retention.stats.failures == 1 and retention.stats.runs >= 1

        await eventually(ran_again)
        task.cancel()
        await engine.stop()

    run(body())
