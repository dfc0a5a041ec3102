"""Bounds of the HTTP listener: how many connections it holds and how long a request may take to come.

Every open connection holds a file descriptor. Without a cap, idle connections take all of them and
the process can accept nothing else, the gRPC ports included; so connections beyond the cap are
answered with 503 and closed at once, and the refusals are logged once per interval. A connection
must send a request's headers within the header timeout after it opened or after its previous
response (idle keep-alive connections are closed then too); a request body must arrive within the
body timeout (`read_body`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from .workflows import ErrorCode

log = logging.getLogger("dapr_workflows.http")

# The automatic connection cap: a quarter of the file descriptors the process may open (the rest
# stay for the gRPC ports, the store and the component socket), at most this many.
MAX_AUTO_CONNECTIONS = 1024
REFUSAL_LOG_SECONDS = 10.0
_REFUSAL_BODY = json.dumps(
    {
        "errorCode": ErrorCode.UNAVAILABLE.api_code,
        "message": "too many open connections; try again in a moment",
    }
).encode()
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def automatic_connection_cap() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_AUTO_CONNECTIONS
    return max(4, min(MAX_AUTO_CONNECTIONS, soft // 4))


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout_seconds: float


class _Connection(asyncio.Protocol):
    """Stands between the event loop and aiohttp's handler of one connection."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.factory = factory
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's implement asyncio.Transport without subclassing it).
        self.transport = transport = cast(asyncio.Transport, transport)
        if not self.guard.admit(self):
            transport.write(_REFUSAL)
            transport.close()
            return
        self.inner = self.factory()
        self.inner.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        self.disarm()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.guard.limits.header_timeout_seconds, self._timed_out)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self) -> None:
        self.timer = None
        if self.busy == 0 and self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self.inner is not None:
            self.guard.release(self)
            self.inner.connection_lost(exc)


class ConnectionGuard:
    """Counts the listener's connections, refuses those over the cap, times out idle ones."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._open: dict[Any, _Connection] = {}  # transport -> its connection
        self._refused = 0
        self._last_report = 0.0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Connection(self, factory)

    def admit(self, conn: _Connection) -> bool:
        if len(self._open) >= self.limits.max_connections:
            self._refused += 1
            now = time.monotonic()
            if now - self._last_report >= REFUSAL_LOG_SECONDS:
                log.warning(
                    "refused %d HTTP connections: %d are open, the limit is %d (--http-max-connections)",
                    self._refused,
                    len(self._open),
                    self.limits.max_connections,
                )
                self._refused = 0
                self._last_report = now
            return False
        self._open[conn.transport] = conn
        return True

    def release(self, conn: _Connection) -> None:
        self._open.pop(conn.transport, None)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request in progress holds its connection open; its response starts the idle clock."""
        conn = self._open.get(request.transport)
        if conn is None:
            return await handler(request)
        conn.busy += 1
        conn.disarm()
        try:
            response = await handler(request)
            if response.status == ErrorCode.REQUEST_TIMEOUT.http_status:
                response.force_close()  # the rest of a slow body is not waited for
            return response
        finally:
            conn.busy -= 1
            if conn.busy == 0 and conn.transport is not None and not conn.transport.is_closing():
                conn.arm()


_ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Out of file descriptors, asyncio pauses accepting for a second and logs a traceback each
    time; this makes it one line per interval instead, and leaves other errors as they were."""
    previous = loop.get_exception_handler()
    last_logged = [0.0]

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(_ACCEPT_OUT_OF_RESOURCES):
            now = time.monotonic()
            if now - last_logged[0] >= REFUSAL_LOG_SECONDS:
                last_logged[0] = now
                log.warning(
                    "out of file descriptors (%s): new connections wait until others close",
                    context.get("exception"),
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, with every connection going through a `ConnectionGuard`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        guard: ConnectionGuard,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        quiet_accept_errors(loop)
        self._server = await loop.create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
        )


__all__ = ["ConnectionGuard", "ConnectionLimits", "GuardedSite", "automatic_connection_cap"]
