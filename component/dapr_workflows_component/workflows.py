"""The workflow component interface: the one place its rules live.

Instance-ID validation, runtime-status names, error codes and the checks that decide whether a
management call is allowed are written here once. The Durable Task servers, the output binding, the
HTTP API and the proposed Workflow service all call into the engine, which applies these rules.
"""

from __future__ import annotations

import enum
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeGuard

import grpc


class RuntimeStatus(enum.IntEnum):
    """Runtime status of an instance; the numbers are the wire enum of both protocol dialects."""

    RUNNING = 0
    COMPLETED = 1
    CONTINUED_AS_NEW = 2
    FAILED = 3
    CANCELED = 4
    TERMINATED = 5
    PENDING = 6
    SUSPENDED = 7
    STALLED = 8

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @classmethod
    def parse(cls, name: str) -> RuntimeStatus:
        """Accepts `RUNNING`, `running` and the wire form `ORCHESTRATION_STATUS_RUNNING`."""
        key = name.strip().upper().removeprefix("ORCHESTRATION_STATUS_")
        try:
            return cls[key]
        except KeyError:
            accepted = ", ".join(s.name for s in cls)
            raise WorkflowError(
                ErrorCode.INVALID_ARGUMENT, f"unknown runtime status {name!r}; accepted: {accepted}"
            ) from None


TERMINAL_STATUSES = frozenset(
    {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED, RuntimeStatus.CANCELED}
)


class ErrorCode(enum.Enum):
    """Why a call failed. Each code maps to one gRPC status and one HTTP status."""

    INVALID_ARGUMENT = ("ERR_INVALID_REQUEST", grpc.StatusCode.INVALID_ARGUMENT, 400)
    ALREADY_EXISTS = ("ERR_INSTANCE_EXISTS", grpc.StatusCode.ALREADY_EXISTS, 409)
    NOT_FOUND = ("ERR_INSTANCE_NOT_FOUND", grpc.StatusCode.NOT_FOUND, 404)
    # A workflow component name this server does not serve (the HTTP API's `{component}` segment);
    # the code is daprd's for the same mistake.
    COMPONENT_NOT_FOUND = ("ERR_WORKFLOW_COMPONENT_NOT_FOUND", grpc.StatusCode.NOT_FOUND, 404)
    FAILED_PRECONDITION = ("ERR_INSTANCE_STATE", grpc.StatusCode.FAILED_PRECONDITION, 409)
    RESOURCE_EXHAUSTED = ("ERR_PAYLOAD_TOO_LARGE", grpc.StatusCode.RESOURCE_EXHAUSTED, 413)
    UNIMPLEMENTED = ("ERR_NOT_IMPLEMENTED", grpc.StatusCode.UNIMPLEMENTED, 501)
    UNAVAILABLE = ("ERR_UNAVAILABLE", grpc.StatusCode.UNAVAILABLE, 503)
    # A request that did not arrive in time (an HTTP body sent too slowly).
    REQUEST_TIMEOUT = ("ERR_REQUEST_TIMEOUT", grpc.StatusCode.DEADLINE_EXCEEDED, 408)
    # No API token, or a wrong one (`serve --api-token`); the code is daprd's for the same.
    UNAUTHENTICATED = ("ERR_UNAUTHENTICATED", grpc.StatusCode.UNAUTHENTICATED, 401)
    # The caller is known, but the access policy does not allow it the call (`--access-policy`).
    PERMISSION_DENIED = ("ERR_PERMISSION_DENIED", grpc.StatusCode.PERMISSION_DENIED, 403)
    INTERNAL = ("ERR_INTERNAL", grpc.StatusCode.INTERNAL, 500)

    @property
    def api_code(self) -> str:
        return self.value[0]

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return self.value[1]

    @property
    def http_status(self) -> int:
        return self.value[2]


