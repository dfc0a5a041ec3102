"""The rules of the management API, beside those of `workflows.py`: the listing's filters and
limits, continuation tokens, the bodies of rerun and of the bulk actions, and the retention policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .workflows import (
    TERMINAL_STATUSES,
    ErrorCode,
    Instance,
    InstanceQuery,
    RuntimeStatus,
    WorkflowError,
    instance_json,
)

LIST_PAGE_SIZE = 50
MAX_LIST_PAGE_SIZE = 1000
BULK_LIMIT = 1000
MAX_BULK_LIMIT = 10_000
LIST_ORDERS = ("newest", "oldest")
# The filter fields of a listing and of a bulk action's `filter`; `status` may be a list.
FILTER_FIELDS = (
    "status",
    "name",
    "createdFrom",
    "createdTo",
    "updatedFrom",
    "updatedTo",
    "idPrefix",
    "customStatus",
    "parentInstanceID",
)
MAX_FILTER_TEXT = 1024


def _invalid(message: str) -> WorkflowError:
    return WorkflowError(ErrorCode.INVALID_ARGUMENT, message)


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def parse_rfc3339(key: str, text: str) -> int:
    """An RFC 3339 time with its offset (`2026-01-02T15:04:05Z`) in microseconds since the epoch."""
    moment = None
    if _RFC3339.fullmatch(text):
        value = text.upper().replace("Z", "+00:00")
        # Python keeps microseconds (finer fractions are cut) and has no year 0 or leap seconds.
        value = re.sub(r"(\.\d{6})\d+", r"\1", value)
        value = re.sub(r"^0000-", "0001-", re.sub(r"(T\d\d:\d\d):60", r"\1:59", value))
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
    if moment is None:
        raise _invalid(f"{key} must be an RFC 3339 time such as 2026-01-02T15:04:05Z, not {text!r}")
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(what: str, text: str) -> float:
    """A Go duration (`300ms`, `1.5h`, `2h45m`, `0s`) in seconds; negative ones are refused."""
    value = text.strip()
    pos = 0
    seconds = 0.0
    if value == "0":
        return 0.0
    for match in _GO_DURATION_PART.finditer(value):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if not value or pos != len(value):
        raise _invalid(f"{what} must be a duration such as 30s, 15m, 24h or 2h45m, not {text!r}")
    return seconds


def parse_statuses(values: Iterable[str]) -> frozenset[RuntimeStatus]:
    """Runtime statuses given as repeated and/or comma-separated names."""
    return frozenset(RuntimeStatus.parse(name) for value in values for name in value.split(","))


def _bounded_int(key: str, value: int | str | None, default: int, maximum: int) -> int:
    """A whole number from 1 to `maximum`: a JSON number, or the digits of a query parameter."""
    if value is None:
        return default
    valid = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
        value, valid = int(value), True
    if not valid or not 0 < int(value) <= maximum:
        raise _invalid(f"{key} must be a whole number from 1 to {maximum}, not {value!r}")
    return int(value)


def list_page_size(value: str | None) -> int:
    return _bounded_int("pageSize", value, LIST_PAGE_SIZE, MAX_LIST_PAGE_SIZE)


def bulk_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"limit must be a whole number from 1 to {MAX_BULK_LIMIT}")
    return _bounded_int("limit", value, BULK_LIMIT, MAX_BULK_LIMIT)


def query_flag(key: str, value: str | None) -> bool:
    """A boolean query parameter: absent (false), `true` or `false`."""
    if value not in (None, "true", "false"):
        raise _invalid(f"{key} must be true or false, not {value!r}")
    return value == "true"


def _filter_text(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    if len(value) > MAX_FILTER_TEXT:
        raise _invalid(f"{key} is {len(value)} characters long; the limit is {MAX_FILTER_TEXT}")
    if "\x00" in value:
        raise _invalid(f"{key} contains a NUL character")
    return value or None


def instance_filter(fields: dict[str, Any]) -> InstanceQuery:
    """The query of a listing's (or a bulk action's) filter fields; unknown fields are refused."""
    unknown = sorted(k for k in fields if k not in FILTER_FIELDS)
    if unknown:
        raise _invalid(f"unknown filter {unknown[0]!r}; filters: {', '.join(FILTER_FIELDS)}")
    for key, value in fields.items():
        if value is None:
            raise _invalid(f"the filter {key} is null: leave it out instead")
    status = fields.get("status")
    if status is None:
        status = []
    elif isinstance(status, str):
        status = [status]
    if not isinstance(status, list) or not all(isinstance(s, str) for s in status):
        raise _invalid("status must be a runtime status name or a list of them")
    times: dict[str, int | None] = {}
    for key in ("createdFrom", "createdTo", "updatedFrom", "updatedTo"):
        text = fields.get(key)
        if text is not None and not isinstance(text, str):
            raise _invalid(f"{key} must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
        times[key] = parse_rfc3339(key, text) if text is not None else None
    return InstanceQuery(
        statuses=parse_statuses(status),
        created_from=times["createdFrom"],
        created_to=times["createdTo"],
        updated_from=times["updatedFrom"],
        updated_to=times["updatedTo"],
        name=_filter_text("name", fields.get("name")),
        id_prefix=_filter_text("idPrefix", fields.get("idPrefix")),
        custom_status=_filter_text("customStatus", fields.get("customStatus")),
        parent_instance_id=_filter_text("parentInstanceID", fields.get("parentInstanceID")),
    )


def list_order(value: str | None) -> str:
    if value is None:
        return "newest"
    if value not in LIST_ORDERS:
        raise _invalid(f"order must be newest or oldest, not {value!r}")
    return value


def continuation_token(last: Instance) -> str:
    """The token of the page after `last`: its creation time and its ID in hex (`1767225600000000.6f72`)."""
    return f"{last.created_at}.{last.instance_id.encode().hex()}"


# Any text of this form is a token: a made-up one only moves where the page starts.
CONTINUATION_TOKEN_PATTERN = r"^([0-9]{1,18}\.([0-9a-f]{2})*)?$"  # empty: the first page


def parse_continuation_token(token: str | None) -> tuple[int, str] | None:
    if token is None or token == "":
        return None
    if not re.fullmatch(CONTINUATION_TOKEN_PATTERN, token):
        raise _invalid("the continuation token is malformed: pass the one the previous page returned")
    created_at, _, hex_id = token.partition(".")
    return int(created_at), bytes.fromhex(hex_id).decode(errors="replace")


def bulk_query(query: InstanceQuery, terminal: bool, force: bool = False) -> InstanceQuery | None:
    """A bulk purge touches terminal instances only (unless forced), a bulk terminate the others;
    None when the filter's statuses leave none."""
    if force:
        return query
    wanted = frozenset(s for s in RuntimeStatus if s.is_terminal == terminal)
    query.statuses = (query.statuses & wanted) if query.statuses else wanted
    return query if query.statuses else None


