"""The Workflow HTTP API of the Dapr docs (`/v1.0/workflows/{component}/...`), with its status codes.

A thin adapter, like the output binding: each route is one call on the engine, which applies the
rules of `workflows.py`; a refused call is answered with the HTTP status and the stable code of its
`WorkflowError` (`{"errorCode": ..., "message": ...}`). The server runs in the engine's event loop
(aiohttp), so a slow client holds only its own connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError

from .dashboard import dashboard_routes
from .engine import Engine
from .http_limits import ConnectionGuard, ConnectionLimits, GuardedSite, automatic_connection_cap
from .http_management import ManagementRoutes
from .http_openapi import ALIAS_VERSIONS, API_VERSION, OPENAPI_PATH, openapi_document
from .log_limits import RATE_LIMITED
from .management_rules import parse_rfc3339, query_flag
from .telemetry.http import add_routes as add_telemetry_routes
from .workflows import ErrorCode, StartRequest, WorkflowError, instance_json, json_payload, parse_bool

log = logging.getLogger("dapr_workflows.http")

VERSIONS = (API_VERSION, *ALIAS_VERSIONS)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpSettings:
    component_names: tuple[str, ...] = ("dapr",)
    max_body_bytes: int = 4 * 1024 * 1024
    # How long a start waits for a worker to begin the instance (as the output binding's
    # startTimeoutSeconds); 0 answers as soon as the instance is recorded.
    start_timeout_seconds: float = 10.0
    # Connections held at once (0: a quarter of the file descriptors, see http_limits.py), and how
    # long a request's headers and its body may take to arrive.
    max_connections: int = 0
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    # Run before every route, inside the error handling (security.py: the API token and policy).
    middlewares: tuple[Middleware, ...] = ()
    ssl_context: ssl.SSLContext | None = None


def parse_address(address: str) -> tuple[str | None, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every interface)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{address!r} is not HOST:PORT")
    host = host.removeprefix("[").removesuffix("]")
    return host or None, int(port_text)


def error_response(err: WorkflowError) -> web.Response:
    return web.json_response(
        {"errorCode": err.code.api_code, "message": err.message}, status=err.code.http_status
    )


# How long a request body may take to arrive, set on the application by HttpServer.
BODY_TIMEOUT = web.AppKey("body_timeout_seconds", float)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused without reading it all when it is larger than `limit` bytes, or
    when it does not arrive within the application's BODY_TIMEOUT."""
    timeout = request.config_dict.get(BODY_TIMEOUT)
    try:
        return await asyncio.wait_for(_read_body(request, limit), timeout)
    except asyncio.TimeoutError:
        raise WorkflowError(
            ErrorCode.REQUEST_TIMEOUT,
            f"the request body did not arrive within {timeout:g}s (--http-body-timeout-seconds)",
        ) from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise WorkflowError(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"the request body is {length} bytes; the limit is {limit} bytes (--http-max-body-bytes)",
        )
    body = bytearray()
    try:
        # Counted as it arrives (decompressed, when it has a Content-Encoding).
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise WorkflowError(
                    ErrorCode.RESOURCE_EXHAUSTED,
                    f"the request body is more than {limit} bytes; the limit is {limit} bytes "
                    "(--http-max-body-bytes)",
                )
    except RequestPayloadError as err:
        reason = getattr(err.__cause__, "message", "") or str(err)
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT, f"the request body cannot be read: {reason}"
        ) from None
    except ConnectionResetError:
        # The client went away before it had sent its body: nobody is left to answer.
        log.info("%s %s: the client closed the connection mid-request", request.method, request.path)
        raise web.HTTPBadRequest() from None
    return bytes(body)