class WorkflowError(Exception):
    """A management call that cannot be carried out; `message` is one clear sentence."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# The rule of the Dapr docs for instance IDs chosen by callers.
_INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_INSTANCE_ID_LENGTH = 256

# Limits of what a caller or a worker may send besides payloads (those have --max-payload-bytes).
# A name or an ID is kept in every history event and index that mentions it, so a huge one costs far
# more than its size once; these bounds are far above what any real workflow uses.
# Instance IDs the engine makes (a child's `parent:0001`) or a workflow chooses for a child may be
# longer than a caller's: any instance ID in a call is held to this bound.
MAX_ANY_INSTANCE_ID_LENGTH = 1024
MAX_NAME_LENGTH = 1024  # workflow, activity and event names, in characters
MAX_TAGS = 64
MAX_TAG_KEY_LENGTH = 256
MAX_TAG_VALUE_LENGTH = 4096
# JSON nested deeper than this is refused before it is parsed (parsers recurse per level).
MAX_JSON_DEPTH = 100


def validate_new_instance_id(instance_id: str) -> None:
    """Checks an instance ID a caller chose for a new instance.

    IDs the engine makes itself (child workflows get `parent:0001`) are not held to this rule, so
    management calls on existing instances accept any non-empty ID and answer NOT_FOUND instead.
    """
    if not instance_id:
        raise WorkflowError(ErrorCode.INVALID_ARGUMENT, "the instance ID is empty")
    if len(instance_id) > MAX_INSTANCE_ID_LENGTH:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"the instance ID is {len(instance_id)} characters long; the limit is {MAX_INSTANCE_ID_LENGTH}",
        )
    if not _INSTANCE_ID_RE.fullmatch(instance_id):
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"instance ID {instance_id!r} is malformed: use only letters, digits, '_' and '-'",
        )


def require_instance_id(instance_id: str) -> None:
    """Checks the instance ID of a call on an existing instance."""
    if not instance_id:
        raise WorkflowError(ErrorCode.INVALID_ARGUMENT, "the instance ID is empty")
    _check_length("instance ID", instance_id, MAX_ANY_INSTANCE_ID_LENGTH)


def is_entity_id(instance_id: str) -> bool:
    """Whether the ID names a durable entity ("@name@key", the durabletask SDK's form)."""
    return instance_id.startswith("@") and instance_id.find("@", 1) > 1


def is_durable_entity(instance: Instance) -> bool:
    return instance.dialect == "durabletask" and is_entity_id(instance.instance_id)


def check_not_entity(instance: Instance) -> None:
    """Raise, suspend, resume and terminate apply to workflows; an entity takes signals."""
    if is_durable_entity(instance):
        message = f"{instance.instance_id!r} is a durable entity: signal it, or purge it to delete its state"
        raise WorkflowError(ErrorCode.FAILED_PRECONDITION, message)


def require_entity_id(instance_id: str) -> str:
    """Checks a durable entity's ID ("@name@key"); returns the entity's name."""
    require_instance_id(instance_id)
    if not is_entity_id(instance_id):
        raise WorkflowError(ErrorCode.INVALID_ARGUMENT, f'{instance_id!r} is not an entity ID ("@name@key")')
    return instance_id[1 : instance_id.find("@", 1)]


def require_new_workflow_id(dialect: str, instance_id: str) -> None:
    require_instance_id(instance_id)
    if dialect == "durabletask" and is_entity_id(instance_id):  # the entity's lease would take its work
        raise WorkflowError(ErrorCode.INVALID_ARGUMENT, f"{instance_id!r} is an entity ID, not a workflow's")


def require_timestamp(what: str, micros: int) -> int:
    if not -62_135_596_800_000_000 <= micros < 253_402_300_800_000_000:  # protobuf's range; store's int64
        raise WorkflowError(ErrorCode.INVALID_ARGUMENT, f"the {what} is not a time of the years 1 to 9999")
    return micros


def _check_length(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT, f"the {what} is {len(text)} characters long; the limit is {limit}"
        )


def require_name(what: str, name: str) -> None:
    """A workflow, activity or event name: not empty, at most MAX_NAME_LENGTH characters."""
    if not name:
        raise WorkflowError(ErrorCode.INVALID_ARGUMENT, f"the {what} is empty")
    _check_length(what, name, MAX_NAME_LENGTH)


def require_workflow_name(name: str) -> None:
    require_name("workflow name", name)


def require_event_name(name: str) -> None:
    require_name("event name", name)


def check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT, f"{len(tags)} tags are given; the limit is {MAX_TAGS} tags"
        )
    for key, value in tags.items():
        _check_length("tag name", key, MAX_TAG_KEY_LENGTH)
        _check_length(f"value of tag {key!r}", value, MAX_TAG_VALUE_LENGTH)


