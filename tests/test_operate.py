"""Operating workflows over HTTP: the management routes (listing with filters and paging, counts,
history, rerun, bulk purge and terminate), against a real engine with a real Dapr-SDK worker.

One engine and worker serve the module; each test works on instances whose IDs start with its own
prefix, so that tests do not see each other's instances.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.harness.engine_process import EngineProcess
from tests.harness.management_http import BASE, Http
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique, wait_until


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Http]:
    workdir = tmp_path_factory.mktemp("operate")
    engine = EngineProcess(workdir).start()
    try:
        engine.wait_http()
        worker = SdkHost("dapr", engine.dapr_address, workdir / "dapr-host.log")
        try:
            yield Http(engine.http_url)
        finally:
            worker.close()
    finally:
        engine.kill()
    assert "Traceback" not in engine.log_text(), engine.log_text()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def test_filters_narrow_the_listing(http: Http) -> None:
    prefix = unique("filters")
    done = [http.start("chain", f"{prefix}-done-{n}", {"n": 1}) for n in range(3)]
    waiting = http.start("custom_status_wf", f"{prefix}-waiting")
    failed = http.start("fail_uncaught", f"{prefix}-failed", {"message": "boom"})
    parent = http.start("parent_by_name", f"{prefix}-parent", {"n": 1, "child_id": f"{prefix}-child"})
    for instance_id in [*done, parent]:
        http.wait_status(instance_id, "COMPLETED")
    http.wait_status(failed, "FAILED")
    wait_until(
        lambda: http.get(waiting),
        lambda s: s is not None and "dapr.workflow.custom_status" in s["properties"],
    )
    everything = {*done, waiting, failed, parent, f"{prefix}-child"}

    assert set(http.ids(("idPrefix", prefix))) == everything
    assert set(http.ids(("idPrefix", prefix), ("status", "COMPLETED"))) == {*done, parent, f"{prefix}-child"}
    # Several statuses: repeated and comma-separated alike.
    assert set(http.ids(("idPrefix", prefix), ("status", "FAILED"), ("status", "RUNNING"))) == {
        failed,
        waiting,
    }
    assert set(http.ids(("idPrefix", prefix), ("status", "FAILED,RUNNING"))) == {failed, waiting}
    assert set(http.ids(("idPrefix", prefix), ("name", "chain"))) == {*done, f"{prefix}-child"}
    assert http.ids(("idPrefix", prefix), ("customStatus", "wait")) == [waiting]
    assert http.ids(("parentInstanceID", parent)) == [f"{prefix}-child"]
    listed = http.listing(("parentInstanceID", parent))["instances"][0]
    assert listed["parentInstanceID"] == parent and listed["workflowName"] == "chain"
    assert listed["properties"]["dapr.workflow.output"] == "1"

    created = {i: http.get(i)["createdAt"] for i in everything}  # type: ignore[index]
    middle = sorted(created.values())[3]
    older = {i for i, at in created.items() if at < middle}
    assert set(http.ids(("idPrefix", prefix), ("createdTo", middle))) == older
    assert set(http.ids(("idPrefix", prefix), ("createdFrom", middle))) == everything - older
    future = rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))
    assert http.ids(("idPrefix", prefix), ("updatedFrom", future)) == []
    assert set(http.ids(("idPrefix", prefix), ("updatedTo", future))) == everything

    counts = http.listing(("idPrefix", prefix), ("countsOnly", "true"), ("status", "FAILED"))["counts"]
    assert counts["COMPLETED"] == 5 and counts["FAILED"] == 1 and counts["RUNNING"] == 1
    assert counts["TERMINATED"] == 0 and set(counts) >= {
        "PENDING",
        "SUSPENDED",
        "CANCELED",
        "CONTINUED_AS_NEW",
    }


def test_pages_follow_each_other_newest_or_oldest_first(http: Http) -> None:
    prefix = unique("paging")
    started = [http.start("chain", f"{prefix}-{n:02d}", {"n": 1}) for n in range(7)]
    for order, expected in (("newest", started[::-1]), ("oldest", started)):
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            query = [("idPrefix", prefix), ("pageSize", "3"), ("order", order)]
            page = http.listing(*query, *([("continuationToken", token)] if token else []))
            seen += [i["instanceID"] for i in page["instances"]]
            pages += 1
            token = page["continuationToken"]
            if token is None:
                break
        assert seen == expected, order
        assert pages == 3
    # Newest first by default.
    assert http.ids(("idPrefix", prefix))[0] == started[-1]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ([("status", "SLEEPING")], "unknown runtime status"),
        ([("createdFrom", "yesterday")], "RFC 3339"),
        ([("updatedTo", "2026-01-02")], "RFC 3339"),
        ([("pageSize", "0")], "pageSize"),
        ([("pageSize", "1001")], "pageSize"),
        ([("pageSize", "ten")], "pageSize"),
        ([("continuationToken", "not-a-token")], "continuation token"),
        ([("order", "random")], "newest or oldest"),
        ([("colour", "blue")], "unknown query parameter"),
        ([("name", "a"), ("name", "b")], "given 2 times"),
        ([("countsOnly", "perhaps")], "countsOnly"),
    ],
)
def test_a_bad_filter_is_a_400_with_one_sentence(
    http: Http, query: list[tuple[str, str]], fragment: str
) -> None:
    status, answer = http.call("GET", BASE, query=query)
    assert status == 400, answer
    assert answer["errorCode"] == "ERR_INVALID_REQUEST"
    assert fragment in answer["message"] and "\n" not in answer["message"]


def test_history_lists_the_events_with_their_links(http: Http) -> None:
    instance_id = http.start("chain", unique("history"), {"n": 2})
    http.wait_status(instance_id, "COMPLETED")
    answer = http.ok("GET", f"{BASE}/{instance_id}/history")
    assert answer["instanceID"] == instance_id
    events = answer["events"]
    kinds = [e["type"] for e in events]
    assert kinds[0] in ("workflowStarted", "executionStarted") and "executionStarted" in kinds
    assert kinds[-1] == "executionCompleted"
    started = next(e for e in events if e["type"] == "executionStarted")
    assert started["name"] == "chain" and json.loads(started["details"]["input"]) == {"n": 2}
    scheduled = [e for e in events if e["type"] == "taskScheduled"]
    completed = [e for e in events if e["type"] == "taskCompleted"]
    assert [e["name"] for e in scheduled] == ["add_one", "add_one"]
    assert [c["taskScheduledID"] for c in completed] == [s["eventID"] for s in scheduled]
    assert all(e["taskScheduledID"] is None for e in scheduled)
    times = [e["timestamp"] for e in events]
    assert all(t.endswith("Z") for t in times)

    status, missing = http.call("GET", f"{BASE}/no-such-instance/history")
    assert status == 404 and missing["errorCode"] == "ERR_INSTANCE_NOT_FOUND"


def test_rerun_from_an_event_with_a_new_id_and_input(http: Http) -> None:
    source = http.start("chain", unique("rerun"), {"n": 2})
    http.wait_status(source, "COMPLETED")
    events = http.ok("GET", f"{BASE}/{source}/history")["events"]
    second = [e for e in events if e["type"] == "taskScheduled"][1]
    target = unique("rerun-new")
    body = {"fromEventID": second["eventID"], "newInstanceID": target, "input": 40}
    status, answer = http.call("POST", f"{BASE}/{source}/rerun", body)
    assert (status, answer) == (202, {"instanceID": target})
    rerun = http.wait_status(target, "COMPLETED")
    assert rerun["properties"]["dapr.workflow.output"] == "41"  # the second step ran again on 40

    running = http.start("custom_status_wf", unique("rerun-running"))
    status, answer = http.call("POST", f"{BASE}/{running}/rerun", {"fromEventID": 0})
    assert status == 400 and "finished" in answer["message"]
    status, answer = http.call("POST", f"{BASE}/no-such-instance/rerun", {"fromEventID": 0})
    assert status == 404
    status, answer = http.call("POST", f"{BASE}/{source}/rerun", {"fromEventID": "first"})
    assert status == 400 and "fromEventID" in answer["message"]


def test_bulk_terminate_and_purge_count_cap_and_dry_run(http: Http) -> None:
    prefix = unique("bulk")
    waiting = [http.start("wait_events", f"{prefix}-{n}", {"names": ["never"]}) for n in range(5)]
    for instance_id in waiting:
        http.wait_status(instance_id, "RUNNING")
    scope = {"idPrefix": prefix}

    dry = http.ok("POST", f"{BASE}/terminate", {"filter": scope, "dryRun": True, "limit": 2})
    assert dry == {"matched": 5, "affected": 0, "dryRun": True, "more": True}
    assert http.listing(("idPrefix", prefix), ("countsOnly", "true"))["counts"]["RUNNING"] == 5

    first = http.ok("POST", f"{BASE}/terminate", {"filter": scope, "limit": 2, "output": "enough"})
    assert first == {"matched": 5, "affected": 2, "dryRun": False, "more": True}
    rest = http.ok("POST", f"{BASE}/terminate", {"filter": scope})
    assert rest == {"matched": 3, "affected": 3, "dryRun": False, "more": False}
    terminated = http.get(waiting[0])
    assert terminated is not None and terminated["runtimeStatus"] == "TERMINATED"
    assert terminated["properties"]["dapr.workflow.output"] == '"enough"'

    # A purge only touches finished instances, unless forced.
    alive = http.start("wait_events", f"{prefix}-alive", {"names": ["never"]})
    http.wait_status(alive, "RUNNING")
    dry = http.ok("POST", f"{BASE}/purge", {"filter": scope, "dryRun": True})
    assert dry == {"matched": 5, "affected": 0, "dryRun": True, "more": False}
    none_running = http.ok("POST", f"{BASE}/purge", {"filter": {**scope, "status": ["RUNNING"]}})
    assert none_running["matched"] == 0
    purged = http.ok("POST", f"{BASE}/purge", {"filter": {**scope, "status": "TERMINATED"}, "limit": 4})
    assert purged == {"matched": 5, "affected": 4, "dryRun": False, "more": True}
    assert http.ids(("idPrefix", prefix)) == [alive, waiting[4]]  # the oldest went first
    forced = http.ok("POST", f"{BASE}/purge", {"filter": scope, "force": True})
    assert forced == {"matched": 2, "affected": 2, "dryRun": False, "more": False}
    assert http.ids(("idPrefix", prefix)) == []


@pytest.mark.parametrize(
    ("route", "body", "fragment"),
    [
        ("purge", b"not json", "not valid JSON"),
        ("purge", b"[" * 100_000, "not valid JSON"),
        ("purge", [], "JSON object"),
        ("purge", {"filter": {"colour": "red"}}, "unknown filter"),
        ("purge", {"limit": 10001}, "limit"),
        ("purge", {"dryRun": "yes"}, "dryRun"),
        ("terminate", {"force": True}, "unknown field"),
        ("terminate", {"filter": {"status": [1]}}, "status"),
        ("terminate", {"filter": {"createdTo": "soon"}}, "RFC 3339"),
    ],
)
def test_a_bad_bulk_body_is_a_400(http: Http, route: str, body: Any, fragment: str) -> None:
    status, answer = http.call("POST", f"{BASE}/{route}", body)
    assert status == 400, answer
    assert fragment in answer["message"]


def test_the_document_describes_the_management_routes(http: Http) -> None:
    document = http.ok("GET", "/v1.0/workflows/openapi.json")
    paths = document["paths"]
    for path, method in (
        ("/v1.0/workflows/{component}", "get"),
        ("/v1.0/workflows/{component}/purge", "post"),
        ("/v1.0/workflows/{component}/terminate", "post"),
        ("/v1.0/workflows/{component}/{instanceID}/history", "get"),
        ("/v1.0/workflows/{component}/{instanceID}/rerun", "post"),
    ):
        assert method in paths[path], path


def test_a_scheduled_start_waits_for_its_time(http: Http) -> None:
    instance_id = unique("later")
    at = rfc3339(datetime.now(timezone.utc) + timedelta(seconds=2))
    http.ok("POST", f"{BASE}/chain/start", {"n": 1}, [("instanceID", instance_id), ("startTime", at)])
    assert http.get(instance_id)["runtimeStatus"] == "PENDING"  # type: ignore[index]
    done = http.wait_status(instance_id, "COMPLETED")
    assert done["lastUpdatedAt"] >= at
    assert time.time() > datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
