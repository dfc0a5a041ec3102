"""Triggers without daprd: the instance-ID derivation, the declaration checks, events to starts.

`tests/test_triggers.py` runs the triggers with a real daprd and real brokers.
"""

from __future__ import annotations

import base64
import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dapr_workflows_component.triggers import (
    Event,
    IdKind,
    IdRule,
    InputKind,
    InputRule,
    Malformed,
    Source,
    Trigger,
    TriggerFileError,
    derive_instance_id,
    load_triggers,
    parse_triggers,
    start_request,
    subscriptions,
)
from dapr_workflows_component.workflows import validate_new_instance_id

REPO = Path(__file__).resolve().parents[1]
HASHED = re.compile(r"^[A-Za-z0-9_-]+_[0-9a-f]{16}$")

# ------------------------------------------------------------------------------ instance IDs


def test_clean_parts_are_the_id_as_they_are() -> None:
    assert derive_instance_id(["orderservice", "5f1e-42"]) == "orderservice_5f1e-42"
    assert derive_instance_id(["orders", "7"], prefix="ev-") == "ev-orders_7"


def test_replaced_characters_add_a_hash_of_the_raw_value() -> None:
    derived = derive_instance_id(["https://example.com/orders", "id 1"])
    assert derived.startswith("https---example-com-orders_id-1_")
    assert HASHED.fullmatch(derived)
    validate_new_instance_id(derived)
    # Deterministic: the same event always gives the same ID.
    assert derive_instance_id(["https://example.com/orders", "id 1"]) == derived


def test_values_that_differ_only_in_replaced_characters_get_different_ids() -> None:
    ids = {
        derive_instance_id(["src", "a.b"]),
        derive_instance_id(["src", "a:b"]),
        derive_instance_id(["src", "a-b"]),  # clean: no hash
        derive_instance_id(["src", "a_b"]),  # '_' joins the parts, so it is replaced in a part
        derive_instance_id(["src.", "a"]),
        derive_instance_id(["src", ".a"]),
    }
    assert len(ids) == 6
    assert derive_instance_id(["src", "a-b"]) == "src_a-b"


def test_part_boundaries_are_unambiguous() -> None:
    assert derive_instance_id(["a-b", "c"]) != derive_instance_id(["a", "b-c"])
    assert derive_instance_id(["a_b", "c"]) != derive_instance_id(["a", "b_c"])


def test_long_values_are_shortened_to_the_limit() -> None:
    long_a = derive_instance_id(["s", "x" * 300])
    long_b = derive_instance_id(["s", "x" * 301])
    assert len(long_a) == len(long_b) == 256
    assert long_a != long_b
    assert HASHED.fullmatch(long_a)
    assert derive_instance_id(["s", "x" * 254]) == "s_" + "x" * 254  # exactly 256: as it is


def test_every_derived_id_is_valid() -> None:
    rng = random.Random(8)
    alphabet = "aZ09-_ .:/é\u0000\u2603"
    for _ in range(500):
        parts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(2)]
        derived = derive_instance_id(parts, prefix=rng.choice(["", "p-", "x_"]))
        validate_new_instance_id(derived)


# ------------------------------------------------------------------------------ declarations


def parse(*triggers: dict[str, Any]) -> list[Trigger]:
    return parse_triggers({"triggers": list(triggers)}, "t.yaml")


def refused(*triggers: dict[str, Any]) -> str:
    with pytest.raises(TriggerFileError) as info:
        parse(*triggers)
    return str(info.value)


PUBSUB = {"name": "orders", "pubsub": "ps", "topic": "orders", "workflow": "W"}
BINDING = {"name": "nightly", "binding": "cron", "workflow": "W"}


def test_defaults() -> None:
    pubsub, binding = parse(PUBSUB, BINDING)
    assert pubsub == Trigger(
        name="orders",
        workflow="W",
        source=Source.PUBSUB,
        pubsub="ps",
        topic="orders",
        instance_id=IdRule(IdKind.CLOUDEVENT),
        input=InputRule(InputKind.DATA),
    )
    assert pubsub.route == "/dapr-workflows/triggers/orders"
    assert binding.source is Source.BINDING
    assert binding.instance_id == IdRule(IdKind.EVENT)
    assert binding.input == InputRule(InputKind.DATA)


