"""Who may do what: the workflow access policy (`serve --access-policy FILE`) and its one table.

The file is shaped like Dapr's `WorkflowAccessPolicy` (`spec.rules[].callers`, `.workflows[].name`
and `.operations`), with what an engine outside daprd needs to tell callers apart: named tokens
(`spec.tokens`) and client-certificate subjects. A rule allows its callers the listed operations on
workflows whose name matches the rule's pattern; nothing else is allowed once a file is given.

`GRPC_OPERATIONS` and `HTTP_OPERATIONS` say which operation each call is, for every listener; the
gRPC interceptor and the HTTP middleware (`security.py`) look calls up there and ask `decide`.
"""

from __future__ import annotations

import enum
import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .http_openapi import OPENAPI_PATH
from .telemetry.http import METRICS_PATH
from .workflows import ErrorCode, WorkflowError

# Dapr's operation names, then the ones only this engine has.
OPERATIONS = (
    "schedule",
    "get",
    "raise",
    "pause",
    "resume",
    "terminate",
    "purge",
    "rerun",
    "list",
    "history",
    "worker",
)
# Other names users know the same operations by (the Durable Task and HTTP API words).
ALIASES = {"start": "schedule", "suspend": "pause"}
ALL = "*"


class Target(enum.Enum):
    """What a call is about, and so which workflow name a rule's pattern is matched against."""

    NONE = "none"  # no one workflow (lists, workers, purges by filter): only rules for "*" apply
    NEW = "new"  # a new instance: the name the call gives
    INSTANCE = "instance"  # an existing instance: the name it was started with


@dataclass(frozen=True)
class Call:
    """One row of the table: the operation a call is, and what it is about.

    `operation` None: any caller that passed the token check may make the call (it reads or
    changes nothing, as `Hello`).
    """

    operation: str | None
    target: Target = Target.NONE


_WORKER = Call("worker")

# gRPC methods of `TaskHubSidecarService`, both dialects (a name only one dialect has appears once).
# A method missing here needs an operation "*" under a policy.
GRPC_OPERATIONS: Mapping[str, Call] = {
    "Hello": Call(None),
    "CreateTaskHub": Call(None),
    "DeleteTaskHub": Call(None),
    "StartInstance": Call("schedule", Target.NEW),
    "GetInstance": Call("get", Target.INSTANCE),
    "WaitForInstanceStart": Call("get", Target.INSTANCE),
    "WaitForInstanceCompletion": Call("get", Target.INSTANCE),
    "RaiseEvent": Call("raise", Target.INSTANCE),
    "SuspendInstance": Call("pause", Target.INSTANCE),
    "ResumeInstance": Call("resume", Target.INSTANCE),
    "TerminateInstance": Call("terminate", Target.INSTANCE),
    "SkipGracefulOrchestrationTerminations": Call("terminate"),
    "PurgeInstances": Call("purge", Target.INSTANCE),
    "RerunWorkflowFromEvent": Call("rerun", Target.INSTANCE),
    "RestartInstance": Call("rerun", Target.INSTANCE),
    "RewindInstance": Call("rerun", Target.INSTANCE),
    "ListInstanceIDs": Call("list"),
    "ListInstanceIds": Call("list"),
    "QueryInstances": Call("list"),
    "GetInstanceHistory": Call("history", Target.INSTANCE),
    "StreamInstanceHistory": Call("history", Target.INSTANCE),
    "GetWorkItems": _WORKER,
    "CompleteActivityTask": _WORKER,
    "CompleteOrchestratorTask": _WORKER,
    "CompleteWorkflowTask": _WORKER,
    "AbandonTaskActivityWorkItem": _WORKER,
    "AbandonTaskOrchestratorWorkItem": _WORKER,
    "AbandonTaskEntityWorkItem": _WORKER,
    "CompleteEntityTask": _WORKER,
    # Durable entities are no workflows: only rules that allow every operation ("*") cover them.
    "SignalEntity": Call(ALL),
    "GetEntity": Call(ALL),
    "QueryEntities": Call(ALL),
    "CleanEntityStorage": Call(ALL),
}