# JSON strings: removed before brackets are counted, so that brackets inside them do not count.
_JSON_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def check_json_depth(what: str, text: str | bytes | None) -> None:
    """Refuses text whose brackets nest deeper than MAX_JSON_DEPTH, without parsing it.

    Counted on any text (a payload need not be JSON to reach a worker, whose parser would fail on it).
    """
    if not text:
        return
    data = text.encode() if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return
    brackets = _JSON_STRING_RE.sub(b"", data).translate(None, _NOT_BRACKETS)
    if max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"the {what} nests JSON arrays or objects more than {MAX_JSON_DEPTH} levels deep; "
            f"the limit is {MAX_JSON_DEPTH}",
        )


def check_caller_payload(what: str, payload: str | bytes | None, limit: int) -> None:
    """A payload a caller sends (workflow input, event data, terminate output): size, then nesting."""
    check_payload_size(what, payload, limit)
    check_json_depth(what, payload)


def check_start(req: StartRequest, limit: int) -> None:
    """Everything a start asks for that can be checked before the store is asked."""
    validate_new_instance_id(req.instance_id)
    require_workflow_name(req.name)
    if req.version is not None:
        _check_length("workflow version", req.version, MAX_NAME_LENGTH)
    check_tags(req.tags)
    check_caller_payload("workflow input", req.input, limit)


def parse_json(what: str, text: str | bytes) -> Any:
    """JSON from a caller; INVALID_ARGUMENT when it is no JSON or nests too deep."""
    check_json_depth(what, text)
    try:
        return json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _not_json(what) from None


def _not_json(what: str) -> WorkflowError:
    return WorkflowError(
        ErrorCode.INVALID_ARGUMENT, f'the {what} is not valid JSON (send a JSON value, e.g. "text" or {{}})'
    )


def internal_error(what: str) -> WorkflowError:
    """A call that failed inside the engine: the caller hears one sentence, the log has the rest."""
    return WorkflowError(ErrorCode.INTERNAL, f"{what} failed inside the engine; see its log")


# The error type a worker of either SDK fails a workflow with when it has no workflow of that name
# (Dapr's SDK sends the class name, durabletask's its dotted path).
_NOT_REGISTERED_ERROR = "OrchestratorNotRegisteredError"
_SDK_OF_DIALECT = {"dapr": "Dapr SDK", "durabletask": "durabletask SDK"}


def unregistered_workflow_message(
    error_type: str, workflow_name: str, worker_dialects: Iterable[str]
) -> str | None:
    """The failure message of an instance whose worker has no workflow of its name, in one sentence;
    None for any other failure (whose message stays the worker's).

    Workers do not tell the engine which names they register, so the sentence says what the engine
    knows: the connected workers' SDKs and numbers."""
    if error_type.rsplit(".", 1)[-1] != _NOT_REGISTERED_ERROR:
        return None
    counts = Counter(worker_dialects)
    workers = " and ".join(
        f"{n} {_SDK_OF_DIALECT.get(dialect, dialect)} worker{'s' if n > 1 else ''}"
        for dialect, n in sorted(counts.items())
    )
    connected = f"{workers} {'are' if counts.total() > 1 else 'is'}" if workers else "no worker is"
    return (
        f"no workflow named {workflow_name!r} is registered in the worker that was offered it "
        f"({connected} connected to this engine; workers do not tell the engine the names they "
        "register, so each should register every workflow)"
    )


def not_found(instance_id: str) -> WorkflowError:
    return WorkflowError(ErrorCode.NOT_FOUND, f"no workflow instance with ID {instance_id!r}")


def check_start_allowed(
    instance_id: str, existing: Instance | None, replaceable: frozenset[RuntimeStatus]
) -> None:
    """An ID in use, in any state, is taken until purged, unless the caller's reuse policy allows it."""
    if existing is None:
        return
    if existing.status in replaceable:
        return
    raise WorkflowError(
        ErrorCode.ALREADY_EXISTS,
        f"workflow instance {instance_id!r} already exists (status {existing.status.name}); "
        "purge it first or choose another ID",
    )


def check_event_allowed(instance: Instance) -> None:
    if instance.status.is_terminal:
        raise WorkflowError(
            ErrorCode.FAILED_PRECONDITION,
            f"workflow instance {instance.instance_id!r} is {instance.status.name}; "
            "events can only be raised to instances that have not finished",
        )


