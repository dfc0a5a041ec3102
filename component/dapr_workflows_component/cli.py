"""`dapr-workflows serve`: the whole component in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from . import event_loop
from .access_policy import PolicyFileError, load_policy
from .cli_client import add_client_commands, package_version, run_client
from .concurrency_file import ConcurrencyFileError, load_limits, with_flags
from .engine import Engine, EngineSettings
from .engine.concurrency import ConcurrencyLimits
from .engine.grpc_server import add_to_server, dialect_server, server_options
from .engine.retention import Retention
from .http_api import HttpServer, HttpSettings, parse_address
from .http_openapi import OPENAPI_PATH
from .log_limits import limit_repeats
from .management_rules import RetentionPolicy, parse_retention
from .pluggable.server import ComponentServer, default_socket_folder
from .pluggable.socket_folder import parse_socket_mode, preflight
from .security import Security, SecurityError, load_security
from .startup import LISTEN_FLAGS, Startup, check_addresses
from .store import Store, StoreUnavailable, open_store
from .telemetry.logs import configure_logging
from .telemetry.recorder import Telemetry
from .telemetry.store import ObservedStore
from .triggers import Trigger, TriggerFileError, TriggerRoutes, load_triggers, summary
from .workflows import WorkflowError, parse_bool

log = logging.getLogger("dapr_workflows")

ENV_PREFIX = "DAPR_WORKFLOWS_"
READY_MESSAGE = "dapr-workflows serve"
# At shutdown, how long calls in flight may take to finish; all servers share it.
GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Option:
    flag: str
    default: str
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.flag.upper().replace("-", "_")

    @property
    def dest(self) -> str:
        return self.flag.replace("-", "_")


SECURITY_OPTIONS = (
    Option(
        "api-token",
        "",
        "the token every call of the TCP listeners must carry as dapr-api-token (gRPC metadata or "
        "HTTP header), as daprd's; when empty, $DAPR_API_TOKEN; both empty: no token",
    ),
    Option(
        "tls-cert-file",
        "",
        "PEM certificate (chain) of the gRPC and HTTP listeners: they then speak TLS only "
        "(SDKs connect to https://HOST:PORT); needs --tls-key-file",
    ),
    Option("tls-key-file", "", "PEM private key of --tls-cert-file"),
    Option(
        "tls-client-ca-file",
        "",
        "PEM CA certificates: callers must present a client certificate signed by one (mutual TLS; "
        "probes and the trigger routes excepted); its subject can name callers in --access-policy",
    ),
    Option(
        "access-policy",
        "",
        "YAML file shaped like Dapr's WorkflowAccessPolicy: which callers (by token or client "
        "certificate) may do which operations on which workflows; empty: every caller may do all",
    ),
    Option(
        "metrics-without-token",
        "false",
        "true: /metrics answers without the API token (/healthz, /readyz, the OpenAPI document and "
        "the dashboard's page always do)",
    ),
)


SERVE_OPTIONS = (
    Option(
        "store",
        "sqlite:///dapr-workflows.db",
        "where state is kept: sqlite:///RELATIVE/PATH.db or sqlite:////ABSOLUTE/PATH.db "
        "(add ?sync=full to survive power loss, not only a killed process), or "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE for several engines sharing the work "
        "(?pool_size=N: pooled connections per engine, default 8; ?pool_timeout=SECONDS: wait for "
        "a free one, default 10)",
    ),
    Option(
        "engine-address",
        "127.0.0.1:4100",
        "HOST:PORT of the Durable Task protocol in Dapr's dialect, for dapr.ext.workflow workers "
        "and clients; empty to disable",
    ),
    Option(
        "durabletask-address",
        "127.0.0.1:4001",
        "HOST:PORT of the Durable Task protocol in Microsoft's dialect, for durabletask workers and "
        "clients (4001 is that SDK's own default); empty to disable",
    ),
    Option(
        "max-payload-bytes",
        str(4 * 1024 * 1024),
        "largest input, output, event payload or activity result accepted, in bytes",
    ),
    Option(
        "orchestration-lease-seconds",
        "60",
        "how long a worker may hold a workflow turn before it is offered to another worker",
    ),
    Option(
        "activity-lease-seconds",
        "300",
        "how long a worker may run an activity before it is offered to another worker "
        "(a worker that disconnects gives its work back at once)",
    ),
    Option(
        "keepalive-seconds",
        "10",
        "every gRPC connection (workers, clients, daprd) silent this long is pinged, and dropped when "
        "it does not answer within as long again: a frozen or vanished worker's work is offered to "
        "others then",
    ),
    Option(
        "worker-stall-seconds",
        "10",
        "a worker holding work that has not been heard from (no call, no new stream) for this long "
        "gets no more work while another worker can take it, and its workflow turns go to other "
        "workers at once (its activities stay with it until it answers, disconnects or their lease ends)",
    ),
    Option(
        "store-lease-seconds",
        "10",
        "with a PostgreSQL store: how long the work an engine held waits after the engine dies "
        "before other engines take it (a live engine renews its leases every third of this)",
    ),
    Option(
        "poll-seconds",
        "1",
        "with a PostgreSQL store: how often to look for work no other engine announced "
        "(leases of an engine that died, timers that came due)",
    ),
    Option(
        "http-address",
        "127.0.0.1:4180",
        "HOST:PORT of the Workflow HTTP API of the Dapr docs (/v1.0/workflows/...); empty to disable",
    ),
    Option(
        "http-component-names",
        "dapr",
        "comma-separated names the HTTP API accepts as the {workflowComponentName} of its URLs "
        "(dapr, as in the Dapr docs); any other name is answered with 404",
    ),
    Option(
        "http-max-body-bytes",
        "",
        "largest HTTP request body accepted, in bytes (413 beyond); empty: --max-payload-bytes",
    ),
    Option(
        "http-start-timeout-seconds",
        "10",
        "how long an HTTP start waits for a worker to begin the instance before it answers "
        "(the instance is recorded either way); 0 answers at once",
    ),
    Option(
        "http-max-connections",
        "",
        "HTTP connections held open at once; more are answered with 503 and closed (each holds a file "
        "descriptor, and the gRPC ports need some too); empty: a quarter of the process's file "
        "descriptor limit, at most 1024",
    ),
    Option(
        "http-header-timeout-seconds",
        "10",
        "an HTTP connection must send a request's headers within this long after it opens or after "
        "its previous response; idle keep-alive connections are closed then too",
    ),
    Option(
        "http-body-timeout-seconds",
        "60",
        "an HTTP request body must arrive within this long (408 beyond)",
    ),
    Option(
        "triggers",
        "",
        "YAML file of triggers: pub/sub topics and input bindings whose events start workflows "
        "(docs/triggers.md); this process is then the Dapr app of a daprd run with --app-port set "
        "to the --http-address port; empty: no triggers",
    ),
    Option(
        "history-cache-bytes",
        str(64 * 1024 * 1024),
        "bytes of workflow histories (inputs and results included) kept in memory between turns, "
        "least recently used dropped first; with SQLite only (PostgreSQL keeps none)",
    ),
    Option(
        "worker-max-in-flight",
        "100",
        "work items one worker holds at most (a durabletask worker may ask for fewer); the rest "
        "wait for other workers",
    ),
    Option(
        "worker-max-new-starts",
        "4",
        "of those, new starts' first turns at most, so that a busy worker runs the later turns and "
        "activities of the instances it already has first (docs/architecture.md); 0: no limit",
    ),
    Option(
        "fan-in-hold-seconds",
        "0.1",
        "while workers hold other work, a turn of a workflow still waiting for some of its activities is "
        "offered once the last is done or after this long, whichever comes first, so that a fan-in "
        "takes fewer turns (docs/architecture.md); idle, nothing waits; SQLite only; 0: never held",
    ),
    Option(
        "max-concurrent-workflows",
        "0",
        "workflow turns running at once (leased to workers), over all the engines sharing the store "
        "(Dapr's globalMaxConcurrentWorkflowInvocations); more wait, queued; 0: no limit",
    ),
    Option(
        "max-concurrent-activities",
        "0",
        "activities running at once (leased to workers), over all the engines sharing the store "
        "(Dapr's globalMaxConcurrentActivityInvocations); more wait, queued; 0: no limit",
    ),
    Option(
        "concurrency-limits",
        "",
        "a Dapr Configuration file (YAML or JSON) whose spec.workflow sets the limits by workflow "
        "and activity name (workflowConcurrencyLimits, activityConcurrencyLimits), per engine and "
        "over all engines (docs/concurrency-limits.md); empty: none",
    ),
    Option(
        "socket-folder",
        "",
        "folder of the Dapr pluggable component socket; when empty, $DAPR_COMPONENTS_SOCKETS_FOLDER, "
        "$DAPR_COMPONENT_SOCKETS_FOLDER or /tmp/dapr-components-sockets, as daprd looks",
    ),
    Option(
        "socket-name",
        "dapr-workflows",
        "the socket is FOLDER/NAME.sock and daprd sees the component type bindings.NAME; "
        "empty to run without the pluggable component",
    ),
    Option(
        "socket-mode",
        "0777",
        "octal mode of the component socket, set when it is created; 0777 lets daprd connect as any "
        "user (it often runs as another user in another container); 0770 or 0700 to allow only the "
        "group or the user",
    ),
    Option(
        "allow-foreign-socket-folder",
        "false",
        "true to serve the socket in a folder that another non-root user owns, or that others may "
        "write without the sticky bit (they could replace the socket); such a folder is refused",
    ),
    Option(
        "lifecycle-event-retention-hours",
        "168",
        "lifecycle events no input binding has taken are dropped after this long",
    ),
    Option(
        "retention",
        "",
        "purge finished instances this long after they finish, by status: completed=24h,failed=168h,"
        "terminated=24h,anyTerminal=720h (Dapr's stateRetentionPolicy names, Go durations; a status "
        "named alone wins over anyTerminal); also applies to instances that finished earlier; empty: "
        "keep them until purged",
    ),
    Option("log-level", "info", "debug, info, warning or error"),
    Option(
        "event-loop",
        "auto",
        "the asyncio event loop: uvloop (pip install 'dapr-workflows[uvloop]'), asyncio, or auto: "
        "uvloop when it is installed",
    ),
    Option(
        "log-format",
        "text",
        "text, or json for log shippers: one JSON object per line with time, level, logger, message "
        "and instanceID",
    ),
    Option(
        "metrics",
        "true",
        "serve Prometheus metrics at /metrics on the --http-address (false: not served); /healthz and "
        "/readyz are served either way",
    ),
    *SECURITY_OPTIONS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dapr-workflows",
        description="A durable workflow engine for Dapr; workflow SDKs of Dapr and durabletask run on it.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the engine with its store",
        description="Run the workflow engine. Every option can also be set with the environment "
        f"variable shown; a flag wins over the variable. Variables start with {ENV_PREFIX}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for opt in SERVE_OPTIONS:
        serve.add_argument(
            f"--{opt.flag}",
            dest=opt.dest,
            default=os.environ.get(opt.env, opt.default),
            help=f"{opt.help} (env {opt.env}; default: {opt.default!r})",
        )
    add_client_commands(commands)
    return parser


def _int(value: str, flag: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SystemExit(f"dapr-workflows: --{flag} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise SystemExit(f"dapr-workflows: --{flag} must be positive, not {value!r}")
    return number


def _seconds(value: str, flag: str, zero: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SystemExit(f"dapr-workflows: --{flag} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        need = "zero or positive" if zero else "positive"
        raise SystemExit(f"dapr-workflows: --{flag} must be {need}, not {value!r}")
    return number


def _http_settings(args: argparse.Namespace, max_payload: int) -> HttpSettings:
    try:
        parse_address(args.http_address)
    except ValueError as err:
        raise SystemExit(f"dapr-workflows: --http-address: {err}") from None
    names = tuple(n.strip() for n in str(args.http_component_names).split(",") if n.strip())
    if not names:
        raise SystemExit("dapr-workflows: --http-component-names must name at least one component")
    body = args.http_max_body_bytes
    return HttpSettings(
        component_names=names,
        max_body_bytes=_int(body, "http-max-body-bytes") if body else max_payload,
        start_timeout_seconds=_seconds(
            args.http_start_timeout_seconds, "http-start-timeout-seconds", zero=True
        ),
        max_connections=_int(args.http_max_connections, "http-max-connections")
        if args.http_max_connections
        else 0,
        header_timeout_seconds=_seconds(args.http_header_timeout_seconds, "http-header-timeout-seconds"),
        body_timeout_seconds=_seconds(args.http_body_timeout_seconds, "http-body-timeout-seconds"),
    )


def _engine_settings(args: argparse.Namespace) -> EngineSettings:
    return EngineSettings(
        orchestration_lease_seconds=_seconds(args.orchestration_lease_seconds, "orchestration-lease-seconds"),
        activity_lease_seconds=_seconds(args.activity_lease_seconds, "activity-lease-seconds"),
        max_payload_bytes=_int(args.max_payload_bytes, "max-payload-bytes"),
        lifecycle_events=bool(args.socket_name),
        worker_max_in_flight=_int(args.worker_max_in_flight, "worker-max-in-flight"),
        worker_max_new_starts=_int(args.worker_max_new_starts, "worker-max-new-starts")
        if str(args.worker_max_new_starts).strip() != "0"
        else 0,
        fan_in_hold_seconds=_seconds(args.fan_in_hold_seconds, "fan-in-hold-seconds", zero=True),
        poll_seconds=_seconds(args.poll_seconds, "poll-seconds"),
        store_lease_seconds=_seconds(args.store_lease_seconds, "store-lease-seconds"),
        keepalive_seconds=_seconds(args.keepalive_seconds, "keepalive-seconds"),
        worker_stall_seconds=_seconds(args.worker_stall_seconds, "worker-stall-seconds"),
        history_cache_bytes=_int(args.history_cache_bytes, "history-cache-bytes"),
        concurrency=_concurrency(args),
    )


def _concurrency(args: argparse.Namespace) -> ConcurrencyLimits:
    """The concurrency limits of the flags and the --concurrency-limits file."""
    flags = []
    for flag in ("max-concurrent-workflows", "max-concurrent-activities"):
        value = str(getattr(args, flag.replace("-", "_"))).strip()
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not re.fullmatch(r"[0-9]+", value or "0") or int(value or "0") > 2**31 - 1:
            raise SystemExit(f"dapr-workflows: --{flag} must be a whole number (0: no limit), not {value!r}")
        flags.append(int(value or "0"))
    try:
        limits = load_limits(args.concurrency_limits) if args.concurrency_limits else ConcurrencyLimits()
        limits = with_flags(limits, *flags)
    except ConcurrencyFileError as err:
        raise SystemExit(f"dapr-workflows: --concurrency-limits: {err}") from None
    if limits.gates():
        log.info("concurrency limits: %s", limits.summary())
    return limits


def _socket_settings(args: argparse.Namespace) -> tuple[str, int, bool]:
    """The socket's folder, mode and folder permission, the folder checked before anything listens."""
    folder = args.socket_folder or default_socket_folder()
    try:
        mode = parse_socket_mode(args.socket_mode)
    except ValueError as err:
        raise SystemExit(f"dapr-workflows: --socket-mode: {err}") from None
    allow_foreign = _bool(args.allow_foreign_socket_folder, "allow-foreign-socket-folder")
    if args.socket_name:
        try:
            preflight(Path(folder), f"{args.socket_name}.sock", allow_foreign)
        except (RuntimeError, OSError) as err:
            raise SystemExit(f"dapr-workflows: cannot serve the component socket: {err}") from None
    return folder, mode, allow_foreign