# HTTP routes, by method and aiohttp path template; `{version}` is v1.0 or one of its aliases.
# A route missing here (routes added later) needs an operation "*" under a policy.
_W = "/{version}/workflows/{component}"
HTTP_OPERATIONS: Mapping[tuple[str, str], Call] = {
    ("GET", OPENAPI_PATH): Call(None),
    # Counts by workflow and activity name: any caller that passed the token check.
    ("GET", METRICS_PATH): Call(None),
    ("POST", _W + "/{workflowName}/start"): Call("schedule", Target.NEW),
    ("GET", _W + "/{instanceID}"): Call("get", Target.INSTANCE),
    ("POST", _W + "/{instanceID}/raiseEvent/{eventName}"): Call("raise", Target.INSTANCE),
    ("POST", _W + "/{instanceID}/pause"): Call("pause", Target.INSTANCE),
    ("POST", _W + "/{instanceID}/resume"): Call("resume", Target.INSTANCE),
    ("POST", _W + "/{instanceID}/terminate"): Call("terminate", Target.INSTANCE),
    ("POST", _W + "/{instanceID}/purge"): Call("purge", Target.INSTANCE),
    ("DELETE", _W + "/{instanceID}"): Call("purge", Target.INSTANCE),
    # The management routes beside them.
    ("GET", _W): Call("list"),
    ("POST", _W + "/purge"): Call("purge"),
    ("POST", _W + "/terminate"): Call("terminate"),
    ("GET", _W + "/{instanceID}/history"): Call("history", Target.INSTANCE),
    ("POST", _W + "/{instanceID}/rerun"): Call("rerun", Target.INSTANCE),
}
UNLISTED = Call(ALL)


class PolicyFileError(ValueError):
    """The policy file cannot be used; the message names the key."""


@dataclass(frozen=True)
class Identity:
    """Who a caller is: the name of the token it presented and its client certificate's subject."""

    token: str | None = None
    subject: str | None = None

    def describe(self) -> str:
        parts = []
        if self.token is not None:
            parts.append(f"token {self.token!r}")
        if self.subject is not None:
            parts.append(f"certificate subject {self.subject!r}")
        return " with ".join(parts) or "a caller with neither token nor client certificate"


@dataclass(frozen=True)
class Caller:
    token: str | None = None
    subject: str | None = None

    def matches(self, who: Identity) -> bool:
        return (self.token is not None and self.token == who.token) or (
            self.subject is not None and self.subject == who.subject
        )


@dataclass(frozen=True)
class Grant:
    pattern: str
    operations: frozenset[str]

    def allows(self, operation: str, workflow: str | None) -> bool:
        if operation not in self.operations and ALL not in self.operations:
            return False
        if self.pattern == ALL:
            return True
        return workflow is not None and fnmatch.fnmatchcase(workflow, self.pattern)


@dataclass(frozen=True)
class Rule:
    label: str
    callers: tuple[Caller, ...]
    grants: tuple[Grant, ...]


@dataclass(frozen=True)
class NamedToken:
    name: str
    value: str


@dataclass(frozen=True)
class AccessPolicy:
    name: str
    rules: tuple[Rule, ...]
    tokens: tuple[NamedToken, ...] = ()

    @property
    def uses_subjects(self) -> bool:
        return any(c.subject is not None for r in self.rules for c in r.callers)

    def decide(self, who: Identity, operation: str, workflow: str | None) -> None:
        """Returns when a rule allows `who` the operation on `workflow`; raises PERMISSION_DENIED."""
        mine = [r for r in self.rules if any(c.matches(who) for c in r.callers)]
        for rule in mine:
            if any(g.allows(operation, workflow) for g in rule.grants):
                return
        what = f"{operation} on workflow {workflow!r}" if workflow else operation
        if not mine:
            reason = f"no rule of access policy {self.name!r} names {who.describe()}"
        else:
            labels = ", ".join(r.label for r in mine)
            verb = "does" if len(mine) == 1 else "do"
            reason = f"{labels} of access policy {self.name!r} for {who.describe()} {verb} not allow it"
        raise WorkflowError(ErrorCode.PERMISSION_DENIED, f"{what} is not allowed: {reason}")


# ------------------------------------------------------------------------------ the file


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyFileError(f"{where} must be a mapping")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise PolicyFileError(f"{where} must be a non-empty list")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyFileError(f"{where} must be a non-empty string")
    return value.strip()


