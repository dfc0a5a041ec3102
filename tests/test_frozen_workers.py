"""Frozen and vanished workers: gRPC keepalive detects them, and a stalled worker gets no more work.

A worker process that opens streams and is then stopped (SIGSTOP) used to keep receiving turns, each
waiting out its lease: a healthy worker beside a frozen 100-stream client completed 0 of 30 workflows
in 60 s. The frozen client here is a real process (tests/harness/frozen_client.py) on one channel.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient, status_name
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique, wait_until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def frozen(tmp_path: Path) -> Iterator[Callable[[EngineProcess, int], subprocess.Popen[bytes]]]:
    """Starts a client with N work-item streams, waits until the engine has them all, stops it."""
    started: list[subprocess.Popen[bytes]] = []

    def start(engine: EngineProcess, streams: int) -> subprocess.Popen[bytes]:
        before = engine.log_text().count(" connected (dapr dialect)")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.frozen_client", engine.dapr_address, "dapr", str(streams)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "frozen-client.log", "ab"),
        )
        started.append(proc)
        wait_until(
            lambda: engine.log_text().count(" connected (dapr dialect)") - before,
            lambda n: n >= streams,
            30,
        )
        proc.send_signal(signal.SIGSTOP)
        return proc

    yield start
    for proc in started:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_keepalive_drops_a_frozen_worker_and_gives_its_work_back_at_once(
    tmp_path: Path, frozen: Callable[[EngineProcess, int], subprocess.Popen[bytes]]
) -> None:
    keepalive = 2
    engine = EngineProcess(
        tmp_path, "--keepalive-seconds", str(keepalive), "--worker-stall-seconds", "3600"
    ).start()
    try:
        frozen(engine, 1)
        with RawClient(engine.dapr_address, "dapr") as raw:
            iid = raw.start("chain", unique("keepalive"), json.dumps({"n": 2}))
            stopped_at = time.monotonic()
            # The turn went to the frozen stream, the only one; keepalive drops the connection,
            # which gives the turn back long before its 60 s lease would end.
            returned = re.compile(r"worker \d+ disconnected; 1 leased work items returned")
            wait_until(engine.log_text, lambda log: returned.search(log) is not None, 4 * keepalive + 5)
            assert time.monotonic() - stopped_at < 4 * keepalive + 5
            worker = SdkHost("dapr", engine.dapr_address, tmp_path / "dapr-host.log")
            try:
                state = raw.wait_done(iid, timeout=30)
                assert status_name(raw.pb, state) == "COMPLETED" and json.loads(state.output.value) == 2
            finally:
                worker.close()
    finally:
        engine.kill()


@pytest.mark.parametrize(
    "args",
    # Without keepalive, an activity the frozen client took before it was found stalled (one whose
    # workflow's first turn the live worker ran during the burst) comes back only when its lease
    # runs out: stalls hand over turns alone, since an activity may rightly run long.
    [(), ("--keepalive-seconds", "600", "--activity-lease-seconds", "20")],
    ids=["defaults", "stall-watch-alone"],
)
def test_thirty_workflows_complete_within_60s_beside_a_frozen_100_stream_client(
    tmp_path: Path, frozen: Callable[[EngineProcess, int], subprocess.Popen[bytes]], args: tuple[str, ...]
) -> None:
    engine = EngineProcess(tmp_path, *args).start()
    try:
        frozen(engine, 100)
        worker = SdkHost("dapr", engine.dapr_address, tmp_path / "dapr-host.log")
        try:
            with RawClient(engine.dapr_address, "dapr") as raw:
                t0 = time.monotonic()
                ids = [raw.start("chain", unique("beside-frozen"), json.dumps({"n": 2})) for _ in range(30)]
                for iid in ids:
                    left = 60 - (time.monotonic() - t0)
                    assert left > 0, "30 workflows did not complete within 60 s"
                    state = raw.wait_done(iid, timeout=left)
                    assert status_name(raw.pb, state) == "COMPLETED", iid
                    assert json.loads(state.output.value) == 2
                elapsed = time.monotonic() - t0
        finally:
            worker.close()
    finally:
        engine.kill()
    print(f"30 workflows beside a frozen 100-stream client: {elapsed:.1f}s")
    assert "Traceback" not in engine.log_text()
