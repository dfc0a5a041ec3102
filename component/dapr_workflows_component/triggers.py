"""Triggers: pub/sub messages and input-binding events that start workflows, declared in a file.

`dapr-workflows serve --triggers FILE` reads the declarations at start-up and serves, on its HTTP
listener, what daprd needs to deliver events to an app: `GET /dapr/subscribe` (a programmatic
subscription for each pub/sub trigger), `POST /dapr-workflows/triggers/<name>` (where those
messages arrive) and, for each input-binding trigger, `OPTIONS` and `POST /<binding>`. So this
process is the Dapr app of a daprd started with `--app-port` set to the HTTP port.

Each event becomes one start on the engine, with the "error if the ID exists" policy, so a
redelivered event finds its instance and is acknowledged instead of starting another. The rules
of starts (ID syntax, payload limits, error codes) are those of `workflows.py`; what this module
adds is how an event is turned into an instance ID and an input, and how the outcome is answered:

- started, or the instance exists (a duplicate): pub/sub `SUCCESS`, binding 200;
- malformed (no ID, not JSON, too large, ...): pub/sub `DROP` (daprd moves the message to the
  dead-letter topic, if the trigger has one), binding 200; a warning says why, either way;
- the engine cannot start it now: pub/sub `RETRY`, binding 500, so that it comes again.
"""

from __future__ import annotations

import base64
import difflib
import enum
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .engine import Engine
from .http_api import read_body
from .workflows import (
    MAX_INSTANCE_ID_LENGTH,
    ErrorCode,
    StartRequest,
    WorkflowError,
    check_json_depth,
    parse_json,
    validate_new_instance_id,
)

log = logging.getLogger("dapr_workflows.triggers")

ROUTE_PREFIX = "/dapr-workflows/triggers/"
SUBSCRIBE_PATH = "/dapr/subscribe"

# Hex characters of the hash appended to a derived instance ID whose text had to be changed.
HASH_LENGTH = 16
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_BINDING_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_NOT_ID_CHAR = re.compile(r"[^A-Za-z0-9-]")
MAX_PREFIX_LENGTH = 64


class TriggerFileError(ValueError):
    """The triggers file cannot be used; the message names the trigger and the key."""


class Malformed(Exception):
    """The event cannot start a workflow whatever happens later: it is dropped, never retried."""


# ------------------------------------------------------------------------------ instance IDs


def derive_instance_id(parts: Sequence[str], prefix: str = "") -> str:
    """A valid, deterministic instance ID made of `parts` (e.g. a CloudEvent's source and id).

    The parts are joined with `_`, after `prefix`. When every part is made of letters, digits and
    `-` and the result fits the length limit, that is the ID, readable as it is. Otherwise each
    other character becomes `-`, the text is shortened to fit, and `_` and a hash of the original
    parts are appended, so that values that differ only in replaced characters still get
    different IDs. The same parts always give the same ID.
    """
    cleaned = [_NOT_ID_CHAR.sub("-", part) for part in parts]
    readable = prefix + "_".join(cleaned)
    if cleaned == list(parts) and readable and len(readable) <= MAX_INSTANCE_ID_LENGTH:
        return readable
    digest = hashlib.sha256(json.dumps([prefix, *parts]).encode()).hexdigest()[:HASH_LENGTH]
    return f"{readable[: MAX_INSTANCE_ID_LENGTH - HASH_LENGTH - 1]}_{digest}"


# ------------------------------------------------------------------------------ declarations


class Source(enum.Enum):
    PUBSUB = "pubsub"
    BINDING = "binding"


class IdKind(enum.Enum):
    CLOUDEVENT = "cloudevent"  # pub/sub: the CloudEvent's source and id
    FIELD = "field"  # a field of the event's JSON data, as it is
    METADATA = "metadata"  # bindings: a metadata value of the event (an HTTP header from daprd)
    EVENT = "event"  # bindings' default: the `readTimeUTC` metadata when present, else random
    RANDOM = "random"  # a new ID for every event: no duplicate detection


class InputKind(enum.Enum):
    DATA = "data"  # the event's data
    FIELD = "field"  # one field of the event's JSON data
    CLOUDEVENT = "cloudevent"  # pub/sub: the whole CloudEvent