def _only(entry: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    for key in entry:
        if key not in keys:
            raise PolicyFileError(f"{where}: unknown key {key!r} (known: {', '.join(keys)})")


def _caller(entry: Any, where: str) -> Caller:
    entry = _mapping(entry, where)
    if "appID" in entry:
        raise PolicyFileError(
            f"{where}: appID cannot be checked by dapr-workflows (apps reach it directly, not "
            "through daprd); name the caller by token or certificateSubject"
        )
    _only(entry, ("token", "certificateSubject"), where)
    token = _text(entry["token"], f"{where}.token") if "token" in entry else None
    subject = (
        _text(entry["certificateSubject"], f"{where}.certificateSubject")
        if "certificateSubject" in entry
        else None
    )
    if token is None and subject is None:
        raise PolicyFileError(f"{where} needs token or certificateSubject")
    return Caller(token, subject)


def _operation(value: Any, where: str) -> str:
    name = _text(value, where)
    name = ALIASES.get(name, name)
    if name != ALL and name not in OPERATIONS:
        raise PolicyFileError(
            f"{where}: unknown operation {value!r} (known: {', '.join(OPERATIONS)}, or {ALL!r} for all)"
        )
    return name


def _grant(entry: Any, where: str) -> Grant:
    entry = _mapping(entry, where)
    if "requires" in entry:
        raise PolicyFileError(f"{where}.requires is not supported by dapr-workflows")
    _only(entry, ("name", "operations"), where)
    pattern = _text(entry.get("name"), f"{where}.name")
    ops = _list(entry.get("operations"), f"{where}.operations")
    return Grant(pattern, frozenset(_operation(op, f"{where}.operations[{i}]") for i, op in enumerate(ops)))


def _rule(entry: Any, index: int) -> Rule:
    where = f"spec.rules[{index}]"
    entry = _mapping(entry, where)
    if "activities" in entry:
        raise PolicyFileError(
            f"{where}.activities is not supported: workers' access is the operation 'worker' of a "
            "workflows entry named '*'"
        )
    _only(entry, ("name", "callers", "workflows"), where)
    label = f"rule {_text(entry['name'], where + '.name')!r}" if "name" in entry else f"rule {index + 1}"
    callers = _list(entry.get("callers"), f"{where}.callers")
    grants = _list(entry.get("workflows"), f"{where}.workflows")
    return Rule(
        label,
        tuple(_caller(c, f"{where}.callers[{i}]") for i, c in enumerate(callers)),
        tuple(_grant(g, f"{where}.workflows[{i}]") for i, g in enumerate(grants)),
    )


def _token(entry: Any, index: int, base: Path) -> NamedToken:
    where = f"spec.tokens[{index}]"
    entry = _mapping(entry, where)
    _only(entry, ("name", "file", "env"), where)
    name = _text(entry.get("name"), f"{where}.name")
    if ("file" in entry) == ("env" in entry):
        raise PolicyFileError(f"{where} needs exactly one of file (a file holding the token) or env")
    if "file" in entry:
        path = base / _text(entry["file"], f"{where}.file")
        try:
            value = path.read_text().strip()
        except OSError as err:
            raise PolicyFileError(f"{where}.file: cannot read {str(path)!r}: {err.strerror}") from None
    else:
        variable = _text(entry["env"], f"{where}.env")
        value = os.environ.get(variable, "").strip()
        if not value:
            raise PolicyFileError(f"{where}.env: the environment variable {variable} is not set")
    if not value:
        raise PolicyFileError(f"{where}: the token of {name!r} is empty")
    return NamedToken(name, value)


def load_policy(path: str) -> AccessPolicy:
    """Reads and checks a policy file; token files are found relative to it."""
    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text())
    except OSError as err:
        raise PolicyFileError(f"cannot read {path!r}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise PolicyFileError(f"{path!r} is not valid YAML: {err}") from None
    doc = _mapping(doc, "the file")
    _only(doc, ("apiVersion", "kind", "metadata", "scopes", "spec"), "the file")
    if doc.get("kind", "WorkflowAccessPolicy") != "WorkflowAccessPolicy":
        raise PolicyFileError(f"kind must be WorkflowAccessPolicy, not {doc.get('kind')!r}")
    metadata = _mapping(doc.get("metadata", {}), "metadata")
    name = str(metadata.get("name") or file.name)
    spec = _mapping(doc.get("spec"), "spec")
    _only(spec, ("rules", "tokens"), "spec")
    rules = tuple(_rule(r, i) for i, r in enumerate(_list(spec.get("rules"), "spec.rules")))
    tokens = tuple(_token(t, i, file.parent) for i, t in enumerate(spec.get("tokens") or []))
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise PolicyFileError("spec.tokens: each token needs a name of its own")
    known = {*names, DEFAULT_TOKEN_NAME}
    for rule in rules:
        for caller in rule.callers:
            if caller.token is not None and caller.token not in known:
                raise PolicyFileError(
                    f"{rule.label} names token {caller.token!r}, which spec.tokens does not define "
                    f"(the --api-token is named {DEFAULT_TOKEN_NAME!r})"
                )
    return AccessPolicy(name, rules, tokens)


# The name by which rules refer to the --api-token (or DAPR_API_TOKEN).
DEFAULT_TOKEN_NAME = "default"
