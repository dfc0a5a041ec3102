"""Helpers for end-to-end tests: a long-lived engine and SDK host, unique IDs, polling, errors.

Starting an engine and an SDK host costs about a second, so test modules whose tests never restart
the engine share one engine and one host per dialect (`shared_sdk_host`). Tests that share them
must not collide: each uses instance IDs and counter keys from `unique`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.engine_process import EngineProcess
from tests.harness.sdk_host import SdkError, SdkHost

T = TypeVar("T")


def shared_sdk_host(
    dialect: str, workdir: Path, make_engine: Callable[[Path], EngineProcess] = EngineProcess
) -> Iterator[SdkHost]:
    """An engine of its own (made by `make_engine`) and a worker+client host of `dialect`, for a
    module-scoped fixture."""
    engine = make_engine(workdir).start()
    try:
        host = SdkHost(dialect, engine.address(dialect), workdir / f"{dialect}-host.log")
        try:
            yield host
        finally:
            host.close()
    finally:
        engine.kill()


def unique(prefix: str) -> str:
    """An instance ID or counter key no other test uses (letters, digits and '-' only)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def start(sdk: SdkHost, workflow: str, input: Any = None, instance_id: str | None = None) -> str:
    """Starts `workflow` under `instance_id` (default: a unique ID named after the workflow)."""
    return str(sdk.call("start", workflow=workflow, input=input, instance_id=instance_id or unique(workflow)))


def wait_until(
    probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Calls `probe` until `done(value)` holds; returns that value, or fails with the last one."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(interval)
        value = probe()
    return value


def output(state: dict[str, Any] | None) -> Any:
    """The instance's output, decoded from JSON (None when there is none)."""
    assert state is not None, "the instance does not exist"
    raw = state["output"]
    return None if raw in (None, "") else json.loads(raw)


def wait_done(sdk: SdkHost, instance_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Waits (in the SDK, up to `timeout`) until the instance has finished; returns its state.

    `SdkHost.call` keeps its own `timeout` argument for how long the test waits for an answer, so
    the op's `timeout` goes through `submit`: a wait that gives up fails fast on both sides.
    """
    state: dict[str, Any] | None = sdk.submit("wait_done", instance_id=instance_id, timeout=timeout).result(
        timeout + 15
    )
    assert state is not None, f"instance {instance_id!r} does not exist"
    return state


def status_of(sdk: SdkHost, instance_id: str) -> str | None:
    state = sdk.call("get", instance_id=instance_id)
    return None if state is None else str(state["status"])


def wait_status(sdk: SdkHost, instance_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    state: dict[str, Any] = wait_until(
        lambda: sdk.call("get", instance_id=instance_id),
        lambda s: s is not None and s["status"] == status,
        timeout,
    )
    return state


def assert_grpc_error(err: SdkError, code: str, *fragments: str) -> None:
    """The SDK call failed with gRPC status `code` (e.g. "NOT_FOUND") and a message naming `fragments`."""
    assert f"StatusCode.{code}" in err.message, f"expected {code}, got {err.kind}: {err.message}"
    for fragment in fragments:
        assert fragment in err.message, f"{fragment!r} not in the error message: {err.message}"
