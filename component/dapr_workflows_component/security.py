"""Who may call the TCP listeners: the API token, TLS, client certificates and the access policy.

Dapr's convention: when a token is set (`serve --api-token`, else `DAPR_API_TOKEN`), every call
carries it as `dapr-api-token`, in gRPC metadata or as an HTTP header. The gRPC interceptor and
the HTTP middleware here are thin adapters: they find the caller's token and certificate and the
call's row of the table in `access_policy.py`, and `Guard` decides. Tokens are compared in
constant time and never logged.

Not covered, on purpose: the component socket, daprd's way in, which sends no token of ours and is
protected by the socket file's mode; `/healthz`, `/readyz`, the OpenAPI document and the
dashboard's page and scripts, which hold no data, for probes, tools and browsers that carry no
secrets; and the trigger routes daprd delivers events
to, which check daprd's `APP_API_TOKEN` instead, as every Dapr app does.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
from aiohttp import web
from cryptography import x509
from google.protobuf.message import DecodeError

from .access_policy import (
    DEFAULT_TOKEN_NAME,
    GRPC_OPERATIONS,
    HTTP_OPERATIONS,
    UNLISTED,
    AccessPolicy,
    Call,
    Identity,
    Target,
)
from .engine import Engine
from .http_api import HttpSettings
from .http_openapi import OPENAPI_PATH
from .protos import dapr_dialect_pb2 as pb
from .telemetry.http import HEALTHZ_PATH, METRICS_PATH, READYZ_PATH
from .workflows import ErrorCode, WorkflowError

log = logging.getLogger("dapr_workflows.security")

TOKEN_HEADER = "dapr-api-token"
DAPR_TOKEN_VARIABLE = "DAPR_API_TOKEN"
APP_TOKEN_VARIABLE = "APP_API_TOKEN"
# Answered without a token: whether the engine is up, the description of the API, and the
# dashboard's page and scripts (a browser cannot send a header when it opens a page; the page then
# sends the token with every request for data).
OPEN_PATHS = frozenset({HEALTHZ_PATH, READYZ_PATH, OPENAPI_PATH, "/dashboard"})
OPEN_PREFIX = "/dashboard/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SecurityError(ValueError):
    """A security setting cannot be used; the message says which and why."""


# ------------------------------------------------------------------------------ TLS


@dataclass(frozen=True)
class Tls:
    """The server certificate and key, and the CA whose client certificates are required (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None
    cert: bytes
    key: bytes
    client_ca: bytes | None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=self.mutual
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.load_verify_locations(self.client_ca_file)
            # Optional at the handshake, so that probes and daprd (which has no client certificate
            # of ours) reach their routes; every other route requires one (Guard).
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as err:
        raise SecurityError(f"--{flag}: cannot read {path!r}: {err.strerror}") from None


def load_tls(cert_file: str, key_file: str, client_ca_file: str) -> Tls | None:
    if not cert_file and not key_file:
        if client_ca_file:
            raise SecurityError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
        return None
    if not cert_file or not key_file:
        raise SecurityError("TLS needs both --tls-cert-file and --tls-key-file")
    tls = Tls(
        cert_file,
        key_file,
        client_ca_file or None,
        _read(cert_file, "tls-cert-file"),
        _read(key_file, "tls-key-file"),
        _read(client_ca_file, "tls-client-ca-file") if client_ca_file else None,
    )
    try:
        tls.ssl_context()  # a key that does not fit the certificate, a CA file that is none
    except ssl.SSLError as err:
        raise SecurityError(f"the TLS files cannot be used: {err.reason or err}") from None
    return tls


@functools.lru_cache(maxsize=256)  # the same few callers call again and again
def certificate_subject(cert: bytes, pem: bool = False) -> str:
    """The subject in RFC 4514 form (`CN=orders,O=Example`), as policy files name callers."""
    parsed = x509.load_pem_x509_certificate(cert) if pem else x509.load_der_x509_certificate(cert)
    return parsed.subject.rfc4514_string()


# ------------------------------------------------------------------------------ decisions


def _denied(message: str) -> WorkflowError:
    return WorkflowError(ErrorCode.UNAUTHENTICATED, message)


class Tokens:
    """The accepted tokens, each with the name access-policy rules know it by."""

    def __init__(self, named: Iterable[tuple[str, str]]) -> None:
        self._tokens = [(name, value.encode()) for name, value in named if value]

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def identify(self, presented: str | None) -> str | None:
        """The name of the presented token; None when no token is required."""
        if not self._tokens:
            return None
        if not presented:
            raise _denied(f"the call carries no {TOKEN_HEADER}; this engine requires its API token")
        given = presented.encode()
        found = None
        for name, value in self._tokens:  # each compared in full, in constant time
            if hmac.compare_digest(given, value) and found is None:
                found = name
        if found is None:
            raise _denied(f"the {TOKEN_HEADER} of the call is not this engine's API token")
        return found


@dataclass(frozen=True)
class Guard:
    """Checks one call: token, client certificate, then the access policy."""

    tokens: Tokens
    policy: AccessPolicy | None
    mutual_tls: bool
    engine: Engine

    async def admit(
        self,
        call: Call,
        token: str | None,
        subject: str | None,
        instance_id: str | None = None,
        workflow: str | None = None,
    ) -> None:
        who = Identity(self.tokens.identify(token), subject)
        if self.mutual_tls and subject is None:
            raise _denied("the call carries no client certificate; this engine requires one")
        if self.policy is None or call.operation is None:
            return
        try:
            self.policy.decide(who, call.operation, None)
            return
        except WorkflowError:
            if call.target is Target.NONE:
                raise
        # A rule for some workflows only: which workflow the call is about decides.
        if call.target is Target.INSTANCE and instance_id:
            inst = await self.engine.get_instance(instance_id)
            workflow = inst.name if inst is not None else None
        self.policy.decide(who, call.operation, workflow)


# ------------------------------------------------------------------------------ gRPC


def _metadata_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == TOKEN_HEADER:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def _grpc_subject(context: grpc.aio.ServicerContext) -> str | None:
    pems = context.auth_context().get("x509_pem_cert")
    return certificate_subject(pems[0], pem=True) if pems else None


def _grpc_target(call: Call, raw: Any) -> tuple[str | None, str | None]:
    """(instance ID, workflow name) of a request: field 1 of every instance call of both dialects."""
    if call.target is Target.NONE or not isinstance(raw, bytes):
        return None, None
    try:
        if call.target is Target.NEW:
            req = pb.CreateInstanceRequest.FromString(raw)
            return req.instanceId, req.name
        return pb.GetInstanceHistoryRequest.FromString(raw).instanceId, None
    except DecodeError:
        return None, None  # the handler answers INVALID_ARGUMENT, if the policy lets it


class GrpcGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every method handler of a dialect server with the guard's check.

    Each method's wrapped handler is made once: the servers' handlers never change.
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def _check(self, method: str, call: Call, raw: Any, context: grpc.aio.ServicerContext) -> None:
        instance_id, workflow = _grpc_target(call, raw)
        try:
            await self.guard.admit(
                call,
                _metadata_token(context.invocation_metadata()),
                _grpc_subject(context) if self.guard.mutual_tls else None,
                instance_id,
                workflow,
            )
            return
        except WorkflowError as err:
            log.info("refused %s: %s", method, err.message)
            error = err
        except Exception:
            log.exception("%s: the access check failed", method)
            error = WorkflowError(ErrorCode.INTERNAL, f"{method} failed inside the engine; see its log")
        await context.abort(error.code.grpc_status, error.message)

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        call = GRPC_OPERATIONS.get(method, UNLISTED)
        inner_unary = handler.unary_unary
        inner_stream = handler.unary_stream
        if inner_unary is not None:

            async def unary(raw: Any, context: grpc.aio.ServicerContext) -> Any:
                await self._check(method, call, raw, context)
                return await inner_unary(raw, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if inner_stream is not None:

            async def stream(raw: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await self._check(method, call, raw, context)
                async for item in inner_stream(raw, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler  # no client-streaming methods are served

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        path = str(details.method)
        wrapped = self._wrapped.get(path)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None
            wrapped = self._wrapped[path] = self._wrap(path.rpartition("/")[2], handler)
        return wrapped


# ------------------------------------------------------------------------------ HTTP


def _http_subject(request: web.Request) -> str | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return certificate_subject(der) if der else None


def _open(request: web.Request, metrics_without_token: bool) -> bool:
    """Whether the route that serves the request needs no token (by its template, not the path
    the client wrote, so that no spelling of a path reaches another route without one)."""
    resource = request.match_info.route.resource
    if request.method not in ("GET", "HEAD") or resource is None:
        return False
    path = resource.canonical
    return (
        path in OPEN_PATHS
        or path.startswith(OPEN_PREFIX)
        or (path == METRICS_PATH and metrics_without_token)
    )


def http_guard(
    guard: Guard,
    app_routes: Iterable[web.AbstractRouteDef],
    app_token: str | None,
    metrics_without_token: bool,
) -> Any:
    """The middleware; `app_routes` are the trigger routes daprd calls, checked with `app_token`."""
    app_handlers = {getattr(r, "handler", None) for r in app_routes}
    app_secret = app_token.encode() if app_token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        if route.handler in app_handlers and request.match_info.http_exception is None:
            if app_secret is not None:
                given = request.headers.get(TOKEN_HEADER, "").encode()
                if not hmac.compare_digest(given, app_secret):
                    raise _denied(f"the {TOKEN_HEADER} of the call is not daprd's {APP_TOKEN_VARIABLE}")
            return await handler(request)
        if _open(request, metrics_without_token):
            return await handler(request)
        token = request.headers.get(TOKEN_HEADER)
        subject = _http_subject(request)
        if request.match_info.http_exception is not None:  # 404 and 405: the token still first
            await guard.admit(Call(None), token, subject)
            return await handler(request)
        method = "GET" if request.method == "HEAD" else request.method
        template = route.resource.canonical if route.resource is not None else ""
        call = HTTP_OPERATIONS.get((method, template), UNLISTED)
        info = request.match_info
        await guard.admit(call, token, subject, info.get("instanceID"), info.get("workflowName"))
        return await handler(request)

    return check


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Security:
    """The security settings of `serve`, read once at start-up."""

    tokens: Tokens
    token_source: str
    tls: Tls | None
    policy: AccessPolicy | None
    app_token: str | None
    metrics_without_token: bool

    def guard(self, engine: Engine) -> Guard:
        return Guard(self.tokens, self.policy, self.tls is not None and self.tls.mutual, engine)

    def grpc_interceptors(self, engine: Engine) -> list[grpc.aio.ServerInterceptor]:
        guard = self.guard(engine)
        needed = guard.tokens.required or guard.mutual_tls or guard.policy is not None
        return [GrpcGuard(guard)] if needed else []

    def add_port(self, server: grpc.aio.Server, address: str) -> None:
        if self.tls is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, self.tls.grpc_credentials())

    def http_settings(
        self, settings: HttpSettings, engine: Engine, app_routes: Sequence[web.AbstractRouteDef]
    ) -> HttpSettings:
        middleware = http_guard(self.guard(engine), app_routes, self.app_token, self.metrics_without_token)
        return replace(
            settings,
            middlewares=(middleware,),
            ssl_context=self.tls.ssl_context() if self.tls is not None else None,
        )

    def summary(self) -> str:
        parts = [f"API token required ({self.token_source})" if self.tokens.required else "no API token"]
        if self.tls is not None:
            parts.append("TLS with client certificates" if self.tls.mutual else "TLS")
        if self.policy is not None:
            parts.append(f"access policy {self.policy.name!r} ({len(self.policy.rules)} rules)")
        if self.app_token:
            parts.append(f"trigger routes check {APP_TOKEN_VARIABLE}")
        return "; ".join(parts)


def load_security(
    api_token: str,
    tls_cert_file: str,
    tls_key_file: str,
    tls_client_ca_file: str,
    policy: AccessPolicy | None,
    metrics_without_token: bool,
) -> Security:
    source = "--api-token"
    if not api_token:
        api_token = os.environ.get(DAPR_TOKEN_VARIABLE, "")
        source = DAPR_TOKEN_VARIABLE
    named = [(DEFAULT_TOKEN_NAME, api_token)]
    if policy is not None and policy.tokens:
        named += [(t.name, t.value) for t in policy.tokens]
        source = f"{source} or a token of the access policy" if api_token else "a token of the access policy"
    tls = load_tls(tls_cert_file, tls_key_file, tls_client_ca_file)
    values = [value for _, value in named if value]
    if len(set(values)) != len(values):
        raise SecurityError("two tokens of the access policy (or one and the API token) are the same")
    tokens = Tokens(named)
    if policy is not None and not tokens.required and not (tls is not None and tls.mutual):
        raise SecurityError(
            "--access-policy needs callers that can be told apart: set an API token, name tokens "
            "in the policy (spec.tokens), or require client certificates (--tls-client-ca-file)"
        )
    if policy is not None and policy.uses_subjects and not (tls is not None and tls.mutual):
        raise SecurityError(
            "the access policy names certificate subjects: that needs --tls-client-ca-file"
        )
    return Security(
        tokens, source, tls, policy, os.environ.get(APP_TOKEN_VARIABLE) or None, metrics_without_token
    )
