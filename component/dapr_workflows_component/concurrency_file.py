"""The concurrency limits file (`serve --concurrency-limits FILE`), shaped like Dapr's Configuration.

Dapr 1.18 sets its workflow concurrency limits in the `spec.workflow` section of a `Configuration`
resource; this file is one (YAML, or JSON), so the section can be copied from a Dapr app's
configuration, or the whole file used as it is:

    apiVersion: dapr.io/v1alpha1
    kind: Configuration
    metadata:
      name: limits
    spec:
      workflow:
        globalMaxConcurrentWorkflowInvocations: 50    # all engines sharing the store
        globalMaxConcurrentActivityInvocations: 200
        maxConcurrentWorkflowInvocations: 20          # each engine by itself
        maxConcurrentActivityInvocations: 100
        workflowConcurrencyLimits:                    # by workflow name, all engines
          - name: OrderProcess
            maxConcurrent: 20
        activityConcurrencyLimits:                    # by activity name, all engines
          - name: SendEmail
            maxConcurrent: 5

Every key is optional; 0 is no limit. The rest of a Dapr Configuration (other `spec` sections, and
`spec.workflow.stateRetentionPolicy`, which `--retention` sets here) is not read from this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .engine.concurrency import ConcurrencyLimits

# The keys of Dapr's WorkflowSpec (pkg/config/configuration.go) this file reads, and the one it leaves.
GLOBAL_WORKFLOWS = "globalMaxConcurrentWorkflowInvocations"
GLOBAL_ACTIVITIES = "globalMaxConcurrentActivityInvocations"
ENGINE_WORKFLOWS = "maxConcurrentWorkflowInvocations"
ENGINE_ACTIVITIES = "maxConcurrentActivityInvocations"
WORKFLOW_NAMES = "workflowConcurrencyLimits"
ACTIVITY_NAMES = "activityConcurrencyLimits"
NOT_READ = ("stateRetentionPolicy",)
KEYS = (
    GLOBAL_WORKFLOWS,
    GLOBAL_ACTIVITIES,
    ENGINE_WORKFLOWS,
    ENGINE_ACTIVITIES,
    WORKFLOW_NAMES,
    ACTIVITY_NAMES,
)
# Dapr's fields are int32.
MAX_LIMIT = 2**31 - 1


class ConcurrencyFileError(ValueError):
    """The file cannot be used; the message names the key."""


def load_limits(path: str) -> ConcurrencyLimits:
    """Reads and checks a concurrency limits file."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConcurrencyFileError(f"cannot read {path!r}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConcurrencyFileError(f"{path!r} is not a text file") from None
    except yaml.YAMLError as err:
        raise ConcurrencyFileError(f"{path!r} is not valid YAML or JSON: {_yaml_problem(err)}") from None
    return parse_limits(doc)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """The parser's complaint in one line, with where it is."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        return f"{err.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(err).split())


def parse_limits(doc: Any) -> ConcurrencyLimits:
    """The limits of a parsed Configuration document."""
    if doc is None:
        raise ConcurrencyFileError("the file is empty: it needs spec.workflow (a Dapr Configuration)")
    doc = _mapping(doc, "the file")
    if doc.get("kind", "Configuration") != "Configuration":
        raise ConcurrencyFileError(f"kind must be Configuration, not {doc.get('kind')!r}")
    spec = _mapping(doc.get("spec"), "spec")
    workflow = _mapping(spec.get("workflow"), "spec.workflow")
    unknown = sorted(str(k) for k in workflow if k not in KEYS and k not in NOT_READ)
    if unknown:
        raise ConcurrencyFileError(
            f"spec.workflow.{unknown[0]} is not a concurrency setting (known: {', '.join(KEYS)})"
        )
    return ConcurrencyLimits(
        workflows=_limit(workflow.get(GLOBAL_WORKFLOWS), GLOBAL_WORKFLOWS),
        activities=_limit(workflow.get(GLOBAL_ACTIVITIES), GLOBAL_ACTIVITIES),
        engine_workflows=_limit(workflow.get(ENGINE_WORKFLOWS), ENGINE_WORKFLOWS),
        engine_activities=_limit(workflow.get(ENGINE_ACTIVITIES), ENGINE_ACTIVITIES),
        workflow_names=_named(workflow.get(WORKFLOW_NAMES), WORKFLOW_NAMES),
        activity_names=_named(workflow.get(ACTIVITY_NAMES), ACTIVITY_NAMES),
    )


def with_flags(limits: ConcurrencyLimits, workflows: int, activities: int) -> ConcurrencyLimits:
    """The limits with --max-concurrent-workflows/--max-concurrent-activities (0: not given) applied;
    a flag and the file that set one limit to two values are refused."""
    for flag, given, key, from_file in (
        ("--max-concurrent-workflows", workflows, GLOBAL_WORKFLOWS, limits.workflows),
        ("--max-concurrent-activities", activities, GLOBAL_ACTIVITIES, limits.activities),
    ):
        if given and from_file and given != from_file:
            raise ConcurrencyFileError(
                f"{flag} {given} and the file's {key} {from_file} disagree: set one of them"
            )
    return ConcurrencyLimits(
        workflows=workflows or limits.workflows,
        activities=activities or limits.activities,
        engine_workflows=limits.engine_workflows,
        engine_activities=limits.engine_activities,
        workflow_names=limits.workflow_names,
        activity_names=limits.activity_names,
    )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        found = "nothing" if value is None else f"a {type(value).__name__}"
        raise ConcurrencyFileError(f"{where} must be a mapping, not {found}")
    return value


def _limit(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConcurrencyFileError(f"{where} must be a whole number, not {value!r}")
    if value < 0 or value > MAX_LIMIT:
        raise ConcurrencyFileError(f"{where} must be from 0 (no limit) to {MAX_LIMIT}, not {value}")
    return value


def _named(value: Any, key: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ConcurrencyFileError(f"{key} must be a list of {{name, maxConcurrent}}, not {value!r}")
    limits: dict[str, int] = {}
    for i, entry in enumerate(value):
        where = f"{key}[{i}]"
        entry = _mapping(entry, where)
        extra = sorted(str(k) for k in entry if k not in ("name", "maxConcurrent"))
        if extra:
            raise ConcurrencyFileError(
                f"{where}.{extra[0]} is not known (an entry has name and maxConcurrent)"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConcurrencyFileError(f"{where}.name must be a workflow or activity name, not {name!r}")
        if name in limits:
            raise ConcurrencyFileError(f"{where}: {name!r} is limited twice in {key}")
        if entry.get("maxConcurrent") is None:
            raise ConcurrencyFileError(f"{where}.maxConcurrent is missing")
        limits[name] = _limit(entry["maxConcurrent"], f"{where}.maxConcurrent")
    return limits
