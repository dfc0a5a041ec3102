"""`/metrics`, `/healthz` and `/readyz` on the HTTP API's address (plain GET routes).

- `/healthz`: the process lives and its event loop answers (200).
- `/readyz`: 200 when the store answers, every listener is up and the engine is not shutting down;
  503 with one sentence saying why otherwise (for Kubernetes' readiness probe).
- `/metrics`: the Prometheus text format (telemetry/metrics.py), unless turned off (--metrics).

The HTTP API's app construction adds them with `add_routes(app, engine)`; the routes need no
request body and no component name, so an API-token check can leave them out by path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..engine import Engine
from .metrics import CONTENT_TYPE
from .observer import CALLER_TRACE_PARENT
from .recorder import Telemetry

log = logging.getLogger("dapr_workflows.telemetry")

METRICS_PATH = "/metrics"
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
PATHS = (METRICS_PATH, HEALTHZ_PATH, READYZ_PATH)
# How long /readyz waits for the store before it answers that the store does not answer.
STORE_CHECK_SECONDS = 2.0


class _Health:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._check: asyncio.Task[None] | None = None

    @property
    def telemetry(self) -> Telemetry | None:
        observer = self.engine.observer
        return observer if isinstance(observer, Telemetry) else None

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        reason = await self._not_ready()
        if reason is not None:
            return web.Response(status=503, text=reason + "\n")
        return web.Response(text="ready\n")

    async def _not_ready(self) -> str | None:
        if self.engine.closing.is_set():
            return "The engine is shutting down."
        telemetry = self.telemetry
        if telemetry is not None and not telemetry.listening:
            return "The engine's listeners are not all up yet."
        # One store check at a time, however many probes ask: a slow store holds one thread only.
        if self._check is None or self._check.done():
            self._check = asyncio.ensure_future(self._ask_store())
        try:
            await asyncio.wait_for(asyncio.shield(self._check), timeout=STORE_CHECK_SECONDS)
        except asyncio.TimeoutError:
            return f"The store does not answer within {STORE_CHECK_SECONDS:g} seconds."
        except Exception as err:
            log.debug("readiness: the store failed a check: %s", err)
            return "The store is unavailable."
        return None

    async def _ask_store(self) -> None:
        await self.engine.check_store()

    async def metrics(self, request: web.Request) -> web.Response:
        telemetry = self.telemetry
        if telemetry is None:
            raise web.HTTPNotFound(text="metrics are not collected by this engine\n")
        if self.engine.settings.lifecycle_events:
            # Counted in the store when scraped: other engines sharing it add and take events too.
            try:
                backlog = await asyncio.wait_for(self.engine.lifecycle_backlog(), STORE_CHECK_SECONDS)
                telemetry.outbox_backlog(backlog)
            except Exception as err:  # the store is down: the last count stays
                log.debug("metrics: counting the outbox failed: %s", err)
        return web.Response(body=telemetry.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


@web.middleware
async def caller_trace_context(request: web.Request, handler: Any) -> web.StreamResponse:
    """Hands the caller's `traceparent` header to the engine's spans of the call."""
    value = request.headers.get("traceparent")
    if value is None:
        return await handler(request)  # type: ignore[no-any-return]
    token = CALLER_TRACE_PARENT.set(value)
    try:
        return await handler(request)  # type: ignore[no-any-return]
    finally:
        CALLER_TRACE_PARENT.reset(token)


def add_routes(app: web.Application, engine: Engine) -> None:
    """Adds /healthz, /readyz and (when the engine collects them) /metrics to `app`."""
    health = _Health(engine)
    app.middlewares.append(caller_trace_context)
    app.router.add_get(HEALTHZ_PATH, health.healthz)
    app.router.add_get(READYZ_PATH, health.readyz)
    telemetry = health.telemetry
    if telemetry is None or telemetry.serve_metrics:
        app.router.add_get(METRICS_PATH, health.metrics)


__all__ = ["HEALTHZ_PATH", "METRICS_PATH", "PATHS", "READYZ_PATH", "add_routes"]
