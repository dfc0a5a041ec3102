"""The PostgreSQL store's pipeline mode: statements queued without waiting for their answers commit
or roll back with their transaction, COPY still works inside one, and an error in a queued statement
leaves psycopg's prepared statements usable (a real PostgreSQL server, started by the tests)."""

from __future__ import annotations

import asyncio

import pytest
from dapr_workflows_component.store import StoreTx
from dapr_workflows_component.store.postgres import PostgresStore
from dapr_workflows_component.workflows import Instance, RuntimeStatus


def instance(instance_id: str) -> Instance:
    return Instance(
        instance_id=instance_id,
        name="wf",
        dialect="dapr",
        status=RuntimeStatus.RUNNING,
        execution_id="e",
        created_at=1,
        updated_at=1,
    )


def test_queued_statements_and_a_copy_commit_together(postgres_url: str) -> None:
    async def main() -> None:
        store = PostgresStore(postgres_url)
        try:

            def write(t: StoreTx) -> None:
                t.put_instance(instance("queued"))  # queued in the pipeline
                t.append_history("queued", 0, [b"e0"])  # queued too
                t.put_instances([instance(f"copied-{i}") for i in range(3)])  # COPY: plain mode
                t.append_history("queued", 1, [b"e1"])

            await store.run(write)
            assert await store.read(lambda t: t.history("queued")) == [b"e0", b"e1"]
            found = await store.read(lambda t: [t.get_instance(f"copied-{i}") for i in range(3)])
            assert all(i is not None for i in found)
        finally:
            await store.close()

    asyncio.run(main())


def test_an_error_in_a_queued_statement_rolls_back_all_and_the_next_transactions_work(
    postgres_url: str,
) -> None:
    async def main() -> None:
        store = PostgresStore(postgres_url)
        try:
            await store.run(lambda t: t.put_instance(instance("x")))
            await store.run(lambda t: t.append_history("x", 0, [b"e0"]))

            def clash(t: StoreTx) -> None:
                t.add_inbox("x", b"lost", 0)  # waits for its id: sent before the clash
                t.append_history("x", 1, [b"e1"])  # queued
                t.append_history("x", 0, [b"again"])  # queued: a sequence number taken

            # More rounds than psycopg's threshold for preparing a statement (5), so that statements
            # get prepared in pipelines that fail.
            for _ in range(8):
                with pytest.raises(Exception):  # noqa: B017 (psycopg's UniqueViolation, after retries)
                    await store.run(clash)
                await store.run(lambda t: t.append_history("x", 1, [b"e1"]))
                assert await store.read(lambda t: t.history("x")) == [b"e0", b"e1"]
                assert await store.read(lambda t: t.inbox("x", 1 << 62)) == []
                await store.run(lambda t: t.clear_history("x"))
                await store.run(lambda t: t.append_history("x", 0, [b"e0"]))
        finally:
            await store.close()

    asyncio.run(main())