def _bool(value: str, flag: str) -> bool:
    try:
        return parse_bool(f"--{flag}", value, False)
    except WorkflowError as err:
        raise SystemExit(f"dapr-workflows: {err.message}") from None


def _triggers(path: str, http_settings: HttpSettings | None) -> list[Trigger]:
    if not path:
        return []
    if http_settings is None:
        raise SystemExit(
            "dapr-workflows: --triggers needs --http-address: daprd delivers the triggers' events there"
        )
    try:
        return load_triggers(path)
    except TriggerFileError as err:
        raise SystemExit(f"dapr-workflows: --triggers: {err}") from None


def _security(args: argparse.Namespace) -> Security:
    try:
        policy = load_policy(args.access_policy) if args.access_policy else None
    except PolicyFileError as err:
        raise SystemExit(f"dapr-workflows: --access-policy: {err}") from None
    try:
        security = load_security(
            args.api_token,
            args.tls_cert_file,
            args.tls_key_file,
            args.tls_client_ca_file,
            policy,
            parse_bool("--metrics-without-token", args.metrics_without_token, False),
        )
    except (SecurityError, WorkflowError) as err:
        raise SystemExit(f"dapr-workflows: {err}") from None
    log.info("security: %s", security.summary())
    return security


def _retention(text: str) -> RetentionPolicy:
    try:
        return parse_retention(text)
    except WorkflowError as err:
        raise SystemExit(f"dapr-workflows: --retention: {err.message}") from None


