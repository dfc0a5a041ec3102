"""Helpers of the durability tests: the engine's log, histories, client calls that outlive a kill."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkError, SdkHost

T = TypeVar("T")


_BOOT = re.compile(r"^===== start (\d+) =====$", re.M)
_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", re.M)


def boot_log(engine: EngineProcess) -> str:
    """The engine's log since its latest start."""
    text = engine.log_text()
    starts = list(_BOOT.finditer(text))
    return text[starts[-1].end() :] if starts else text


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls `check` until it returns something truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def connected_workers(engine: EngineProcess, dialect: str) -> int:
    """How many workers of `dialect` have connected since the engine's latest start."""
    return boot_log(engine).count(f"connected ({dialect} dialect)")


def wait_worker_connected(
    engine: EngineProcess, dialect: str, timeout: float = 30.0, count: int = 1
) -> float:
    """Waits until `count` workers of `dialect` connected to the current engine; returns the wait (s)."""
    started = time.monotonic()
    wait_until(
        lambda: connected_workers(engine, dialect) >= count,
        timeout,
        f"{count} {dialect} worker(s) to connect to the engine",
    )
    return time.monotonic() - started


def call_after_restart(host: SdkHost, op: str, timeout: float = 15.0, **args: Any) -> Any:
    """A client call right after an engine restart: the SDK's channel may still be backing off from
    the outage and answer UNAVAILABLE until it reconnects, so the call is sent again until then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return host.call(op, **args)
        except SdkError as err:
            if "UNAVAILABLE" not in str(err).upper() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def is_already_done(err: BaseException, op: str) -> bool:
    """A retried call whose first attempt took effect before the engine died."""
    text = str(err).lower()
    if op == "start":
        return "already exists" in text or "already_exists" in text
    if op == "raise_event":
        # The workflow finished with the event of the first attempt.
        return "have not finished" in text or "failed_precondition" in text
    return False


@dataclass
class RetryingCalls:
    """Client calls through an SDK host that are sent again until they succeed.

    A call in flight when the engine is killed fails (UNAVAILABLE) though it may have been committed;
    sending it again is the client's at-least-once, which the test must tolerate (a duplicate start
    answers ALREADY_EXISTS, a duplicate event is a second event with the same data).
    """

    host: SdkHost
    in_flight: list[tuple[str, dict[str, Any], Future[Any]]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    resent: int = 0

    def submit(self, op: str, **args: Any) -> None:
        self.in_flight.append((op, args, self.host.submit(op, **args)))

    def settle(self, timeout: float = 30.0) -> list[tuple[str, dict[str, Any]]]:
        """Waits for the calls in flight; returns the ones that failed, to be sent again later."""
        failed = []
        for op, args, fut in self.in_flight:
            try:
                fut.result(timeout=timeout)
            except SdkError as err:
                if not is_already_done(err, op):
                    self.failures[err.kind] += 1
                    failed.append((op, args))
        self.in_flight = []
        return failed

    def resend(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self.resent += len(calls)
        for op, args in calls:
            self.submit(op, **args)

    def until_all_succeed(self, calls: list[tuple[str, dict[str, Any]]], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while calls:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(calls)} calls still fail, e.g. {calls[0]}")
            self.resend(calls)
            calls = self.settle()
            if calls:
                time.sleep(0.2)


def event_kinds(events: list[Any]) -> Counter[str]:
    return Counter(e.WhichOneof("eventType") for e in events)


def assert_each_result_applied_once(instance_id: str, events: list[Any]) -> None:
    """Every scheduled activity has exactly one result (completed or failed) in the history."""
    scheduled = [e.eventId for e in events if e.WhichOneof("eventType") == "taskScheduled"]
    results = Counter(
        e.taskCompleted.taskScheduledId
        if e.WhichOneof("eventType") == "taskCompleted"
        else e.taskFailed.taskScheduledId
        for e in events
        if e.WhichOneof("eventType") in ("taskCompleted", "taskFailed")
    )
    twice = {task: n for task, n in results.items() if n > 1}
    assert not twice, f"{instance_id}: activity results applied more than once (task id: times): {twice}"
    assert len(scheduled) == len(set(scheduled)), f"{instance_id}: a task id scheduled twice: {scheduled}"
    assert set(results) == set(scheduled), (
        f"{instance_id}: scheduled tasks {sorted(scheduled)} but results for {sorted(results)}"
    )


def log_times(text: str, needle: str) -> list[str]:
    """The timestamps of the log lines that contain `needle`."""
    return [m.group(1) for line in text.splitlines() if needle in line for m in [_TIME.match(line)] if m]