def test_every_form() -> None:
    triggers = parse(
        {**PUBSUB, "instanceID": {"field": "order.id", "prefix": "o-"}, "input": {"field": "order"}},
        {**PUBSUB, "name": "b", "topic": "t2", "instanceID": "random", "input": "cloudevent"},
        {**PUBSUB, "name": "c", "topic": "t3", "instanceID": "cloudevent", "deadLetterTopic": "dead"},
        {**BINDING, "instanceID": {"metadata": "readTimeUTC"}, "input": "data"},
        {**BINDING, "name": "q", "binding": "queue", "instanceID": {"field": "jobId"}},
    )
    assert triggers[0].instance_id == IdRule(IdKind.FIELD, "order.id", "o-")
    assert triggers[0].input == InputRule(InputKind.FIELD, "order")
    assert triggers[1].instance_id.kind is IdKind.RANDOM
    assert triggers[1].input.kind is InputKind.CLOUDEVENT
    assert triggers[2].dead_letter_topic == "dead"
    assert triggers[3].instance_id == IdRule(IdKind.METADATA, "readTimeUTC")
    assert triggers[4].instance_id == IdRule(IdKind.FIELD, "jobId")


@pytest.mark.parametrize(
    ("trigger", "fragments"),
    [
        (
            {**PUBSUB, "instanceId": "cloudevent"},
            ["trigger 'orders'", "'instanceId'", "did you mean 'instanceID'"],
        ),
        ({**PUBSUB, "colour": "red"}, ["unknown key 'colour'", "the keys are"]),
        ({k: v for k, v in PUBSUB.items() if k != "workflow"}, ["trigger 'orders'", "'workflow' is missing"]),
        ({**PUBSUB, "binding": "b"}, ["either 'pubsub'", "not both"]),
        ({"name": "x", "workflow": "W"}, ["trigger 'x'", "give 'pubsub'"]),
        ({k: v for k, v in PUBSUB.items() if k != "topic"}, ["'topic' is missing"]),
        ({**BINDING, "topic": "t"}, ["trigger 'nightly'", "'topic' is for pub/sub"]),
        ({**BINDING, "deadLetterTopic": "d"}, ["'deadLetterTopic' is for pub/sub"]),
        ({**PUBSUB, "deadLetterTopic": "orders"}, ["must differ from 'topic'"]),
        ({**PUBSUB, "name": "bad name"}, ["'name' must use only letters"]),
        ({**PUBSUB, "topic": 123}, ["'topic' must be a non-empty string, not 123"]),
        ({**PUBSUB, "workflow": ""}, ["'workflow' must be a non-empty string"]),
        ({**PUBSUB, "instanceID": {"metadata": "k"}}, ["instanceID.metadata is for input bindings"]),
        (
            {**BINDING, "instanceID": "cloudevent"},
            ["instanceID 'cloudevent' is not one of", "{metadata: KEY}"],
        ),
        (
            {**PUBSUB, "instanceID": {"field": "a", "metadata": "b"}},
            ["exactly one of 'field' and 'metadata'"],
        ),
        ({**PUBSUB, "instanceID": {"prefix": "p-"}}, ["exactly one of 'field' and 'metadata'"]),
        ({**PUBSUB, "instanceID": {"field": "a", "prefix": "a b"}}, ["instanceID.prefix must use only"]),
        (
            {**PUBSUB, "instanceID": {"feld": "a"}},
            ["unknown key 'feld' in instanceID", "did you mean 'field'"],
        ),
        ({**PUBSUB, "instanceID": 7}, ["instanceID must be"]),
        ({**BINDING, "input": "cloudevent"}, ["input 'cloudevent' is not one of: data or {field: NAME}"]),
        ({**PUBSUB, "input": {}}, ["input must be"]),
        ({**BINDING, "binding": "a/b"}, ["'binding' must be the binding component's metadata.name"]),
        ({**BINDING, "binding": "a{b}"}, ["'binding' must be the binding component's metadata.name"]),
        ("orders", ["trigger #1", "must be a mapping"]),
        ({"pubsub": "p", "topic": "t", "workflow": "W"}, ["trigger #1", "'name' is missing"]),
    ],
)
def test_refused_declarations(trigger: Any, fragments: list[str]) -> None:
    message = refused(trigger)
    assert message.startswith("t.yaml: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_duplicates_are_refused() -> None:
    assert "the name 'orders' is taken" in refused(PUBSUB, {**PUBSUB, "topic": "other"})
    message = refused(PUBSUB, {**PUBSUB, "name": "again"})
    assert "trigger 'again'" in message and "pub/sub 'ps' topic 'orders'" in message
    assert "trigger 'orders'" in message
    assert "input binding 'cron'" in refused(BINDING, {**BINDING, "name": "other"})


def test_file_shape() -> None:
    for document, fragment in [
        ([], "must be a mapping with the key 'triggers'"),
        ({}, "the key 'triggers' (a list of triggers) is missing"),
        ({"triggers": {}}, "'triggers' must be a list"),
        ({"triggers": [], "extra": 1}, "unknown key 'extra' in the file"),
    ]:
        with pytest.raises(TriggerFileError, match=re.escape(fragment)):
            parse_triggers(document, "t.yaml")
    assert parse_triggers({"triggers": None}) == []


def test_load_yaml(tmp_path: Path) -> None:
    path = tmp_path / "triggers.yaml"
    path.write_text(
        "triggers:\n"
        "  - name: new-orders\n"
        "    pubsub: orderpubsub\n"
        "    topic: orders\n"
        "    workflow: OrderProcessingWorkflow\n"
        "    instanceID: {field: orderId}\n"
    )
    (trigger,) = load_triggers(path)
    assert trigger.instance_id == IdRule(IdKind.FIELD, "orderId")
    path.write_text("triggers: [\n")
    with pytest.raises(TriggerFileError, match="not valid YAML"):
        load_triggers(path)
    with pytest.raises(TriggerFileError, match="cannot read the triggers file"):
        load_triggers(tmp_path / "missing.yaml")


def test_a_json_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "triggers.json"
    path.write_text(json.dumps({"triggers": [PUBSUB]}))
    assert [t.name for t in load_triggers(path)] == ["orders"]


def test_the_sample_declarations_load() -> None:
    triggers = load_triggers(REPO / "samples" / "triggers" / "triggers.yaml")
    assert {t.source for t in triggers} == {Source.PUBSUB, Source.BINDING}


def test_subscriptions() -> None:
    triggers = parse(
        {**PUBSUB, "deadLetterTopic": "orders-dead"}, BINDING, {**PUBSUB, "name": "b", "topic": "t"}
    )
    assert subscriptions(triggers) == [
        {
            "pubsubname": "ps",
            "topic": "orders",
            "route": "/dapr-workflows/triggers/orders",
            "deadLetterTopic": "orders-dead",
        },
        {"pubsubname": "ps", "topic": "t", "route": "/dapr-workflows/triggers/b"},
    ]


# ------------------------------------------------------------------------------ events to starts


def cloud_event(data: Any = None, **attrs: Any) -> Event:
    ce: dict[str, Any] = {"specversion": "1.0", "id": "e-1", "source": "orders-app", "type": "t", **attrs}
    if data is not None:
        ce["data"] = data
    return Event(cloud_event=ce)


def one(**declaration: Any) -> Trigger:
    (trigger,) = parse({**PUBSUB, **declaration} if "binding" not in declaration else declaration)
    return trigger


def test_pubsub_defaults_take_the_cloud_event_id_and_the_data() -> None:
    start = start_request(one(), cloud_event({"orderId": "A-1", "n": 2}))
    assert (start.name, start.instance_id, start.dialect) == ("W", "orders-app_e-1", "dapr")
    assert json.loads(start.input or "") == {"orderId": "A-1", "n": 2}
    assert start_request(one(), cloud_event()).input is None
    text = start_request(one(), cloud_event("plain text"))
    assert json.loads(text.input or "") == "plain text"


def test_pubsub_fields() -> None:
    trigger = one(instanceID={"field": "order.id", "prefix": "o-"}, input={"field": "order"})
    start = start_request(trigger, cloud_event({"order": {"id": 17, "item": "paperclips"}}))
    assert start.instance_id == "o-17"
    assert json.loads(start.input or "") == {"id": 17, "item": "paperclips"}
    whole = start_request(one(input="cloudevent"), cloud_event({"x": 1}))
    assert json.loads(whole.input or "")["source"] == "orders-app"


def test_binary_data() -> None:
    raw = base64.b64encode(json.dumps({"orderId": "B-2"}).encode()).decode()
    start = start_request(one(instanceID={"field": "orderId"}), cloud_event(data_base64=raw))
    assert start.instance_id == "B-2"
    with pytest.raises(Malformed, match="data_base64"):
        start_request(one(), cloud_event(data_base64=base64.b64encode(b"\xff not json").decode()))


@pytest.mark.parametrize(
    ("declaration", "event", "reason"),
    [
        ({"instanceID": {"field": "orderId"}}, cloud_event({"other": 1}), "has no field 'orderId'"),
        ({"instanceID": {"field": "orderId"}}, cloud_event({"orderId": "bad id!"}), "does not make a valid"),
        ({"instanceID": {"field": "orderId"}}, cloud_event({"orderId": True}), "not a string or a whole"),
        ({"instanceID": {"field": "orderId"}}, cloud_event({"orderId": None}), "not a string or a whole"),
        ({"instanceID": {"field": "orderId"}}, cloud_event({"orderId": ""}), "is empty"),
        ({"instanceID": {"field": "orderId"}}, cloud_event({"orderId": "x" * 257}), "256"),
        ({"instanceID": {"field": "a.b"}}, cloud_event({"a": [1]}), "not a JSON object with the field 'a.b'"),
        ({"instanceID": {"field": "orderId"}}, cloud_event(["list"]), "not a JSON object"),
        ({"input": {"field": "order"}}, cloud_event({"x": 1}), "has no field 'order'"),
        ({}, Event(cloud_event={"id": "e-1"}), "source is null"),
        ({}, Event(cloud_event={"id": {"x": 1}, "source": "s"}), 'id is {"x": 1}'),
    ],
)
def test_malformed_pubsub_events(declaration: dict[str, Any], event: Event, reason: str) -> None:
    with pytest.raises(Malformed) as info:
        start_request(one(**declaration), event)
    assert reason in str(info.value)


def test_binding_events() -> None:
    cron = one(**BINDING)
    fired = Event(metadata={"Readtimeutc": "2026-01-02 03:04:05.123456789 +0000 UTC", "Timezone": "Local"})
    start = start_request(cron, fired)
    assert start.instance_id.startswith("cron_2026-01-02-03-04-05-123456789--0000-UTC_")
    assert start_request(cron, fired).instance_id == start.instance_id
    assert start.input is None
    # No time in the metadata: a new random ID each time.
    first, second = (start_request(cron, Event(body=b'{"a": 1}')) for _ in range(2))
    assert first.instance_id != second.instance_id
    assert re.fullmatch(r"[0-9a-f]{32}", first.instance_id)
    assert json.loads(first.input or "") == {"a": 1}

    keyed = one(
        binding="queue", name="q", workflow="W", instanceID={"field": "jobId"}, input={"field": "job"}
    )
    start = start_request(keyed, Event(body=b'{"jobId": "j-1", "job": {"size": 3}}'))
    assert (start.instance_id, json.loads(start.input or "")) == ("j-1", {"size": 3})
    by_header = one(binding="queue", name="q", workflow="W", instanceID={"metadata": "messageId"})
    start = start_request(by_header, Event(metadata={"MessageID": "m-1"}))
    assert start.instance_id == "queue_m-1"
    for trigger, event, reason in [
        (by_header, Event(metadata={}), "has no metadata 'messageId'"),
        (keyed, Event(body=b"not json"), "not JSON"),
        (keyed, Event(body=b""), "not a JSON object"),
        (cron, Event(body=b'{"x": NaN}'), "NaN or Infinity"),
    ]:
        with pytest.raises(Malformed, match=re.escape(reason)):
            start_request(trigger, event)


# ------------------------------------------------------------------------------ the command


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dapr_workflows_component.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_serve_refuses_a_bad_triggers_file(tmp_path: Path) -> None:
    path = tmp_path / "triggers.yaml"
    path.write_text("triggers:\n  - name: orders\n    pubsub: ps\n    workflow: W\n")
    done = serve("--triggers", str(path), "--store", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert done.returncode != 0
    assert f"dapr-workflows: --triggers: {path}: trigger 'orders': 'topic' is missing" in done.stderr
    assert not (tmp_path / "x.db").exists()  # refused before anything starts
    done = serve("--triggers", str(path), "--http-address", "", cwd=tmp_path)
    assert done.returncode != 0
    assert "--triggers needs --http-address" in done.stderr


def test_help_documents_the_flag(tmp_path: Path) -> None:
    done = serve("--help", cwd=tmp_path)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--triggers TRIGGERS" in text
    assert "env DAPR_WORKFLOWS_TRIGGERS; default: ''" in text
