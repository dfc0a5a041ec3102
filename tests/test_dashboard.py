"""The dashboard at /dashboard/, in a real headless Chromium, against a real `serve` and real Dapr workers.

One engine and one Dapr SDK host (worker and client) serve the whole module; each test uses
instance IDs of its own (`unique`). The page reads and acts only through the HTTP API, so what a
test sees in the browser is checked against the SDK's view of the same instance.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from dapr_workflows_component.dashboard import ROUTE_TEMPLATES, dashboard_routes
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.harness.browser import ChromiumUnavailable, chromium_path, launch_chromium
from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import output, start, unique, wait_done, wait_status, wait_until

STATIC = Path(__file__).resolve().parents[1] / "component/dapr_workflows_component/dashboard/static"

expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProcess, SdkHost]]:
    workdir = tmp_path_factory.mktemp("dashboard")
    engine = EngineProcess(workdir).start()
    engine.wait_http()
    try:
        host = SdkHost("dapr", engine.dapr_address, workdir / "dapr-host.log")
        try:
            yield engine, host
        finally:
            host.close()
    finally:
        engine.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        chromium_path()
    except ChromiumUnavailable as err:
        pytest.fail(str(err), pytrace=False)
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def new_page(browser: Browser, width: int = 1280, height: int = 900) -> tuple[Page, list[str]]:
    """A page in a fresh context; the list collects uncaught script errors and off-server requests."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))
    return page, problems


@pytest.fixture
def page(browser: Browser, served: tuple[EngineProcess, SdkHost]) -> Iterator[Page]:
    engine, _ = served
    page, problems = new_page(browser)
    page.on(
        "request",
        lambda r: None if r.url.startswith(engine.http_url) else problems.append(f"request to {r.url}"),
    )
    yield page
    page.context.close()
    assert problems == []


@pytest.fixture
def engine(served: tuple[EngineProcess, SdkHost]) -> EngineProcess:
    return served[0]


@pytest.fixture
def sdk(served: tuple[EngineProcess, SdkHost]) -> SdkHost:
    return served[1]


def api_get(engine: EngineProcess, path: str) -> Any:
    with urllib.request.urlopen(f"{engine.http_url}/v1.0/workflows/dapr{path}", timeout=10) as resp:
        return json.loads(resp.read())


def waiting(sdk: SdkHost, instance_id: str | None = None, names: tuple[str, ...] = ("never",)) -> str:
    instance_id = start(sdk, "wait_events", {"names": list(names)}, instance_id)
    assert sdk.call("wait_start", instance_id=instance_id)["status"] == "RUNNING"
    return instance_id


def completed(sdk: SdkHost, workflow: str, input: Any, instance_id: str | None = None) -> str:
    instance_id = start(sdk, workflow, input, instance_id)
    assert wait_done(sdk, instance_id)["status"] == "COMPLETED"
    return instance_id


def open_instance(page: Page, engine: EngineProcess, instance_id: str) -> None:
    page.goto(f"{engine.http_url}/dashboard/instances/{quote(instance_id, safe='')}")
    expect(page.locator("#instance-id")).to_have_text(instance_id)


def confirm(page: Page, action: str, button: str | None = None) -> Locator:
    """Clicks the action's button, then the dialog's confirming button; returns the dialog."""
    page.locator(f"#action-{action}").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button or action.capitalize(), exact=True).click()
    return dialog


def rows(page: Page) -> Locator:
    return page.locator("table.instances tbody tr")


# ---------------------------------------------------------------------------------------- serving