def check_suspend_allowed(instance: Instance) -> bool:
    """True when a suspend must be recorded; False when it is a no-op (already suspended)."""
    if instance.status.is_terminal:
        raise WorkflowError(
            ErrorCode.FAILED_PRECONDITION,
            f"workflow instance {instance.instance_id!r} is {instance.status.name} and cannot be suspended",
        )
    return instance.status != RuntimeStatus.SUSPENDED


def check_resume_allowed(instance: Instance) -> bool:
    """True when a resume must be recorded; False when it is a no-op (not suspended)."""
    if instance.status.is_terminal:
        raise WorkflowError(
            ErrorCode.FAILED_PRECONDITION,
            f"workflow instance {instance.instance_id!r} is {instance.status.name} and cannot be resumed",
        )
    return instance.status == RuntimeStatus.SUSPENDED


def check_purge_allowed(instance: Instance, force: bool) -> None:
    # A durable entity is never terminal: purging it deletes its state.
    if force or instance.status.is_terminal or is_durable_entity(instance):
        return
    raise WorkflowError(
        ErrorCode.FAILED_PRECONDITION,
        f"workflow instance {instance.instance_id!r} is {instance.status.name}; only completed, failed, "
        "terminated or canceled instances can be purged (terminate it first)",
    )


def runs_execution(instance: Instance | None, execution_id: str | None) -> TypeGuard[Instance]:
    """Whether work of `execution_id` still applies to the instance: it exists, has not finished and
    still runs that execution (not a later one after continue-as-new, nor a new instance under the same
    ID). An `execution_id` of None matches any execution."""
    return (
        instance is not None
        and not instance.status.is_terminal
        and (not execution_id or instance.execution_id == execution_id)
    )


def check_restart_allowed(instance: Instance) -> None:
    if not instance.status.is_terminal:
        raise WorkflowError(
            ErrorCode.FAILED_PRECONDITION,
            f"workflow instance {instance.instance_id!r} is {instance.status.name}; "
            "only finished instances restart",
        )


def check_rerun_allowed(source: Instance) -> None:
    """A rerun starts from a finished top-level instance (the error codes Dapr's SDK documents)."""
    if not source.status.is_terminal:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"workflow instance {source.instance_id!r} is {source.status.name}; "
            "only finished instances rerun",
        )
    if source.parent_instance_id:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"workflow instance {source.instance_id!r} is a child workflow; rerun its parent instead",
        )


# The longest rewind reason, in UTF-8 bytes. The reason is recorded in the history's executionRewound
# event; kept this short, the event stays readable in the Dapr dialect's types, whose field of the same
# number holds strings.
MAX_REWIND_REASON_BYTES = 127


def check_rewind_allowed(instance: Instance, reason: str | None) -> None:
    """Only a FAILED instance of the durabletask dialect (whose workers replay the rewound history)
    rewinds, as durabletask's reference backend has it."""
    if instance.status != RuntimeStatus.FAILED:
        raise WorkflowError(
            ErrorCode.FAILED_PRECONDITION,
            f"workflow instance {instance.instance_id!r} is {instance.status.name}; "
            "only failed instances rewind",
        )
    if instance.dialect != "durabletask":
        raise WorkflowError(
            ErrorCode.FAILED_PRECONDITION,
            f"workflow instance {instance.instance_id!r} runs on a Dapr worker; rewind needs a durabletask "
            "worker (rerun it from an event instead)",
        )
    if reason is not None and len(reason.encode()) > MAX_REWIND_REASON_BYTES:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"the rewind reason is {len(reason.encode())} bytes; "
            f"at most {MAX_REWIND_REASON_BYTES} are allowed",
        )


def check_rerun_event(
    source_id: str, event_id: int, event_kind: str | None, overwrite_input: bool, new_child_id: str | None
) -> None:
    """A rerun starts from a scheduled activity, a created timer or a created child workflow
    (`event_kind` None: the history has no such event with that ID); only an activity takes a new
    input, only a child workflow a new child instance ID."""
    if event_kind is None:
        raise WorkflowError(
            ErrorCode.NOT_FOUND,
            f"event {event_id} of workflow instance {source_id!r} is not a scheduled activity, "
            "a created timer or a created child workflow",
        )
    if overwrite_input and event_kind != "taskScheduled":
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"event {event_id} is a {event_kind} event, which takes no new input",
        )
    if new_child_id is not None and event_kind != "childWorkflowInstanceCreated":
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT,
            f"event {event_id} created no child workflow, so it takes no new child instance ID",
        )