async def serve(args: argparse.Namespace) -> None:
    """Runs the component until SIGTERM or SIGINT; a start that fails undoes what it created."""
    # Before anything is created: a busy address is one line, and leaves nothing behind.
    check_addresses([(flag, getattr(args, flag.replace("-", "_"))) for flag in LISTEN_FLAGS])
    startup = Startup(args.store)
    try:
        await _serve(args, startup)
    finally:
        await startup.close()


async def _serve(args: argparse.Namespace, startup: Startup) -> None:
    settings = _engine_settings(args)
    max_payload = settings.max_payload_bytes
    retention_hours = _seconds(args.lifecycle_event_retention_hours, "lifecycle-event-retention-hours")
    http_settings = _http_settings(args, max_payload) if args.http_address else None
    retention_policy = _retention(args.retention)
    try:
        serve_metrics = parse_bool("--metrics", args.metrics, True)
    except WorkflowError as err:
        raise SystemExit(f"dapr-workflows: {err.message}") from None
    triggers = _triggers(args.triggers, http_settings)
    socket_folder, socket_mode, allow_foreign_folder = _socket_settings(args)
    security = _security(args)
    try:
        store = startup.store = open_store(args.store)
    except (ValueError, RuntimeError, OSError) as err:
        raise SystemExit(f"dapr-workflows: cannot open the store: {err}") from None
    log.info("store: %s; event loop: %s", store.description, event_loop.running_loop_name())
    telemetry = Telemetry.from_environment(serve_metrics=serve_metrics)
    engine = Engine(ObservedStore(store, telemetry), settings, telemetry)
    try:
        await engine.start()
    except StoreUnavailable as err:  # e.g. a corrupt page found while recovering
        raise SystemExit(f"dapr-workflows: cannot open the store: {err.message}") from None
    retention = asyncio.create_task(Retention(engine, retention_policy).run())

    servers: list[grpc.aio.Server] = startup.servers
    options = server_options(max_payload, settings.keepalive_seconds)
    await _start_dialect_servers(engine, args, security, options, servers)
    if not servers:
        raise SystemExit(
            "dapr-workflows: nothing to serve: both --engine-address and --durabletask-address are empty"
        )

    http = await _start_http(engine, args, http_settings, triggers, security)

    component: ComponentServer | None = None
    if args.socket_name:
        component = ComponentServer(
            engine, socket_folder, args.socket_name, socket_mode, allow_foreign_folder
        )
        startup.creates(component.path)
        try:
            await component.start()
        except (RuntimeError, OSError) as err:
            raise SystemExit(f"dapr-workflows: cannot serve the component socket: {err}") from None
        expiry = asyncio.get_running_loop().create_task(_expire_events(engine, retention_hours * 3600))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lost: list[str] = []
    watch = loop.create_task(_stop_when_lost(store, stop, lost))
    # Every listener is up: scripts and probes can wait for this line.
    startup.ready()
    telemetry.listening = True
    log.info("%s: ready", READY_MESSAGE)
    await stop.wait()
    watch.cancel()
    log.info("stopping: finishing calls in flight (up to %gs)", GRACE_SECONDS)
    # Long-lived streams (workers' work items, daprd's lifecycle events) end first, so that the
    # grace period is spent only on calls that finish by themselves; all servers share it.
    engine.close_streams()
    retention.cancel()
    stopping = [s.stop(grace=GRACE_SECONDS) for s in servers]
    if http is not None:
        stopping.append(http.stop())
    if component is not None:
        expiry.cancel()
        stopping.append(component.stop(grace=GRACE_SECONDS))
    await asyncio.gather(*stopping)
    await engine.stop()
    await store.close()
    telemetry.close()
    log.info("stopped")
    if lost:
        raise SystemExit(f"dapr-workflows: {lost[0]}")


