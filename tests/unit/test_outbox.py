"""Lifecycle events (engine/outbox.py): recorded with the change they report, delivered to a reader
until it acknowledges them, then deleted from the outbox."""

from __future__ import annotations

import asyncio
import json

from dapr_workflows_component.engine import Delivery, LifecycleDispatcher
from dapr_workflows_component.store import StoreUnavailable

from tests.unit.engine_parts import complete, engine_on, response, run, start, take


async def _next(stream_outgoing: asyncio.Queue[Delivery | None]) -> Delivery:
    delivery = await asyncio.wait_for(stream_outgoing.get(), 5.0)
    assert delivery is not None
    return delivery


def test_events_are_delivered_in_order_and_deleted_once_acknowledged() -> None:
    async def body() -> None:
        engine = await engine_on()
        dispatcher = LifecycleDispatcher(engine)
        dispatcher.start()
        stream = dispatcher.attach("in")
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), complete(1, '"x"')))
        started, completed = await _next(stream.outgoing), await _next(stream.outgoing)
        assert [(d.event_type, d.instance_id) for d in (started, completed)] == [
            ("started", "a"),
            ("completed", "a"),
        ]
        assert json.loads(completed.payload)["instanceID"] == "a"
        dispatcher.answered(stream, started.message_id, None)
        dispatcher.answered(stream, completed.message_id, "")  # an empty error is a success
        for _ in range(100):
            if not await engine.lifecycle_events(0):
                break
            await asyncio.sleep(0.01)
        assert await engine.lifecycle_events(0) == []
        await dispatcher.stop()
        await engine.stop()

    run(body())


def test_an_event_the_app_refused_stays_in_the_outbox_and_comes_again() -> None:
    async def body() -> None:
        engine = await engine_on()
        dispatcher = LifecycleDispatcher(engine, max_backoff=0.05)
        dispatcher.start()
        stream = dispatcher.attach("in")
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker)))
        first = await _next(stream.outgoing)
        dispatcher.answered(stream, first.message_id, "the app answered 500")
        again = await _next(stream.outgoing)
        assert again.payload == first.payload and again.message_id != first.message_id
        assert len(await engine.lifecycle_events(0)) == 1  # still there until acknowledged
        dispatcher.detach(stream)  # gone before answering: delivered to the next reader
        other = dispatcher.attach("other")
        assert (await _next(other.outgoing)).payload == first.payload
        await dispatcher.stop()
        await engine.stop()

    run(body())


def test_no_lifecycle_events_are_recorded_unless_asked_for() -> None:
    async def body() -> None:
        engine = await engine_on(lifecycle_events=False)
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), complete(1)))
        assert await engine.lifecycle_events(0) == []
        assert not engine.outbox_signal.is_set()
        await engine.stop()

    run(body())


def test_a_failed_read_of_the_outbox_does_not_stop_the_deliveries() -> None:
    async def body() -> None:
        engine = await engine_on()
        worker = engine.connect_worker("dapr")
        await start(engine, "a")
        await engine.complete_orchestration(response(await take(engine, worker), complete(1)))
        real_read = engine.lifecycle_events

        async def failing_read(after_id: int, limit: int = 100) -> list[tuple[int, str]]:
            engine.lifecycle_events = real_read  # type: ignore[method-assign]
            raise StoreUnavailable("the store is down")

        engine.lifecycle_events = failing_read  # type: ignore[method-assign]
        dispatcher = LifecycleDispatcher(engine)
        dispatcher.start()
        stream = dispatcher.attach("in")
        # Read again after the failure, with no new event to signal it.
        delivered = [await _next(stream.outgoing), await _next(stream.outgoing)]
        assert [(d.event_type, d.instance_id) for d in delivered] == [("started", "a"), ("completed", "a")]
        await dispatcher.stop()
        await engine.stop()

    run(body())