def rerun_impossible(source_id: str, event_id: int) -> WorkflowError:
    """The history before the event holds no turn to replay it from."""
    return WorkflowError(
        ErrorCode.FAILED_PRECONDITION,
        f"workflow instance {source_id!r} cannot be rerun from event {event_id}",
    )


def check_payload_size(what: str, payload: str | bytes | None, limit: int) -> None:
    if payload is None:
        return
    # A character can take up to 4 bytes: only a string that might be too long is encoded.
    size = len(payload) if isinstance(payload, bytes) or len(payload) * 4 <= limit else len(payload.encode())
    if size > limit:
        raise WorkflowError(
            ErrorCode.RESOURCE_EXHAUSTED, f"the {what} is {size} bytes; the limit is {limit} bytes"
        )


@dataclass
class FailureDetails:
    error_type: str
    message: str
    stack_trace: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errorType": self.error_type, "errorMessage": self.message}
        if self.stack_trace:
            out["stackTrace"] = self.stack_trace
        return out


@dataclass
class Instance:
    """The state of one workflow instance, as stored."""

    instance_id: str
    name: str
    dialect: str
    status: RuntimeStatus
    execution_id: str
    created_at: int  # microseconds since the epoch, UTC
    updated_at: int
    version: str | None = None
    input: str | None = None
    output: str | None = None
    custom_status: str | None = None
    failure: bytes | None = None  # a serialized TaskFailureDetails
    parent_instance_id: str | None = None
    parent_task_id: int | None = None
    parent_execution_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    completed_at: int | None = None
    scheduled_start_at: int | None = None
    rerun: dict[str, Any] | None = None  # overrides of a rerun: {"task_id": int, "input": str|None}


@dataclass
class ReusePolicy:
    """Statuses whose instance a new start may replace. Empty (the default): an ID in use is taken."""

    replaceable: frozenset[RuntimeStatus] = frozenset()


@dataclass
class StartRequest:
    name: str
    instance_id: str
    input: str | None = None
    version: str | None = None
    scheduled_start_at: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    reuse: ReusePolicy = field(default_factory=ReusePolicy)
    dialect: str = "dapr"
    app_id: str = ""  # the app whose workers run it (multi-app workflows); "": any app's


@dataclass
class InstanceQuery:
    statuses: frozenset[RuntimeStatus] = frozenset()
    created_from: int | None = None
    created_to: int | None = None
    completed_from: int | None = None
    completed_to: int | None = None
    id_prefix: str | None = None
    after_id: str | None = None
    limit: int = 100
    # The management listing's filters (see `instance_filter`).
    name: str | None = None
    updated_from: int | None = None
    updated_to: int | None = None
    custom_status: str | None = None  # a substring of the custom status
    parent_instance_id: str | None = None
    # "id" (by instance ID, after `after_id`), "newest" / "oldest" (by creation time, after `after`)
    # or "completed" (oldest completion first).
    order: str = "id"
    after: tuple[int, str] | None = None  # (created_at, instance_id) of the previous page's last
    # Rows another engine's transaction holds are left out (a shared store's batch jobs).
    skip_locked: bool = False


DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000


def page_size(size: int, clamp: bool = False) -> int:
    """The page size of an instance listing; 0 means the default; `clamp` (gRPC listings: durabletask's
    SDK asks 2**31-1 for "all", following the token) serves more as the most, less than 0 as 0."""
    if size == 0 or (clamp and size < 0):
        return DEFAULT_PAGE_SIZE
    if clamp and size > MAX_PAGE_SIZE:
        return MAX_PAGE_SIZE
    if not 0 < size <= MAX_PAGE_SIZE:
        raise WorkflowError(
            ErrorCode.INVALID_ARGUMENT, f"the page size must be 1 to {MAX_PAGE_SIZE}, not {size}"
        )
    return size


@dataclass
class InstancePage:
    instance_ids: list[str]
    continuation_token: str | None  # None on the last page


