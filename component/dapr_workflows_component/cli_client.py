"""The `dapr-workflows` commands that operate workflows (`list`, `history`, `run`, `raise-event`,
`suspend`, `resume`, `terminate`, `rerun`, `purge`), named and flagged as `dapr workflow` names
them. They talk to a running engine through its HTTP API only (the management routes and the Dapr
routes), so they work against any engine that a user can reach.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from .management_rules import parse_go_duration, parse_rfc3339, parse_statuses
from .workflows import WorkflowError, timestamp_rfc3339

DEFAULT_ADDRESS = "http://127.0.0.1:4180"
ADDRESS_ENV = "DAPR_WORKFLOWS_ADDRESS"
TOKEN_ENVS = ("DAPR_WORKFLOWS_API_TOKEN", "DAPR_API_TOKEN")
BASE = "/v1.0/workflows/dapr"
TIMEOUT_SECONDS = 60.0
LIST_OUTPUTS = ("short", "wide", "json", "yaml", "ids")
HISTORY_OUTPUTS = ("short", "wide", "json", "yaml")


class CliError(Exception):
    """What went wrong, in one sentence for the user."""


# ---------------------------------------------------------------- talking to the engine


class Client:
    def __init__(self, address: str, token: str | None) -> None:
        address = address.strip().rstrip("/")
        if "://" not in address:
            address = "http://" + address
        self.address = address
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        raw: bool = False,
    ) -> Any:
        """One request; the JSON answer (None when empty). `raw` sends `body` as JSON text as is."""
        url = self.address + path + ("?" + urllib.parse.urlencode(list(query)) if query else "")
        data = None
        if body is not None:
            data = (body if raw else json.dumps(body)).encode()
        try:
            request = urllib.request.Request(url, data=data, method=method)
        except ValueError as err:  # e.g. an IPv6 address without its closing bracket
            raise CliError(f"--address {self.address!r} is not a URL ({err})") from None
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("dapr-api-token", self.token)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                text = response.read()
        except urllib.error.HTTPError as err:
            raise CliError(_error_message(err)) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            why = str(getattr(reason, "strerror", None) or reason).lower()
            raise CliError(
                f"cannot reach the engine at {self.address} ({why}): start `dapr-workflows serve` or point "
                f"--address (or ${ADDRESS_ENV}) at a running engine"
            ) from None
        try:
            return json.loads(text) if text.strip() else None
        except (ValueError, RecursionError):
            raise CliError(
                f"{self.address} did not answer with JSON: is it a dapr-workflows engine's HTTP API?"
            ) from None


def _error_message(err: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(err.read())
        message = str(body["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return f"the engine answered HTTP {err.code} {err.reason}"
    if err.code in (401, 403):
        return f"{message} (set --api-token or ${TOKEN_ENVS[0]})"
    return message


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _json_argument(flag: str, text: str | None) -> str | None:
    """A JSON value given on the command line, checked here so that a typo gets a clear sentence."""
    if text is None:
        return None
    try:
        json.loads(text)
    except ValueError:
        raise CliError(f"{flag} must be JSON, e.g. '{{\"amount\": 5}}' or '\"text\"', not {text!r}") from None
    return text


def _time_or_age(flag: str, text: str, now: float) -> str:
    """A Go duration (that long ago) or a timestamp (RFC 3339, or a date) as RFC 3339."""
    try:
        return timestamp_rfc3339(int((now - parse_go_duration(flag, text)) * 1_000_000))
    except WorkflowError:
        pass
    for value in (text, text + "Z", text + "T00:00:00Z"):
        try:
            return timestamp_rfc3339(parse_rfc3339(flag, value))
        except WorkflowError:
            continue
    raise CliError(f"{flag} must be a duration such as 24h or 90m, or a time such as 2026-01-02T15:04:05Z")


# ---------------------------------------------------------------- output


def relative_age(then_rfc3339: str, now: float) -> str:
    """How long ago, as kubectl shows ages: 45s, 3m20s, 17m, 5h3m, 20h, 12d."""
    seconds = max(0, int(now - parse_rfc3339("time", then_rfc3339) / 1_000_000))
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours = seconds // 60, seconds // 3600
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell, separated by two spaces."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)


def _print_structured(value: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(value, indent=2))
    else:
        print(yaml.safe_dump(value, sort_keys=False, allow_unicode=True), end="")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------- list


def _listed(instance: dict[str, Any]) -> dict[str, Any]:
    """An instance as `list -o json|yaml` shows it."""
    props = instance.get("properties", {})
    return {
        "name": instance["workflowName"],
        "instanceID": instance["instanceID"],
        "runtimeStatus": instance["runtimeStatus"],
        "customStatus": props.get("dapr.workflow.custom_status"),
        "created": instance["createdAt"],
        "lastUpdate": instance["lastUpdatedAt"],
        "failureMessage": props.get("dapr.workflow.failure.error_message"),
        "parentInstanceID": instance.get("parentInstanceID"),
        "input": props.get("dapr.workflow.input"),
        "output": props.get("dapr.workflow.output"),
    }


def _filters(args: argparse.Namespace, now: float) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if args.filter_name:
        query.append(("name", args.filter_name))
    if args.filter_status:
        try:
            statuses = parse_statuses([args.filter_status])
        except WorkflowError as err:
            raise CliError(err.message) from None
        query.extend(("status", s.name) for s in sorted(statuses))
    if args.filter_max_age:
        query.append(("createdFrom", _time_or_age("--filter-max-age", args.filter_max_age, now)))
    return query


def cmd_list(client: Client, args: argparse.Namespace) -> None:
    now = time.time()
    query = _filters(args, now)
    instances: list[dict[str, Any]] = []
    token: str | None = None
    while True:  # every page: scripts get the whole list
        page = client.call(
            "GET", BASE, [*query, ("pageSize", "1000"), *([("continuationToken", token)] if token else [])]
        )
        instances.extend(page["instances"])
        token = page["continuationToken"]
        if not token:
            break
    if args.output == "ids":
        for instance in instances:
            print(instance["instanceID"])
    elif args.output in ("json", "yaml"):
        _print_structured([_listed(i) for i in instances], args.output)
    elif not instances:
        print("No workflow instances found.", file=sys.stderr)
    elif args.output == "wide":
        rows = [
            [
                i["workflowName"],
                i["instanceID"],
                i["createdAt"],
                i["lastUpdatedAt"],
                i["runtimeStatus"],
                i["properties"].get("dapr.workflow.custom_status", ""),
                _clip(i["properties"].get("dapr.workflow.failure.error_message", ""), 80),
            ]
            for i in instances
        ]
        headers = [
            "NAME",
            "INSTANCE ID",
            "CREATED",
            "LAST UPDATE",
            "STATUS",
            "CUSTOM STATUS",
            "FAILURE MESSAGE",
        ]
        print(table(headers, rows))
    else:
        rows = [
            [
                i["workflowName"],
                i["instanceID"],
                i["runtimeStatus"],
                _clip(i["properties"].get("dapr.workflow.custom_status", ""), 40),
                relative_age(i["createdAt"], now),
            ]
            for i in instances
        ]
        print(table(["NAME", "ID", "STATUS", "CUSTOM STATUS", "AGE"], rows))


# ---------------------------------------------------------------- history


def _event_details(event: dict[str, Any]) -> str:
    """The few fields of an event worth a glance, as compact JSON ('-' when none)."""
    details = dict(event["details"])
    for routine in ("name", "taskScheduledId", "timerId", "router", "parentTraceContext", "taskExecutionId"):
        details.pop(routine, None)
    return json.dumps(details, separators=(",", ":")) if details else "-"


def _elapsed(event: dict[str, Any], began: int) -> str:
    return f"{(parse_rfc3339('timestamp', event['timestamp']) - began) / 1_000_000:.3f}s"


def cmd_history(client: Client, args: argparse.Namespace) -> None:
    events = client.call("GET", f"{BASE}/{_quote(args.instance_id)}/history")["events"]
    if args.output in ("json", "yaml"):
        _print_structured(events, args.output)
        return
    if not events:
        print(f"Workflow instance {args.instance_id!r} has no history yet.", file=sys.stderr)
        return
    wide = args.output == "wide"
    began = min(parse_rfc3339("timestamp", e["timestamp"]) for e in events)  # events carry their own clocks
    rows = []
    for e in events:
        row = [e["type"], e["name"] or "-", str(e["eventID"]) if e["eventID"] >= 0 else "-"]
        if wide:
            row += [str(e["taskScheduledID"]) if e["taskScheduledID"] is not None else "-", e["timestamp"]]
        row += [_elapsed(e, began), _event_details(e) if wide else _clip(_event_details(e), 60)]
        rows.append(row)
    headers = ["TYPE", "NAME", "EVENT ID", *(["ANSWERS", "TIMESTAMP"] if wide else []), "ELAPSED", "DETAILS"]
    print(table(headers, rows))


# ---------------------------------------------------------------- single-instance actions


def cmd_run(client: Client, args: argparse.Namespace) -> None:
    query: list[tuple[str, str]] = []
    if args.instance_id:
        query.append(("instanceID", args.instance_id))
    if args.start_time:
        try:  # a duration: that long from now
            later = parse_go_duration("--start-time", args.start_time)
            start = timestamp_rfc3339(int((time.time() + later) * 1_000_000))
        except WorkflowError:
            start = _time_or_age("--start-time", args.start_time, 0.0)
        query.append(("startTime", start))
    body = _json_argument("--input", args.input)
    answer = client.call("POST", f"{BASE}/{_quote(args.name)}/start", query, body, raw=True)
    print(f"Started workflow instance {answer['instanceID']}")


def cmd_raise_event(client: Client, args: argparse.Namespace) -> None:
    instance_id, _, event = args.target.partition("/")
    if not instance_id or not event:
        raise CliError(f"the argument must be INSTANCE_ID/EVENT_NAME, not {args.target!r}")
    body = _json_argument("--input", args.input)
    client.call("POST", f"{BASE}/{_quote(instance_id)}/raiseEvent/{_quote(event)}", body=body, raw=True)
    print(f"Raised event {event!r} to workflow instance {instance_id}")


def _action(verb: str, past: str) -> Callable[[Client, argparse.Namespace], None]:
    def run(client: Client, args: argparse.Namespace) -> None:
        body = _json_argument("--output", getattr(args, "output", None))
        client.call("POST", f"{BASE}/{_quote(args.instance_id)}/{verb}", body=body, raw=True)
        print(f"{past} workflow instance {args.instance_id}")

    return run


def cmd_rerun(client: Client, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"fromEventID": args.event_id}
    if args.new_instance_id:
        body["newInstanceID"] = args.new_instance_id
    if args.input is not None:
        body["input"] = json.loads(_json_argument("--input", args.input) or "null")
    answer = client.call("POST", f"{BASE}/{_quote(args.instance_id)}/rerun", body=body)
    print(f"Rerunning workflow instance {args.instance_id} as {answer['instanceID']}")


def cmd_purge(client: Client, args: argparse.Namespace) -> None:
    bulk = args.all or args.all_older_than is not None
    if args.all_filter_status and args.all_older_than is None:
        raise CliError("--all-filter-status needs --all-older-than")
    if args.instance_ids and bulk:
        raise CliError("give instance IDs or --all / --all-older-than, not both")
    if not args.instance_ids and not bulk:
        raise CliError("name the instances to purge, or use --all or --all-older-than")
    force = [("force", "true")] if args.force else []
    for instance_id in args.instance_ids:
        client.call("POST", f"{BASE}/{_quote(instance_id)}/purge", force)
        print(f"Purged workflow instance {instance_id}")
    if not bulk:
        return
    filters: dict[str, Any] = {}
    if args.all_older_than is not None:
        filters["createdTo"] = _time_or_age("--all-older-than", args.all_older_than, time.time())
    if args.all_filter_status:
        try:
            filters["status"] = [s.name for s in sorted(parse_statuses([args.all_filter_status]))]
        except WorkflowError as err:
            raise CliError(err.message) from None
    purged = 0
    while True:  # the engine purges up to its cap per request
        result = client.call(
            "POST", f"{BASE}/purge", body={"filter": filters, "limit": 10000, "force": args.force}
        )
        purged += result["affected"]
        if not result["more"] or not result["affected"]:
            break
    print(f"Purged {purged} workflow instance{'' if purged == 1 else 's'}")


# ---------------------------------------------------------------- the command line

_EPILOG_COMMON = (
    "The engine's HTTP API is at --address (env {env}, default {default}); the API token, when the "
    "engine wants one, comes from --api-token, ${token0} or ${token1}."
)

_COMMANDS: tuple[tuple[str, str, str], ...] = (
    (
        "list",
        "list workflow instances (newest first)",
        "  dapr-workflows list\n"
        "  dapr-workflows list -s RUNNING -m 1h -o wide\n"
        "  dapr-workflows list -w order_processing -o json\n"
        "  dapr-workflows list -s FAILED -o ids | xargs -n1 dapr-workflows history",
    ),
    (
        "history",
        "show the history of a workflow instance",
        "  dapr-workflows history order-17\n  dapr-workflows history order-17 -o json",
    ),
    (
        "run",
        "start a workflow instance",
        '  dapr-workflows run order_processing --input \'{"item": "paperclips", "quantity": 3}\'\n'
        "  dapr-workflows run nightly_report --instance-id report-2026-01-02 --start-time 30m",
    ),
    (
        "raise-event",
        "raise an event to a workflow instance waiting for it",
        "  dapr-workflows raise-event order-17/approval --input '{\"approved\": true}'",
    ),
    ("suspend", "suspend (pause) a workflow instance", "  dapr-workflows suspend order-17"),
    ("resume", "resume a suspended workflow instance", "  dapr-workflows resume order-17"),
    (
        "terminate",
        "terminate a workflow instance",
        "  dapr-workflows terminate order-17\n"
        "  dapr-workflows terminate order-17 --output '\"cancelled by ops\"'",
    ),
    (
        "rerun",
        "run a finished workflow instance again from one of its events",
        "  dapr-workflows rerun order-17 --event-id 3\n"
        "  dapr-workflows rerun order-17 -e 3 --new-instance-id order-17-again --input '{\"retry\": true}'",
    ),
    (
        "purge",
        "delete finished workflow instances and their history",
        "  dapr-workflows purge order-17 order-18\n"
        "  dapr-workflows purge --all-older-than 168h\n"
        "  dapr-workflows purge --all-older-than 0s --all-filter-status COMPLETED\n"
        "  dapr-workflows purge --all",
    ),
)


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--address",
        default=os.environ.get(ADDRESS_ENV, DEFAULT_ADDRESS),
        help=f"the engine's HTTP API (env {ADDRESS_ENV}; default {DEFAULT_ADDRESS})",
    )
    common.add_argument(
        "--api-token",
        default=None,
        help=f"sent as the dapr-api-token header (env {TOKEN_ENVS[0]}, else {TOKEN_ENVS[1]})",
    )
    return common


def _add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    statuses = "RUNNING, COMPLETED, FAILED, TERMINATED, SUSPENDED, PENDING, CONTINUED_AS_NEW, CANCELED"
    if name == "list":
        parser.add_argument("-w", "--filter-name", help="only instances of this workflow name")
        parser.add_argument(
            "-s", "--filter-status", help=f"only instances with this runtime status: {statuses}"
        )
        parser.add_argument(
            "-m",
            "--filter-max-age",
            help="only instances started within this duration (1h, 2h45m) or since this time",
        )
        parser.add_argument("-o", "--output", choices=LIST_OUTPUTS, default="short", help="output format")
    elif name == "history":
        parser.add_argument("instance_id", metavar="ID")
        parser.add_argument("-o", "--output", choices=HISTORY_OUTPUTS, default="short", help="output format")
    elif name == "run":
        parser.add_argument("name", metavar="NAME", help="the registered workflow name")
        parser.add_argument("-x", "--input", help="the workflow's input, as JSON")
        parser.add_argument("-i", "--instance-id", help="the new instance's ID (default: a random one)")
        parser.add_argument(
            "-s",
            "--start-time",
            help="start later: a duration from now (30m) or a time (2026-01-02T15:04:05Z)",
        )
    elif name == "raise-event":
        parser.add_argument("target", metavar="ID/EVENT", help="the instance ID and the event name")
        parser.add_argument("-x", "--input", help="the event's data, as JSON")
    elif name == "rerun":
        parser.add_argument("instance_id", metavar="ID")
        parser.add_argument(
            "-e", "--event-id", type=int, default=0, help="the event to run again from (default 0)"
        )
        parser.add_argument("--new-instance-id", help="the rerun instance's ID (default: a random one)")
        parser.add_argument("-x", "--input", help="a new input for the activity run again, as JSON")
    elif name == "purge":
        parser.add_argument("instance_ids", metavar="ID", nargs="*")
        parser.add_argument("--all", action="store_true", help="purge every finished instance")
        parser.add_argument(
            "--all-older-than",
            metavar="AGE",
            help="purge finished instances created before this age (24h) or time",
        )
        parser.add_argument(
            "--all-filter-status", metavar="STATUS", help="with --all-older-than: only this status"
        )
        parser.add_argument(
            "--force", action="store_true", help="purge even instances that have not finished (use with care)"
        )
    else:
        parser.add_argument("instance_id", metavar="ID")
        if name == "terminate":
            parser.add_argument("-o", "--output", help="the output the terminated instance reports, as JSON")


HANDLERS: dict[str, Callable[[Client, argparse.Namespace], None]] = {
    "list": cmd_list,
    "history": cmd_history,
    "run": cmd_run,
    "raise-event": cmd_raise_event,
    "suspend": _action("pause", "Suspended"),
    "resume": _action("resume", "Resumed"),
    "terminate": _action("terminate", "Terminated"),
    "rerun": cmd_rerun,
    "purge": cmd_purge,
}


def add_client_commands(commands: Any) -> None:
    """Adds the client commands to the `dapr-workflows` parser's subcommands."""
    common = _connection_options()
    epilog_common = _EPILOG_COMMON.format(
        env=ADDRESS_ENV, default=DEFAULT_ADDRESS, token0=TOKEN_ENVS[0], token1=TOKEN_ENVS[1]
    )
    for name, summary, examples in _COMMANDS:
        parser = commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=f"examples:\n{examples}\n\n{textwrap.fill(epilog_common, 79)}",
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_arguments(name, parser)


def run_client(args: argparse.Namespace) -> int:
    """Runs a client command; on any error prints one sentence and returns 1."""
    token = args.api_token or next((os.environ[e] for e in TOKEN_ENVS if os.environ.get(e)), None)
    try:
        HANDLERS[args.command](Client(args.address, token), args)
    except CliError as err:
        print(f"dapr-workflows {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def package_version() -> str:
    try:
        return importlib.metadata.version("dapr-workflows")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"