def test_the_page_and_its_deep_links_are_one_document_that_asks_nothing_of_other_servers(
    engine: EngineProcess,
) -> None:
    def fetch(path: str) -> tuple[int, str, bytes]:
        with urllib.request.urlopen(engine.http_url + path, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()

    # The templates the module names for route tables are those it routes by (without the patterns).
    routes = web.Application()
    routes.router.add_routes(dashboard_routes("dapr"))
    templates = {r.resource.canonical for r in routes.router.routes() if r.resource is not None}
    assert templates == set(ROUTE_TEMPLATES)

    status, kind, page = fetch("/dashboard/")
    assert status == 200 and kind.startswith("text/html")
    assert b'<script type="module" src="/dashboard/static/app.js">' in page
    assert fetch("/dashboard/instances/order%2F42")[2] == page
    assert fetch("/dashboard")[2] == page  # redirected to /dashboard/
    status, kind, _ = fetch("/dashboard/static/app.js")
    assert (status, kind.split(";")[0]) == (200, "text/javascript")
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch("/dashboard/static/../../http_api.py")
    assert missing.value.code == 404
    # Works offline: nothing in the assets points at another server (the SVG namespace is a name).
    for asset in STATIC.iterdir():
        text = asset.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text, asset.name


# ------------------------------------------------------------------------------------------ list


def test_the_list_shows_running_and_finished_instances_with_links(
    page: Page, engine: EngineProcess, sdk: SdkHost
) -> None:
    done = completed(sdk, "chain", {"n": 1}, unique("list-done"))
    running = waiting(sdk, unique("list-running"))
    page.goto(f"{engine.http_url}/dashboard/")
    for instance_id, status in ((done, "Completed"), (running, "Running")):
        row = page.locator(f'tr[data-instance-id="{instance_id}"]')
        expect(row.locator(".status")).to_have_text(status)
        expect(row.get_by_role("link", name=instance_id)).to_have_attribute(
            "href", f"/dashboard/instances/{instance_id}"
        )
    counts = api_get(engine, "?countsOnly=true")["counts"]
    expect(page.locator('.count[data-status="RUNNING"] strong')).to_have_text(str(counts["RUNNING"]))
    expect(page.locator('.count[data-status="COMPLETED"] strong')).to_have_text(str(counts["COMPLETED"]))
    expect(page.locator("time").first).to_have_attribute("title", re.compile(r"\d{4}"))

    page.get_by_role("link", name=done).click()
    expect(page).to_have_url(f"{engine.http_url}/dashboard/instances/{done}")
    expect(page.locator("#instance-id")).to_have_text(done)
    expect(page.get_by_role("region", name="Output")).to_contain_text("1")


def test_filters_narrow_the_list_and_live_in_the_url(page: Page, engine: EngineProcess, sdk: SdkHost) -> None:
    prefix = unique("flt")
    first = completed(sdk, "chain", {"n": 1}, f"{prefix}-a")
    second = waiting(sdk, f"{prefix}-b")
    third = start(sdk, "custom_status_wf", {}, f"{prefix}-c")
    wait_until(lambda: sdk.call("get", instance_id=third), lambda s: s is not None and s["custom_status"])
    base = f"{engine.http_url}/dashboard/"

    page.goto(f"{base}?idPrefix={prefix}")
    expect(rows(page)).to_have_count(3)
    expect(page.locator("#search")).to_have_value(prefix)

    page.locator('.count[data-status="RUNNING"]').click()
    expect(page).to_have_url(f"{base}?idPrefix={prefix}&status=RUNNING")
    expect(rows(page)).to_have_count(2)
    expect(page.locator(f'tr[data-instance-id="{first}"]')).to_have_count(0)
    page.locator('.count[data-status="RUNNING"]').click()
    expect(rows(page)).to_have_count(3)

    page.locator("#name").fill("chain")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows(page)).to_have_count(1)
    expect(page.locator(f'tr[data-instance-id="{first}"]')).to_be_visible()
    assert "name=chain" in page.url

    # A shared link opens on the same filters.
    page.goto(f"{base}?idPrefix={prefix}&customStatus=waiting")
    expect(rows(page)).to_have_count(1)
    expect(page.locator(f'tr[data-instance-id="{third}"]')).to_be_visible()

    page.get_by_role("button", name="Clear all").click()
    page.locator("#search-in").select_option("customStatus")
    page.locator("#search").fill("waiting")
    page.locator("#name").fill("custom_status_wf")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(f'tr[data-instance-id="{third}"]')).to_be_visible()
    assert "customStatus=waiting" in page.url

    before = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    page.goto(f"{base}?idPrefix={prefix}&createdTo={before}")
    expect(page.locator(".empty")).to_have_text("No instances match these filters.")
    page.goto(f"{base}?idPrefix={prefix}")
    page.locator("#created").select_option("15m")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows(page)).to_have_count(3)
    assert "created=15m" in page.url
    # A range of its own, in the browser's local time.
    local = datetime.now().astimezone()
    page.locator("#created").select_option("custom")
    page.locator("#created-from").fill((local + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.locator("#created-to").fill((local + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(".empty")).to_have_text("No instances match these filters.")
    page.locator("#created-from").fill((local - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Apply filters").click()
    expect(rows(page)).to_have_count(3)
    assert "createdFrom=" in page.url and "createdTo=" in page.url

    # Pages follow the continuation token, newest first.
    page.goto(f"{base}?idPrefix={prefix}&pageSize=1")
    seen = []
    for _ in range(3):
        expect(rows(page)).to_have_count(1)
        seen.append(rows(page).first.get_attribute("data-instance-id"))
        if len(seen) < 3:
            page.locator("#next-page").click()
            expect(rows(page).first).not_to_have_attribute("data-instance-id", seen[-1])
    assert seen == [third, second, first]
    expect(page.locator("#next-page")).to_be_disabled()
    page.locator("#previous-page").click()
    expect(rows(page).first).to_have_attribute("data-instance-id", second)


def test_auto_refresh_shows_changes_and_can_be_paused(
    page: Page, engine: EngineProcess, sdk: SdkHost
) -> None:
    prefix = unique("refresh")
    page.goto(f"{engine.http_url}/dashboard/?idPrefix={prefix}")
    expect(page.locator(".empty")).to_be_visible()
    first = waiting(sdk, f"{prefix}-a")
    expect(page.locator(f'tr[data-instance-id="{first}"]')).to_be_visible()

    toggle = page.locator("#refresh-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    later = waiting(sdk, f"{prefix}-b")
    page.wait_for_timeout(6000)  # longer than the refresh interval: a paused page must not change
    expect(page.locator(f'tr[data-instance-id="{later}"]')).to_have_count(0)
    toggle.click()
    expect(page.locator(f'tr[data-instance-id="{later}"]')).to_be_visible()


# -------------------------------------------------------------------------------- instance page


def test_the_timeline_of_a_fan_out_draws_its_activities_side_by_side(
    page: Page, engine: EngineProcess, sdk: SdkHost
) -> None:
    instance_id = completed(sdk, "fan_out", {"values": [1, 2, 3, 4, 5]}, unique("fan"))
    open_instance(page, engine, instance_id)
    expect(page.get_by_role("region", name="Output")).to_contain_text('"sum": 20')
    bars = page.locator('.tl-bar[data-kind="activity"]')
    expect(bars).to_have_count(5)
    expect(page.locator('.tl-bar[data-kind="activity"][data-outcome="completed"]')).to_have_count(5)
    boxes = [bars.nth(i).bounding_box() for i in range(5)]
    assert all(boxes)
    # Ran in parallel: every bar overlaps every other over time.
    assert max(b["x"] for b in boxes if b) < min(b["x"] + b["width"] for b in boxes if b)

    bars.first.click()
    details = page.locator(".event-details")
    expect(details).to_contain_text("taskScheduled · add_one")
    expect(details).to_contain_text("taskCompleted")
    page.get_by_text("All ", exact=False).filter(has_text="history events").click()
    page.locator('tr[data-type="executionStarted"] button').click()
    expect(details).to_contain_text("executionStarted")
    expect(details).to_contain_text('"name": "fan_out"')


def test_the_timeline_of_a_retried_activity_shows_each_attempt(
    page: Page, engine: EngineProcess, sdk: SdkHost
) -> None:
    key = unique("retry")
    instance_id = start(sdk, "retry_activity", {"key": key, "fail_times": 2, "attempts": 3}, unique("retry"))
    state = wait_done(sdk, instance_id)
    assert state["status"] == "COMPLETED" and output(state) == 3
    open_instance(page, engine, instance_id)
    attempts = page.locator('.tl-bar[data-kind="activity"][data-name="flaky"]')
    expect(attempts).to_have_count(3)
    outcomes = [attempts.nth(i).get_attribute("data-outcome") for i in range(3)]
    assert outcomes == ["failed", "failed", "completed"]
    expect(page.locator(".tl-row").filter(has_text="attempt 3")).to_have_count(1)
    # The waits of the retry policy between the attempts are drawn too.
    expect(page.locator('.tl-bar[data-kind="timer"][data-name="retry delay of flaky"]')).to_have_count(2)
    lefts = [box["x"] for box in (attempts.nth(i).bounding_box() for i in range(3)) if box]
    assert lefts == sorted(lefts) and lefts[0] < lefts[2]  # one after another


def test_a_failure_shows_its_message_and_the_parent_and_child_link_each_other(
    page: Page, engine: EngineProcess, sdk: SdkHost
) -> None:
    failing = start(sdk, "fail_uncaught", {"message": "payment declined"}, unique("failing"))
    assert wait_done(sdk, failing)["status"] == "FAILED"
    open_instance(page, engine, failing)
    failure = page.get_by_role("region", name="Failure")
    expect(failure).to_contain_text("payment declined")
    props = api_get(engine, f"/{failing}")["properties"]
    if "dapr.workflow.failure.stack_trace" in props:
        expect(failure.locator("pre.stack")).to_be_visible()

    child = unique("child")
    parent = completed(sdk, "parent_by_name", {"n": 2, "child_id": child}, unique("parent"))
    open_instance(page, engine, parent)
    children = page.get_by_role("region", name="Child workflows")
    expect(children.get_by_role("link", name=child)).to_be_visible()
    expect(page.locator('.tl-bar[data-kind="child"][data-outcome="completed"]')).to_have_count(1)
    children.get_by_role("link", name=child).click()
    expect(page.locator("#instance-id")).to_have_text(child)
    expect(page.locator("#parent").get_by_role("link", name=parent)).to_be_visible()
    # A child does not rerun on its own; its parent does.
    expect(page.locator("#action-rerun")).to_have_count(0)


# -------------------------------------------------------------------------------------- actions


def test_suspend_resume_and_raise_event(page: Page, engine: EngineProcess, sdk: SdkHost) -> None:
    instance_id = waiting(sdk, unique("act"), names=("approve",))
    open_instance(page, engine, instance_id)
    status = page.locator(".instance-head .status")
    expect(page.locator("#action-terminate")).to_be_visible()

    confirm(page, "suspend")
    expect(status).to_have_text("Suspended")
    assert wait_status(sdk, instance_id, "SUSPENDED")
    expect(page.locator("#action-suspend")).to_have_count(0)

    confirm(page, "resume")
    expect(status).to_have_text("Running")
    assert wait_status(sdk, instance_id, "RUNNING")

    page.locator("#action-raise-event").click()
    dialog = page.locator("dialog[open]")
    page.locator("#event-name").fill("approve")
    page.locator("#event-payload").fill('{"ok": tru')
    dialog.get_by_role("button", name="Raise event").click()
    expect(dialog.get_by_role("alert")).to_contain_text("The payload is not valid JSON")
    events = api_get(engine, f"/{instance_id}/history")["events"]
    assert not [e for e in events if e["type"] == "eventRaised"]  # nothing was sent
    page.locator("#event-payload").fill('{"ok": true}')
    dialog.get_by_role("button", name="Raise event").click()
    expect(page.locator("dialog")).to_have_count(0)
    state = wait_done(sdk, instance_id)
    assert state["status"] == "COMPLETED" and output(state) == [{"ok": True}]
    expect(status).to_have_text("Completed")
    expect(page.locator('.tl-bar[data-kind="event"]')).to_have_count(1)


def test_terminate_with_output_from_a_dialog_the_keyboard_can_leave(
    page: Page, engine: EngineProcess, sdk: SdkHost
) -> None:
    instance_id = waiting(sdk, unique("term"))
    open_instance(page, engine, instance_id)
    page.locator("#action-terminate").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    # Focus stays inside the modal dialog; Escape closes it and nothing happens.
    for _ in range(6):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('dialog') !== null")
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)
    assert page.evaluate("document.activeElement.id") == "action-terminate"
    assert sdk.call("get", instance_id=instance_id)["status"] == "RUNNING"

    page.locator("#action-terminate").click()
    page.locator("#terminate-output").fill('{"reason": "stopped by hand"}')
    page.locator("dialog[open]").get_by_role("button", name="Terminate").click()
    expect(page.locator(".instance-head .status")).to_have_text("Terminated")
    state = wait_status(sdk, instance_id, "TERMINATED")
    assert output(state) == {"reason": "stopped by hand"}
    expect(page.get_by_role("region", name="Output")).to_contain_text("stopped by hand")


def test_rerun_from_an_event_and_purge(page: Page, engine: EngineProcess, sdk: SdkHost) -> None:
    source = completed(sdk, "chain", {"n": 2}, unique("rerun-src"))
    open_instance(page, engine, source)
    rerun_id = unique("rerun-new")
    scheduled = [e for e in api_get(engine, f"/{source}/history")["events"] if e["type"] == "taskScheduled"]
    # From the second activity's bar: its details offer to rerun from there.
    page.locator('.tl-bar[data-kind="activity"]').nth(1).click()
    page.locator("#details-rerun").click()
    dialog = page.locator("dialog[open]")
    expect(page.locator("#rerun-from")).to_have_value(str(scheduled[1]["eventID"]))
    page.locator("#rerun-new-id").fill(rerun_id)
    dialog.get_by_role("button", name="Rerun").click()
    expect(page.locator("#instance-id")).to_have_text(rerun_id)
    state = wait_done(sdk, rerun_id)
    assert state["status"] == "COMPLETED" and output(state) == 2

    confirm(page, "purge")
    expect(page).to_have_url(f"{engine.http_url}/dashboard/")
    wait_until(lambda: sdk.call("get", instance_id=rerun_id), lambda s: s is None)
    page.goto(f"{engine.http_url}/dashboard/instances/{rerun_id}")
    expect(page.get_by_role("heading", name="No such instance")).to_be_visible()


def test_a_refused_action_shows_the_api_sentence(page: Page, engine: EngineProcess, sdk: SdkHost) -> None:
    instance_id = completed(sdk, "chain", {"n": 1}, unique("taken"))
    open_instance(page, engine, instance_id)
    page.locator("#action-rerun").click()
    page.locator("#rerun-new-id").fill(instance_id)  # the source's own ID is in use
    dialog = page.locator("dialog[open]")
    dialog.get_by_role("button", name="Rerun").click()
    alert = dialog.get_by_role("alert")
    expect(alert).not_to_be_empty()
    assert "Traceback" not in alert.inner_text()
    expect(dialog).to_be_visible()


# ------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("width", [1280, 390])
def test_readable_without_sideways_scrolling(
    browser: Browser, engine: EngineProcess, sdk: SdkHost, width: int
) -> None:
    instance_id = completed(sdk, "fan_out", {"values": [1, 2, 3]}, unique("layout"))
    page, problems = new_page(browser, width=width, height=844)
    try:
        page.goto(f"{engine.http_url}/dashboard/")
        expect(page.locator(f'tr[data-instance-id="{instance_id}"]')).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        open_instance(page, engine, instance_id)
        expect(page.locator('.tl-bar[data-kind="activity"]')).to_have_count(3)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        page.context.close()
    assert problems == []


# ---------------------------------------------------------------------------------------- token


def serve_has_api_token() -> bool:
    """The token check of the HTTP API (`--api-token`) is in this build."""
    import argparse

    from dapr_workflows_component.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return "--api-token" in commands.choices["serve"].format_help()


@pytest.mark.skipif(not serve_has_api_token(), reason="serve has no --api-token in this build")
def test_a_bad_token_is_refused_and_a_good_one_is_kept_for_the_tab(browser: Browser, tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path, "--api-token", "s3cret-token").start()
    engine.wait_http()
    page, problems = new_page(browser)
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("dapr-api-token")) if "/v1.0/" in r.url else None,
    )
    try:
        page.goto(f"{engine.http_url}/dashboard/")  # the page itself needs no token
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("API token").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text(
            "The server refused this token. Check it and try again."
        )
        expect(page.get_by_role("heading", name="Workflow instances")).to_have_count(0)

        page.get_by_label("API token").fill("s3cret-token")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Workflow instances")).to_be_visible()
        expect(page.locator(".empty")).to_be_visible()
        page.reload()  # kept for the tab
        expect(page.get_by_role("heading", name="Workflow instances")).to_be_visible()
        assert sent[-1] == "s3cret-token"
        assert "wrong" in sent and None in sent

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        page.context.close()
        engine.kill()
    assert problems == []