def page_query(
    size: int, continuation_token: str | None, where: InstanceQuery | None = None
) -> InstanceQuery:
    """The query for one page of a listing by instance ID (of those `where` matches, if given), one
    more to see if a page follows; the continuation token is the previous page's last instance ID."""
    fields = {**vars(where or InstanceQuery()), "after_id": continuation_token or None, "limit": size + 1}
    return InstanceQuery(**fields)


def page_of(found: list[Instance], size: int) -> tuple[list[Instance], str | None]:
    """The instances of the page `page_query(size, ...)` found, and the next page's token (None on
    the last page)."""
    token = found[size - 1].instance_id if len(found) > size else None
    return found[:size], token


def instance_page(found: list[Instance], size: int) -> InstancePage:
    """The page answered with what `page_query(size, ...)` found."""
    instances, token = page_of(found, size)
    return InstancePage([i.instance_id for i in instances], token)


def timestamp_rfc3339(micros: int) -> str:
    """RFC 3339 UTC with a `Z`, as the Dapr Workflow API shows times."""
    dt = datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def statuses(names: Iterable[RuntimeStatus | int]) -> frozenset[RuntimeStatus]:
    return frozenset(RuntimeStatus(int(n)) for n in names)


def _failure(inst: Instance) -> FailureDetails | None:
    if not inst.failure:
        return None
    from .protos import dapr_dialect_pb2 as pb  # a leaf module; imported here to keep this one light

    details = pb.TaskFailureDetails.FromString(inst.failure)
    stack = details.stackTrace.value if details.HasField("stackTrace") else None
    return FailureDetails(details.errorType, details.errorMessage, stack)


def instance_json(inst: Instance) -> dict[str, Any]:
    """An instance as the Dapr Workflow API's GET shows it; the binding answers `get` with it too."""
    properties: dict[str, str] = {}
    if inst.custom_status is not None:
        properties["dapr.workflow.custom_status"] = inst.custom_status
    if inst.input is not None:
        properties["dapr.workflow.input"] = inst.input
    if inst.output is not None:
        properties["dapr.workflow.output"] = inst.output
    failure = _failure(inst)
    if failure is not None:
        properties["dapr.workflow.failure.error_type"] = failure.error_type
        properties["dapr.workflow.failure.error_message"] = failure.message
        if failure.stack_trace:
            properties["dapr.workflow.failure.stack_trace"] = failure.stack_trace
    return {
        "instanceID": inst.instance_id,
        "workflowName": inst.name,
        "createdAt": timestamp_rfc3339(inst.created_at),
        "lastUpdatedAt": timestamp_rfc3339(inst.updated_at),
        "runtimeStatus": inst.status.name,
        "properties": properties,
    }


class LifecycleEvent(enum.Enum):
    """What happened to an instance, as the input binding reports it."""

    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"
    SUSPENDED = "suspended"
    RESUMED = "resumed"

    @classmethod
    def of_terminal(cls, status: RuntimeStatus) -> LifecycleEvent:
        return {RuntimeStatus.COMPLETED: cls.COMPLETED, RuntimeStatus.TERMINATED: cls.TERMINATED}.get(
            status, cls.FAILED
        )


def lifecycle_json(kind: LifecycleEvent, inst: Instance, at: int) -> dict[str, Any]:
    """The JSON document of one lifecycle event."""
    doc: dict[str, Any] = {
        "type": kind.value,
        "instanceID": inst.instance_id,
        "workflowName": inst.name,
        "runtimeStatus": inst.status.name,
        "time": timestamp_rfc3339(at),
    }
    if kind == LifecycleEvent.COMPLETED or (kind == LifecycleEvent.TERMINATED and inst.output is not None):
        doc["output"] = inst.output
    failure = _failure(inst)
    if failure is not None:
        doc["failureDetails"] = failure.to_json()
    return doc


def json_payload(what: str, data: bytes | str | None, limit: int) -> str | None:
    """A payload from a caller (input, event data, output) as JSON text; empty or null means none."""
    if data is None or len(data) == 0:
        return None
    check_payload_size(what, data, limit)
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise _not_json(what) from None
    # daprd's HTTP API encodes a missing `data` as JSON null: no payload either.
    if parse_json(what, text) is None:
        return None
    return text


def parse_bool(key: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise WorkflowError(ErrorCode.INVALID_ARGUMENT, f"{key} must be true or false, not {value!r}")