def management_json(inst: Instance) -> dict[str, Any]:
    """An instance as the management listing shows it: the GET body plus its parent."""
    return {**instance_json(inst), "parentInstanceID": inst.parent_instance_id}


def rerun_request(body: Any) -> tuple[int, str | None, str | None, bool]:
    """(fromEventID, newInstanceID, input as JSON text, whether the input is replaced) of a rerun body."""
    if not isinstance(body, dict):
        raise _invalid('the body must be a JSON object such as {"fromEventID": 0}')
    unknown = sorted(k for k in body if k not in ("fromEventID", "newInstanceID", "input"))
    if unknown:
        raise _invalid(f"unknown field {unknown[0]!r}; fields: fromEventID, newInstanceID, input")
    event_id = body.get("fromEventID")
    if isinstance(event_id, bool) or not isinstance(event_id, int) or not 0 <= event_id < 2**31:
        raise _invalid("fromEventID must be the eventID (a whole number, 0 or more) of a history event")
    new_id = body.get("newInstanceID", "")
    if not isinstance(new_id, str):
        raise _invalid("newInstanceID must be a string")
    replaced = "input" in body
    text = json.dumps(body.get("input"), ensure_ascii=False, separators=(",", ":"))
    return event_id, new_id or None, text if replaced else None, replaced


def bulk_request(body: Any, action: str) -> tuple[InstanceQuery, bool, int, dict[str, Any]]:
    """(filter, dryRun, limit, the other fields) of a bulk purge or terminate body."""
    extra = {"purge": ("force",), "terminate": ("output",)}[action]
    if not isinstance(body, dict):
        raise _invalid('the body must be a JSON object such as {"filter": {"status": ["COMPLETED"]}}')
    known = ("filter", "dryRun", "limit", *extra)
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise _invalid(f"unknown field {unknown[0]!r}; fields: {', '.join(known)}")
    fields = body.get("filter", {})
    if not isinstance(fields, dict):
        raise _invalid("filter must be a JSON object of list filters")
    for key in ("dryRun", "force"):
        if not isinstance(body.get(key, False), bool):
            raise _invalid(f"{key} must be true or false")
    others = {k: body[k] for k in extra if k in body}
    limit = bulk_limit(body["limit"]) if "limit" in body else BULK_LIMIT
    return instance_filter(fields), body.get("dryRun", False), limit, others


RETENTION_STATUSES = {
    "completed": (RuntimeStatus.COMPLETED,),
    "failed": (RuntimeStatus.FAILED,),
    "terminated": (RuntimeStatus.TERMINATED,),
}


@dataclass(frozen=True)
class RetentionPolicy:
    """How long finished instances are kept, by status (Dapr's `stateRetentionPolicy`)."""

    seconds: dict[RuntimeStatus, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.seconds)

    def describe(self) -> str:
        return ", ".join(f"{s.name} after {v:g}s" for s, v in sorted(self.seconds.items()))


def parse_retention(text: str) -> RetentionPolicy:
    """`completed=24h,failed=168h,terminated=24h,anyTerminal=720h`: a kind named alone wins over
    `anyTerminal`, which covers every finished status (canceled too)."""
    given: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in (*RETENTION_STATUSES, "anyTerminal"):
            raise _invalid(
                f"{part!r} is not KIND=DURATION with KIND one of completed, failed, terminated, anyTerminal"
            )
        if key in given:
            raise _invalid(f"{key} is given twice")
        given[key] = parse_go_duration(key, value)
    seconds: dict[RuntimeStatus, float] = {}
    if "anyTerminal" in given:
        seconds = dict.fromkeys(TERMINAL_STATUSES, given["anyTerminal"])
    for key, kinds in RETENTION_STATUSES.items():
        if key in given:
            seconds.update(dict.fromkeys(kinds, given[key]))
    return RetentionPolicy(seconds)