# The metadata of a binding event that names the moment it fired (the cron binding sets it).
EVENT_TIME_METADATA = "readTimeUTC"


@dataclass(frozen=True)
class IdRule:
    kind: IdKind
    key: str = ""  # the field path or the metadata key
    prefix: str = ""


@dataclass(frozen=True)
class InputRule:
    kind: InputKind
    key: str = ""  # the field path


@dataclass(frozen=True)
class Trigger:
    name: str
    workflow: str
    source: Source
    pubsub: str = ""
    topic: str = ""
    binding: str = ""
    instance_id: IdRule = IdRule(IdKind.CLOUDEVENT)
    input: InputRule = InputRule(InputKind.DATA)
    dead_letter_topic: str = ""

    @property
    def route(self) -> str:
        return ROUTE_PREFIX + self.name

    def describe(self) -> str:
        if self.source is Source.PUBSUB:
            return f"pub/sub {self.pubsub!r} topic {self.topic!r}"
        return f"input binding {self.binding!r}"


_TOP_KEYS = ("triggers",)
_TRIGGER_KEYS = ("name", "pubsub", "topic", "binding", "workflow", "instanceID", "input", "deadLetterTopic")
_ID_KEYS = ("field", "metadata", "prefix")
_INPUT_KEYS = ("field",)


