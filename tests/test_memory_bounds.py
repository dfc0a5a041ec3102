"""The history cache is bounded in bytes: running workflows with large inputs do not grow the engine.

The probe of the issue: 200 running workflows with 1 MiB inputs took the engine to 285 MB, as the
cache kept every history whole (4 MiB inputs would have reached gigabytes). The engine here runs
with its defaults and a real Dapr SDK worker; each workflow waits on a long timer after its first
turn, so that all 200 are running at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient, status_name
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique

MIB = 1024 * 1024
RSS_LIMIT_MB = 220


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def test_200_running_workflows_with_1_mib_inputs_keep_the_engine_under_220_mb(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path).start()
    worker = SdkHost("dapr", engine.dapr_address, tmp_path / "dapr-host.log")
    try:
        assert engine.proc is not None
        with RawClient(engine.dapr_address, "dapr") as raw:
            ids = []
            for n in range(200):
                pad = "x" * (MIB - 64) + str(n)
                ids.append(raw.start("sleepy", unique("big"), json.dumps({"seconds": 3600, "pad": pad})))
            deadline = time.monotonic() + 240
            for iid in ids:
                # Running: its first turn (which took the 1 MiB history to the worker) is done.
                while status_name(raw.pb, raw.get(iid)) != "RUNNING":
                    assert time.monotonic() < deadline, f"{iid} did not start"
                    time.sleep(0.1)
        rss = rss_mb(engine.proc.pid)
        print(f"engine RSS with 200 running 1 MiB workflows: {rss:.0f} MB")
        assert rss < RSS_LIMIT_MB, f"the engine uses {rss:.0f} MB"
    finally:
        worker.close()
        engine.kill()


def test_the_history_cache_keeps_both_its_bounds() -> None:
    from dapr_workflows_component.engine.history_cache import HistoryCache

    cache = HistoryCache(size=3, max_bytes=100, enabled=True)
    for n in range(5):
        cache.remember(f"i{n}", [b"x" * 30])
    assert len(cache) == 3 and cache.bytes == 90 and cache.get("i0") is None and cache.get("i4")
    cache.remember("big", [b"x" * 60])  # pushes out the oldest until 100 bytes hold
    assert cache.bytes <= 100 and cache.get("big") and cache.get("i2") is None
    cache.remember("huge", [b"x" * 101])  # never kept: read from the store instead
    assert cache.get("huge") is None and cache.bytes <= 100
    cache.remember("big", [b"x" * 10])  # stored again: counted once
    assert cache.bytes == sum(len(e[0]) for e in (cache.get(k) or [b""] for k in ("i3", "i4", "big")))