async def _start_http(
    engine: Engine,
    args: argparse.Namespace,
    http_settings: HttpSettings | None,
    triggers: list[Trigger],
    security: Security,
) -> HttpServer | None:
    """The HTTP API (with the trigger routes), started; None without --http-address."""
    if http_settings is None:
        return None
    routes = TriggerRoutes(engine, triggers, http_settings.max_body_bytes).routes() if triggers else []
    guarded = security.http_settings(http_settings, engine, routes)
    http = HttpServer(engine, guarded, args.http_address, grace=GRACE_SECONDS, routes=routes)
    try:
        await http.start()
    except OSError as err:
        raise SystemExit(f"dapr-workflows: cannot listen on {args.http_address} (HTTP API): {err}") from None
    log.info(
        "listening on %s:%d: the Workflow HTTP API (/v1.0/workflows/{%s}/...; %s)",
        http.host or "*",
        http.port,
        ",".join(http_settings.component_names),
        OPENAPI_PATH,
    )
    if triggers:
        log.info("triggers of %s: %s", args.triggers, summary(triggers))
        log.info("the triggers' events come from the daprd run with --app-port %d", http.port)
    return http


async def _start_dialect_servers(
    engine: Engine,
    args: argparse.Namespace,
    security: Security,
    options: list[tuple[str, int]],
    servers: list[grpc.aio.Server],
) -> None:
    """The Durable Task servers of both dialects (those with an address), added to `servers` as
    each starts, so that a start that fails further on stops the ones already started."""
    for dialect, address, sdk in (
        ("dapr", args.engine_address, "dapr.ext.workflow"),
        ("durabletask", args.durabletask_address, "durabletask"),
    ):
        if not address:
            continue
        server = grpc.aio.server(options=options, interceptors=security.grpc_interceptors(engine))
        add_to_server(server, dialect_server(engine, dialect).handlers())
        try:
            security.add_port(server, address)
        except RuntimeError as err:
            raise SystemExit(
                f"dapr-workflows: cannot listen on {address} ({dialect} dialect): {err}"
            ) from None
        await server.start()
        servers.append(server)
        log.info("listening on %s: Durable Task protocol, %s dialect (for %s)", address, dialect, sdk)


async def _stop_when_lost(store: Store, stop: asyncio.Event, lost: list[str]) -> None:
    """A store lost under the engine (its SQLite file deleted or replaced) stops it with the reason."""
    lost.append(await store.lost())
    stop.set()


async def _expire_events(engine: Engine, retention_seconds: float) -> None:
    while True:
        try:
            await engine.expire_lifecycle_events(retention_seconds)
        except Exception as err:  # the store may be back at the next round; the loop must go on
            log.warning("dropping expired lifecycle events failed (trying again later): %s", err)
        await asyncio.sleep(min(3600.0, retention_seconds))


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        raise SystemExit(run_client(args))
    configure_logging(
        str(getattr(args, "log_level", "info")), str(getattr(args, "log_format", "text")), sys.stderr
    )
    limit_repeats()
    if args.command == "serve":
        event_loop.run(lambda: serve(args), str(args.event_loop))


if __name__ == "__main__":
    main()