class _Checker:
    """Reads one trigger's mapping; every error names the file, the trigger and the key."""

    def __init__(self, origin: str, where: str, raw: Mapping[str, Any]) -> None:
        self.origin = origin
        self.where = where
        self.raw = raw

    def fail(self, message: str) -> TriggerFileError:
        return TriggerFileError(f"{self.origin}: {self.where}: {message}")

    def unknown_keys(self, mapping: Mapping[str, Any], known: Sequence[str], what: str) -> None:
        for key in mapping:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the keys are {', '.join(known)}"
            raise self.fail(f"unknown key {key!r} in {what}{hint}")

    def string(self, key: str, value: Any, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key!r} must be a non-empty string, not {value!r}")
        if value != value.strip():
            raise self.fail(f"{key!r} has spaces around it: {value!r}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"{key!r} must use only letters, digits, '_' and '-', not {value!r}")
        return value

    def optional(self, key: str) -> str:
        return "" if key not in self.raw else self.string(key, self.raw[key])


def _is_id_text(prefix: str) -> bool:
    """A prefix is the start of an instance ID: empty, or held to the ID rule of workflows.py."""
    try:
        if prefix:
            validate_new_instance_id(prefix)
    except WorkflowError:
        return False
    return True


def _id_rule(check: _Checker, source: Source, value: Any) -> IdRule:
    default = IdRule(IdKind.CLOUDEVENT) if source is Source.PUBSUB else IdRule(IdKind.EVENT)
    if value is None:
        return default
    allowed = ("cloudevent", "random") if source is Source.PUBSUB else ("random",)
    forms = " or ".join(
        [*allowed, "{field: NAME}", *(["{metadata: KEY}"] if source is Source.BINDING else [])]
    )
    if isinstance(value, str):
        if value not in allowed:
            raise check.fail(f"instanceID {value!r} is not one of: {forms}")
        return IdRule(IdKind(value))
    if not isinstance(value, Mapping):
        raise check.fail(f"instanceID must be {forms}, not {value!r}")
    check.unknown_keys(value, _ID_KEYS, "instanceID")
    prefix = ""
    if "prefix" in value:
        prefix = value["prefix"]
        if not isinstance(prefix, str) or not _is_id_text(prefix) or len(prefix) > MAX_PREFIX_LENGTH:
            raise check.fail(
                f"instanceID.prefix must use only letters, digits, '_' and '-', at most "
                f"{MAX_PREFIX_LENGTH} of them, not {prefix!r}"
            )
    kinds = [k for k in ("field", "metadata") if k in value]
    if len(kinds) != 1:
        raise check.fail(f"instanceID must name exactly one of 'field' and 'metadata' ({forms})")
    kind = kinds[0]
    if kind == "metadata" and source is Source.PUBSUB:
        raise check.fail(
            "instanceID.metadata is for input bindings; a pub/sub trigger takes the ID from the "
            "CloudEvent (cloudevent) or from a field of its data ({field: NAME})"
        )
    return IdRule(IdKind(kind), check.string(f"instanceID.{kind}", value[kind]), prefix)


def _input_rule(check: _Checker, source: Source, value: Any) -> InputRule:
    if value is None:
        return InputRule(InputKind.DATA)
    allowed = ("data", "cloudevent") if source is Source.PUBSUB else ("data",)
    forms = " or ".join([*allowed, "{field: NAME}"])
    if isinstance(value, str):
        if value not in allowed:
            raise check.fail(f"input {value!r} is not one of: {forms}")
        return InputRule(InputKind(value))
    if not isinstance(value, Mapping):
        raise check.fail(f"input must be {forms}, not {value!r}")
    check.unknown_keys(value, _INPUT_KEYS, "input")
    if "field" not in value:
        raise check.fail(f"input must be {forms}")
    return InputRule(InputKind.FIELD, check.string("input.field", value["field"]))


def _trigger(origin: str, index: int, raw: Any) -> Trigger:
    where = f"trigger #{index + 1}"
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
        where = f"trigger {raw['name']!r}"
    check = _Checker(origin, where, raw if isinstance(raw, Mapping) else {})
    if not isinstance(raw, Mapping):
        raise check.fail(f"a trigger must be a mapping of keys, not {raw!r}")
    check.unknown_keys(raw, _TRIGGER_KEYS, "the trigger")
    if "name" not in raw:
        raise check.fail("'name' is missing (it names the trigger in logs and in its route)")
    name = check.string("name", raw["name"], _NAME_RE)
    if "workflow" not in raw:
        raise check.fail("'workflow' is missing: name the workflow that the events start")
    workflow = check.string("workflow", raw["workflow"])
    has_pubsub, has_binding = "pubsub" in raw, "binding" in raw
    if has_pubsub and has_binding:
        raise check.fail("give either 'pubsub' (with 'topic') or 'binding', not both")
    if not has_pubsub and not has_binding:
        raise check.fail("give 'pubsub' (with 'topic') or 'binding': where the events come from")
    if has_pubsub:
        if "topic" not in raw:
            raise check.fail("'topic' is missing: a pub/sub trigger names the topic it subscribes to")
        topic = check.string("topic", raw["topic"])
        dead_letter = check.optional("deadLetterTopic")
        if dead_letter == topic:
            raise check.fail("'deadLetterTopic' must differ from 'topic'")
        return Trigger(
            name=name,
            workflow=workflow,
            source=Source.PUBSUB,
            pubsub=check.string("pubsub", raw["pubsub"]),
            topic=topic,
            instance_id=_id_rule(check, Source.PUBSUB, raw.get("instanceID")),
            input=_input_rule(check, Source.PUBSUB, raw.get("input")),
            dead_letter_topic=dead_letter,
        )
    for key in ("topic", "deadLetterTopic"):
        if key in raw:
            raise check.fail(
                f"{key!r} is for pub/sub triggers; an input binding has no topic and no dead-letter "
                "topic (a malformed binding event is logged and acknowledged)"
            )
    binding = check.string("binding", raw["binding"])
    if not _BINDING_RE.fullmatch(binding):
        # daprd posts the events to /<name>: a component name, which is also a URL path segment.
        raise check.fail(
            f"'binding' must be the binding component's metadata.name (letters, digits, '.', '_' "
            f"and '-'), not {binding!r}"
        )
    return Trigger(
        name=name,
        workflow=workflow,
        source=Source.BINDING,
        binding=binding,
        instance_id=_id_rule(check, Source.BINDING, raw.get("instanceID")),
        input=_input_rule(check, Source.BINDING, raw.get("input")),
    )


def parse_triggers(document: Any, origin: str = "triggers file") -> list[Trigger]:
    """The triggers of a parsed file (`{"triggers": [...]}`); TriggerFileError names what is wrong."""
    if not isinstance(document, Mapping):
        raise TriggerFileError(f"{origin}: the file must be a mapping with the key 'triggers'")
    top = _Checker(origin, "top level", document)
    top.unknown_keys(document, _TOP_KEYS, "the file")
    if "triggers" not in document:
        raise TriggerFileError(f"{origin}: the key 'triggers' (a list of triggers) is missing")
    items = document["triggers"]
    if items is None:
        items = []
    if not isinstance(items, list):
        raise TriggerFileError(f"{origin}: 'triggers' must be a list, not {items!r}")
    triggers = [_trigger(origin, i, raw) for i, raw in enumerate(items)]
    names: dict[str, Trigger] = {}
    sources: dict[tuple[Source, str, str, str], Trigger] = {}
    for t in triggers:
        other = names.setdefault(t.name, t)
        if other is not t:
            raise TriggerFileError(
                f"{origin}: trigger #{triggers.index(t) + 1}: the name {t.name!r} is taken"
            )
        other = sources.setdefault((t.source, t.pubsub, t.topic, t.binding), t)
        if other is not t:
            # One route per binding, and one subscription per topic: each event starts one workflow.
            raise TriggerFileError(
                f"{origin}: trigger {t.name!r}: {t.describe()} already starts workflows for trigger "
                f"{other.name!r}; one trigger per topic or binding"
            )
    return triggers


def load_triggers(path: str | Path) -> list[Trigger]:
    """Reads and checks a triggers file (YAML; JSON is YAML too)."""
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TriggerFileError(f"{origin}: cannot read the triggers file: {err}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise TriggerFileError(f"{origin}: not valid YAML: {err}") from None
    return parse_triggers(document, origin)


# ------------------------------------------------------------------------------ events


@dataclass
class Event:
    """One delivery: a CloudEvent (pub/sub), or a binding event's body and metadata."""

    cloud_event: dict[str, Any] | None = None
    body: bytes = b""
    metadata: Mapping[str, str] | None = None

    def describe(self) -> str:
        if self.cloud_event is not None:
            return f"event {self.cloud_event.get('id')!r} from {self.cloud_event.get('source')!r}"
        return "event"


_MISSING = object()


def _field(value: Any, path: str, what: str) -> Any:
    """`a.b.c` in the event's JSON data."""
    for step in path.split("."):
        if not isinstance(value, dict):
            raise Malformed(f"the {what} is not a JSON object with the field {path!r}")
        value = value.get(step, _MISSING)
        if value is _MISSING:
            raise Malformed(f"the {what} has no field {path!r}")
    return value


def _data(event: Event) -> Any:
    """The event's data as a JSON value (None when it has none)."""
    if event.cloud_event is not None:
        ce = event.cloud_event
        if "data" in ce:
            return ce["data"]
        if "data_base64" in ce:
            try:
                raw = base64.b64decode(str(ce["data_base64"]), validate=True)
                return parse_json("CloudEvent's data_base64", raw) if raw else None
            except (ValueError, WorkflowError):
                raise Malformed("the CloudEvent's data_base64 is not base64 of a JSON value") from None
        return None
    if not event.body.strip():
        return None
    try:
        check_json_depth("event's data", event.body)
        return json.loads(event.body)
    except WorkflowError as err:
        raise Malformed(err.message) from None
    except (ValueError, RecursionError):
        raise Malformed("the event's data is not JSON") from None


def _id_value(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Malformed(f"the {what} is {json.dumps(value)}, not a string or a whole number")
    text = str(value)
    if not text:
        raise Malformed(f"the {what} is empty")
    return text


def _header(metadata: Mapping[str, str], key: str) -> str | None:
    for name, value in metadata.items():
        if name.lower() == key.lower():
            return value
    return None


def instance_id_of(trigger: Trigger, event: Event) -> str:
    rule = trigger.instance_id
    if rule.kind is IdKind.RANDOM:
        return rule.prefix + uuid.uuid4().hex
    if rule.kind is IdKind.CLOUDEVENT:
        ce = event.cloud_event or {}
        source = _id_value(ce.get("source"), "CloudEvent's source")
        event_id = _id_value(ce.get("id"), "CloudEvent's id")
        return derive_instance_id([source, event_id], rule.prefix)
    if rule.kind is IdKind.FIELD:
        value = _id_value(_field(_data(event), rule.key, "event's data"), f"field {rule.key!r}")
        instance_id = rule.prefix + value
        try:
            validate_new_instance_id(instance_id)
        except WorkflowError as err:
            raise Malformed(
                f"the field {rule.key!r} does not make a valid instance ID: {err.message}"
            ) from None
        return instance_id
    key = rule.key if rule.kind is IdKind.METADATA else EVENT_TIME_METADATA
    header = _header(event.metadata or {}, key)
    if not header:
        if rule.kind is IdKind.EVENT:
            return rule.prefix + uuid.uuid4().hex
        raise Malformed(f"the event has no metadata {key!r}")
    return derive_instance_id([trigger.binding, header], rule.prefix)


def input_of(trigger: Trigger, event: Event) -> str | None:
    rule = trigger.input
    if rule.kind is InputKind.CLOUDEVENT:
        value = event.cloud_event
    elif rule.kind is InputKind.FIELD:
        value = _field(_data(event), rule.key, "event's data")
    else:
        value = _data(event)
    if value is None:
        return None
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        raise Malformed("the event's data holds NaN or Infinity, which JSON does not allow") from None


def start_request(trigger: Trigger, event: Event) -> StartRequest:
    """The start an event asks for; Malformed when the event cannot give one."""
    return StartRequest(
        name=trigger.workflow,
        instance_id=instance_id_of(trigger, event),
        input=input_of(trigger, event),
        dialect="dapr",
    )


# ------------------------------------------------------------------------------ HTTP routes


class Outcome(enum.Enum):
    STARTED = "started"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    FAILED = "failed"  # transient: the event is to be delivered again


# The codes of a start that no redelivery can change: the event itself is at fault.
_MALFORMED_CODES = frozenset({ErrorCode.INVALID_ARGUMENT, ErrorCode.RESOURCE_EXHAUSTED})


def subscriptions(triggers: Sequence[Trigger]) -> list[dict[str, Any]]:
    """daprd's programmatic subscriptions (`GET /dapr/subscribe`) for the pub/sub triggers."""
    out: list[dict[str, Any]] = []
    for t in triggers:
        if t.source is not Source.PUBSUB:
            continue
        item: dict[str, Any] = {"pubsubname": t.pubsub, "topic": t.topic, "route": t.route}
        if t.dead_letter_topic:
            item["deadLetterTopic"] = t.dead_letter_topic
        out.append(item)
    return out


class TriggerRoutes:
    """The routes daprd delivers the triggers' events to."""

    def __init__(self, engine: Engine, triggers: Sequence[Trigger], max_body_bytes: int) -> None:
        self.engine = engine
        self.triggers = list(triggers)
        self.max_body_bytes = max_body_bytes
        self._subscriptions = subscriptions(self.triggers)

    def routes(self) -> list[web.RouteDef]:
        defs = [web.get(SUBSCRIBE_PATH, self._subscribe, allow_head=False)]
        for t in self.triggers:
            handler = self._pubsub_handler(t) if t.source is Source.PUBSUB else self._binding_handler(t)
            paths = [t.route] if t.source is Source.PUBSUB else [t.route, "/" + t.binding]
            for path in paths:
                defs.append(web.post(path, handler))
                if t.source is Source.BINDING:
                    # daprd asks with OPTIONS whether the app takes the binding's events.
                    defs.append(web.route("OPTIONS", path, _options))
        return defs

    async def _subscribe(self, request: web.Request) -> web.Response:
        return web.json_response(self._subscriptions)

    def _pubsub_handler(self, trigger: Trigger) -> Any:
        async def handle(request: web.Request) -> web.Response:
            outcome, instance_id = await self._deliver(trigger, request)
            status = {
                Outcome.STARTED: "SUCCESS",
                Outcome.DUPLICATE: "SUCCESS",
                Outcome.MALFORMED: "DROP",
                Outcome.FAILED: "RETRY",
            }[outcome]
            body: dict[str, Any] = {"status": status}
            if instance_id:
                body["instanceID"] = instance_id
            return web.json_response(body)

        return handle

    def _binding_handler(self, trigger: Trigger) -> Any:
        async def handle(request: web.Request) -> web.Response:
            outcome, instance_id = await self._deliver(trigger, request)
            body: dict[str, Any] = {"outcome": outcome.value}
            if instance_id:
                body["instanceID"] = instance_id
            return web.json_response(body, status=500 if outcome is Outcome.FAILED else 200)

        return handle

    async def _event(self, trigger: Trigger, request: web.Request) -> Event:
        try:
            body = await read_body(request, self.max_body_bytes)
        except WorkflowError as err:
            raise Malformed(err.message) from None
        if trigger.source is Source.BINDING:
            return Event(body=body, metadata=dict(request.headers))
        try:
            cloud_event = parse_json("message", body)
        except WorkflowError as err:
            raise Malformed(f"the message is not a JSON CloudEvent: {err.message}") from None
        if not isinstance(cloud_event, dict):
            raise Malformed("the message is not a JSON CloudEvent (not an object)")
        return Event(cloud_event=cloud_event)

    async def _deliver(self, trigger: Trigger, request: web.Request) -> tuple[Outcome, str]:
        event = Event()
        instance_id = ""
        try:
            event = await self._event(trigger, request)
            start = start_request(trigger, event)
            instance_id = start.instance_id
            await self.engine.start_workflow(start)
        except Malformed as err:
            self._dropped(trigger, event, str(err))
            return Outcome.MALFORMED, ""
        except WorkflowError as err:
            if err.code is ErrorCode.ALREADY_EXISTS:
                await self._duplicate(trigger, event, instance_id)
                return Outcome.DUPLICATE, instance_id
            if err.code in _MALFORMED_CODES:
                self._dropped(trigger, event, err.message)
                return Outcome.MALFORMED, ""
            self._failed(trigger, event, err.message)
            return Outcome.FAILED, instance_id
        except web.HTTPException:
            raise  # the sender went away mid-request
        except Exception as err:  # the store failed: a redelivery may succeed
            log.debug("trigger %r: start failed", trigger.name, exc_info=True)
            self._failed(trigger, event, f"{type(err).__name__}: {err}")
            return Outcome.FAILED, instance_id
        log.info(
            "trigger %r: %s started workflow %r, instance %r",
            trigger.name,
            event.describe(),
            trigger.workflow,
            instance_id,
        )
        return Outcome.STARTED, instance_id

    async def _duplicate(self, trigger: Trigger, event: Event, instance_id: str) -> None:
        log.info(
            "trigger %r: duplicate %s: instance %r exists; acknowledged without a start",
            trigger.name,
            event.describe(),
            instance_id,
        )
        try:
            existing = await self.engine.get_instance(instance_id)
        except Exception:  # only for the warning below; the event is acknowledged either way
            return
        if existing is not None and existing.name != trigger.workflow:
            # Redelivering cannot help: two event sources make the same IDs.
            log.warning(
                "trigger %r: instance %r runs workflow %r, not %r: another trigger or caller uses "
                "the same instance IDs; give one of them a prefix ({field: ..., prefix: ...})",
                trigger.name,
                instance_id,
                existing.name,
                trigger.workflow,
            )

    def _dropped(self, trigger: Trigger, event: Event, reason: str) -> None:
        if trigger.source is Source.BINDING:
            fate = "acknowledged without a start (an input binding has no dead-letter path)"
        elif trigger.dead_letter_topic:
            fate = f"answered DROP: daprd moves it to the dead-letter topic {trigger.dead_letter_topic!r}"
        else:
            fate = "answered DROP: daprd discards it (the trigger declares no deadLetterTopic)"
        log.warning(
            "trigger %r: malformed %s on %s: %s; %s",
            trigger.name,
            event.describe(),
            trigger.describe(),
            reason,
            fate,
        )

    def _failed(self, trigger: Trigger, event: Event, reason: str) -> None:
        answer = "RETRY" if trigger.source is Source.PUBSUB else "500"
        log.error(
            "trigger %r: cannot start workflow %r for %s on %s now: %s; answered %s so that it "
            "is delivered again",
            trigger.name,
            trigger.workflow,
            event.describe(),
            trigger.describe(),
            reason,
            answer,
        )


async def _options(request: web.Request) -> web.Response:
    return web.Response(status=200)


def summary(triggers: Sequence[Trigger]) -> str:
    """One line per trigger, for the start-up log."""
    return "; ".join(f"{t.name!r}: {t.describe()} -> workflow {t.workflow!r}" for t in triggers)


__all__ = [
    "Event",
    "IdKind",
    "IdRule",
    "InputKind",
    "InputRule",
    "Malformed",
    "Source",
    "Trigger",
    "TriggerFileError",
    "TriggerRoutes",
    "derive_instance_id",
    "input_of",
    "instance_id_of",
    "load_triggers",
    "parse_triggers",
    "start_request",
    "subscriptions",
]