class HttpApi:
    def __init__(
        self, engine: Engine, settings: HttpSettings, routes: Iterable[web.AbstractRouteDef] = ()
    ) -> None:
        self.engine = engine
        self.settings = settings
        # Served on the same listener: the trigger routes daprd delivers events to (triggers.py).
        self.routes = list(routes)
        self.document = openapi_document(settings.component_names, settings.max_body_bytes)

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, *self.settings.middlewares])
        base = "/{version:" + "|".join(v.replace(".", r"\.") for v in VERSIONS) + "}/workflows/{component}"
        instance = base + "/{instanceID}"
        app.router.add_get(OPENAPI_PATH, self._openapi)
        app.router.add_post(base + "/{workflowName}/start", self._start)
        app.router.add_get(instance, self._get)
        app.router.add_delete(instance, self._purge)
        app.router.add_post(instance + "/terminate", self._terminate)
        app.router.add_post(instance + "/raiseEvent/{eventName}", self._raise_event)
        app.router.add_post(instance + "/pause", self._pause)
        app.router.add_post(instance + "/resume", self._resume)
        app.router.add_post(instance + "/purge", self._purge)
        ManagementRoutes(self).register(app.router, base)
        app.router.add_routes(self.routes)
        add_telemetry_routes(app, self.engine)
        app.router.add_routes(dashboard_routes(self.settings.component_names[0]))
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except WorkflowError as err:
            log.info("%s %s failed: %s", request.method, request.path, err.message)
            return error_response(err)
        except web.HTTPException:
            raise  # the router's 404 for an unknown path and 405 for an unknown method
        except Exception:
            log.exception("%s %s failed inside the engine", request.method, request.path)
            return error_response(
                WorkflowError(ErrorCode.INTERNAL, "the request failed inside the engine; see its log")
            )

    # -- parts of a request

    def _component(self, request: web.Request) -> str:
        name = request.match_info["component"]
        if name not in self.settings.component_names:
            accepted = ", ".join(repr(n) for n in self.settings.component_names)
            raise WorkflowError(
                ErrorCode.COMPONENT_NOT_FOUND,
                f"no workflow component {name!r} here; this server accepts {accepted} "
                "(--http-component-names)",
            )
        return name

    def _instance_id(self, request: web.Request) -> str:
        self._component(request)
        return request.match_info["instanceID"]

    @staticmethod
    def _query(request: web.Request, key: str) -> str | None:
        """A query parameter given at most once; a different spelling of it is refused, not ignored."""
        for other in request.query:
            if other != key and other.lower() == key.lower():
                raise WorkflowError(
                    ErrorCode.INVALID_ARGUMENT, f"unknown query parameter {other!r}: did you mean {key!r}?"
                )
        values = request.query.getall(key, [])
        if len(values) > 1:
            raise WorkflowError(
                ErrorCode.INVALID_ARGUMENT, f"the query parameter {key!r} is given {len(values)} times"
            )
        return values[0] if values else None

    def _recursive(self, request: web.Request) -> bool:
        value = self._query(request, "recursive")
        # A boolean query parameter of the OpenAPI document: spelt true or false, nothing else.
        if value is not None and value not in ("true", "false"):
            raise WorkflowError(ErrorCode.INVALID_ARGUMENT, f"recursive must be true or false, not {value!r}")
        return parse_bool("recursive", value, True)

    async def _body(self, request: web.Request) -> bytes:
        return await read_body(request, self.settings.max_body_bytes)

    async def _payload(self, request: web.Request, what: str) -> str | None:
        return json_payload(what, await self._body(request), self.engine.settings.max_payload_bytes)

    async def _wait_started(self, instance_id: str) -> None:
        """The start-wait of the output binding (an HTTP request has no deadline); a shutdown ends it."""
        await self.engine.wait_until_started(instance_id, self.settings.start_timeout_seconds)

    # -- routes

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)

    async def _start(self, request: web.Request) -> web.Response:
        component = self._component(request)
        instance_id = self._query(request, "instanceID") or uuid.uuid4().hex
        start_time = self._query(request, "startTime")  # ours: a scheduled start (RFC 3339)
        await self.engine.start_workflow(
            StartRequest(
                name=request.match_info["workflowName"],
                instance_id=instance_id,
                input=await self._payload(request, "workflow input"),
                scheduled_start_at=parse_rfc3339("startTime", start_time) if start_time is not None else None,
            )
        )
        if start_time is None:
            await self._wait_started(instance_id)
        version = request.match_info["version"]
        location = f"/{version}/workflows/{quote(component, safe='')}/{quote(instance_id, safe='')}"
        return web.json_response({"instanceID": instance_id}, status=202, headers={"Location": location})

    async def _get(self, request: web.Request) -> web.Response:
        inst = await self.engine.require_instance(self._instance_id(request))
        return web.json_response(instance_json(inst))

    async def _terminate(self, request: web.Request) -> web.Response:
        instance_id = self._instance_id(request)
        recursive = self._recursive(request)
        output = await self._payload(request, "terminate output")
        await self.engine.terminate(instance_id, output, recursive)
        return _accepted()

    async def _raise_event(self, request: web.Request) -> web.Response:
        instance_id = self._instance_id(request)
        data = await self._payload(request, "event data")
        await self.engine.raise_event(instance_id, request.match_info["eventName"], data)
        return _accepted()

    async def _pause(self, request: web.Request) -> web.Response:
        await self.engine.suspend(self._instance_id(request))
        return _accepted()

    async def _resume(self, request: web.Request) -> web.Response:
        await self.engine.resume(self._instance_id(request))
        return _accepted()

    async def _purge(self, request: web.Request) -> web.Response:
        instance_id = self._instance_id(request)
        force = query_flag("force", self._query(request, "force"))  # ours, as Dapr's gRPC force
        await self.engine.purge(instance_id, self._recursive(request), force=force)
        return _accepted()


def _accepted() -> web.Response:
    return web.Response(status=202)


class _MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (answered with 400) as an error with a traceback.

    That is the client's fault, not the server's: one info line says so, so that a client sending
    garbage cannot fill the log with tracebacks.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError):  # the body, read after the handler to drain it
            exc = exc.__cause__
        if isinstance(exc, HttpProcessingError):
            reason = (exc.message.strip().splitlines() or [type(exc).__name__])[0]
            log.info("refused a malformed HTTP request: %s", reason, extra=RATE_LIMITED)
            return False
        return True


_MALFORMED_REQUESTS = _MalformedRequests()


class HttpServer:
    """The HTTP API on one address; `stop` lets requests in flight finish within `grace` seconds."""

    def __init__(
        self,
        engine: Engine,
        settings: HttpSettings,
        address: str,
        grace: float,
        routes: Iterable[web.AbstractRouteDef] = (),
    ) -> None:
        logging.getLogger("aiohttp.server").addFilter(_MALFORMED_REQUESTS)  # added once, however often
        self.api = HttpApi(engine, settings, routes)
        self.host, self.port = parse_address(address)
        self.guard = ConnectionGuard(
            ConnectionLimits(
                settings.max_connections or automatic_connection_cap(), settings.header_timeout_seconds
            )
        )
        app = self.api.application()
        app.middlewares.insert(0, self.guard.middleware)
        app[BODY_TIMEOUT] = settings.body_timeout_seconds
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=grace)

    async def start(self) -> None:
        await self._runner.setup()
        site = GuardedSite(
            self._runner, self.host, self.port, self.guard, ssl_context=self.api.settings.ssl_context
        )
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        # The port the system chose, when the address asked for port 0.
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()


__all__ = ["HttpApi", "HttpServer", "HttpSettings", "error_response", "parse_address", "read_body"]
