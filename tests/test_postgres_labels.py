"""Labels of work another engine created, on a real PostgreSQL server shared by two in-process
engines: a worker that takes only its app's work has a turn's label read before any claim (a claim
given back would still count under the concurrency limits in the store), and an activity whose label
read fails after its claim is given back at once, for the other engine's worker to take."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from dapr_workflows_component.engine import Engine, labels
from dapr_workflows_component.engine.concurrency import ConcurrencyLimits
from dapr_workflows_component.engine.dispatch import ActivityWork, InstanceWork, WorkState
from dapr_workflows_component.engine.eligibility import ORCHESTRATION, WorkLabel
from dapr_workflows_component.store import StoreTx
from dapr_workflows_component.workflows import StartRequest

from tests.test_postgres_store import open_pg, sql
from tests.unit.engine_parts import complete, eventually, next_item, response, schedule, settings, take

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def two_engines(url: str, **overrides: Any) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engines on one database, as two replicas; store leases that outlive any test."""
    opened = []
    try:
        for _ in range(2):
            engine = Engine(open_pg(url), settings(store_lease_seconds=60, poll_seconds=0.2, **overrides))
            await engine.start()
            opened.append(engine)
        yield opened[0], opened[1]
    finally:
        for engine in opened:
            await engine.stop()
            await engine.store.close()


def claims_of(engine: Engine) -> list[str]:
    """The instances the engine claims in the store from now on, as it claims them."""
    claimed: list[str] = []
    claim = engine.leasing.claim_instance

    def recording(tx: StoreTx, instance_id: str, token: str) -> bool:
        claimed.append(instance_id)
        return claim(tx, instance_id, token)

    engine.leasing.claim_instance = recording  # type: ignore[method-assign,assignment]
    return claimed


def soon(check: Callable[[], bool], in_thread: bool = False) -> Callable[[], Awaitable[bool]]:
    """`check` for `eventually`; in a thread when it blocks (a statement of its own)."""

    async def checked() -> bool:
        return await asyncio.to_thread(check) if in_thread else check()

    return checked


def waits_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waits, queued" in r.getMessage()]


def test_a_turn_for_another_app_is_read_before_a_claim_and_left_to_that_apps_worker(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim would count under the global cap, find it full, and put engine A first in line for
    the slot app b's worker on engine B is waiting for (concurrency.py); A reads instead."""

    async def body() -> None:
        caplog.set_level(logging.INFO, logger="dapr_workflows.engine")
        limits = ConcurrencyLimits(workflows=1)
        async with two_engines(postgres_url, concurrency=limits) as (a, b):
            on_b = b.connect_worker("dapr")
            b.identify_worker(on_b, "app-b")
            await b.start_workflow(StartRequest(name="quote_wf", instance_id="x", app_id="app-b"))
            holding = await take(b, on_b)  # the one slot
            claimed_by_a = claims_of(a)
            on_a = a.connect_worker("dapr")
            a.identify_worker(on_a, "app-a")
            # Engine B starts another workflow of app b; engine A hears of it without its label.
            await b.start_workflow(StartRequest(name="quote_wf", instance_id="i", app_id="app-b"))
            key = InstanceWork("i")
            await eventually(soon(lambda: a.dispatch.state(key) is not None))
            # A's worker (app a) is offered nothing: A read what the turn is, and claimed nothing.
            assert await next_item(a, on_a) is None
            assert a.dispatch.label_of(key) == WorkLabel(ORCHESTRATION, "quote_wf", None, "app-b")
            assert a.dispatch.state(key) == WorkState.QUEUED  # waiting for a worker of app b
            assert claimed_by_a == []
            assert waits_logged(caplog) == []
            # When the slot frees, app b's worker on engine B gets the turn at once.
            await b.complete_orchestration(response(holding, complete(1, "done")))
            assert (await take(b, on_b)).workflowRequest.instanceId == "i"
            assert waits_logged(caplog) == []

    asyncio.run(body())


def test_a_turn_a_worker_may_take_is_read_then_claimed_and_leased(postgres_url: str) -> None:
    async def body() -> None:
        async with two_engines(postgres_url) as (a, b):
            claimed_by_a = claims_of(a)
            on_a = a.connect_worker("dapr")
            a.identify_worker(on_a, "app-a")
            await b.start_workflow(StartRequest(name="quote_wf", instance_id="i", app_id="app-a"))
            await eventually(soon(lambda: a.dispatch.state(InstanceWork("i")) is not None))
            assert (await take(a, on_a)).workflowRequest.instanceId == "i"
            assert claimed_by_a == ["i"]
            assert a.dispatch.label_of(InstanceWork("i")) == WorkLabel(
                ORCHESTRATION, "quote_wf", None, "app-a"
            )

    asyncio.run(body())


def test_an_activity_whose_label_read_fails_after_its_claim_is_given_back_at_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body() -> None:
        async with two_engines(postgres_url) as (a, b):
            on_b = b.connect_worker("dapr")
            await b.start_workflow(StartRequest(name="wf", instance_id="i"))
            await b.complete_orchestration(response(await take(b, on_b), schedule(1, "quote")))
            [(activity_id,)] = await asyncio.to_thread(sql, postgres_url, "SELECT id FROM activities")
            key = ActivityWork(activity_id)
            # Engine A hears of the activity, which it did not create: it learns its label after
            # the claim (its worker takes any work), and that read fails.
            await eventually(soon(lambda: a.dispatch.state(key) == WorkState.QUEUED))

            def failing(tx: StoreTx, row: object) -> WorkLabel:
                raise RuntimeError("the store went away")

            monkeypatch.setattr(labels, "activity_label", failing)
            on_a = a.connect_worker("dapr")
            with pytest.raises(RuntimeError, match="the store went away"):
                while True:  # it may first be offered the instance, which has nothing to run
                    assert await next_item(a, on_a) is None

            def lease_token() -> object:
                return sql(postgres_url, "SELECT lease_token FROM activities WHERE id = %s", (activity_id,))[
                    0
                ][0]

            # Given back now, not when its 60 s store lease expires: B's worker gets it.
            await eventually(soon(lambda: lease_token() is None, in_thread=True))
            assert a.dispatch.state(key) is None and a.dispatch.limits.running("activity") == 0
            item = await take(b, on_b)
            assert item.activityRequest.name == "quote"

    asyncio.run(body())


def test_a_turn_claim_committed_before_its_read_failed_is_given_back_at_once(postgres_url: str) -> None:
    """A claim commits in the round trip that makes it; a read that needs a second round trip runs
    the transaction again whole, and when that attempt fails the first one's claim must not stay
    (nothing would take the instance until its store lease ran out)."""

    async def body() -> None:
        async with two_engines(postgres_url) as (a, b):
            await b.start_workflow(StartRequest(name="wf", instance_id="i"))

            def read_then_fail(tx: StoreTx, token: str) -> None:
                tx.get_instance("i")  # a second fetch: the claim's round trip has committed
                raise RuntimeError("the store went away")

            with pytest.raises(RuntimeError, match="the store went away"):
                await a.dispatch.lease_instance(InstanceWork("i"), read_then_fail, may_refuse=False)

            def lease_token() -> object:
                return sql(postgres_url, "SELECT lease_token FROM instances WHERE instance_id = 'i'")[0][0]

            # Given back now, not when its 60 s store lease expires: B's worker gets the turn.
            await eventually(soon(lambda: lease_token() is None, in_thread=True))
            on_b = b.connect_worker("dapr")
            item = await take(b, on_b)
            assert item.workflowRequest.instanceId == "i"

    asyncio.run(body())
