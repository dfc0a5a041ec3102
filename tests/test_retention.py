"""`serve --retention`: finished instances are purged once their status's retention has passed,
not before; also those that finished before the policy was set; and engines sharing PostgreSQL
split the work without purging anything twice."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from dapr_workflows_component.store import open_store
from dapr_workflows_component.workflows import Instance, RuntimeStatus

from tests.conftest import POSTGRES_ENGINE_ARGS
from tests.harness.engine_process import EngineProcess
from tests.harness.management_http import Http
from tests.harness.postgres import PostgresServer
from tests.harness.sdk_host import SdkHost
from tests.harness.shared import unique, wait_until


def test_a_completed_instance_is_purged_after_its_retention_and_not_before(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path, "--retention", "completed=2s").start()
    try:
        engine.wait_http()
        worker = SdkHost("dapr", engine.dapr_address, tmp_path / "dapr-host.log")
        try:
            http = Http(engine.http_url)
            done = http.start("chain", unique("kept-briefly"), {"n": 1})
            failed = http.start("fail_uncaught", unique("failed"), {"message": "boom"})
            state = http.wait_status(done, "COMPLETED")
            # When the engine recorded the completion (the same clock as this test's).
            finished = datetime.fromisoformat(state["lastUpdatedAt"].replace("Z", "+00:00")).timestamp()
            http.wait_status(failed, "FAILED")
            # Not before: still there until its two seconds have passed.
            while time.time() - finished < 1.9:
                assert http.get(done) is not None, f"purged {time.time() - finished:.2f}s after it completed"
                time.sleep(0.05)
            wait_until(lambda: http.get(done), lambda s: s is None, timeout=8, interval=0.1)
            assert time.time() - finished < 8
            # The policy names completed instances only.
            assert http.get(failed) is not None
            # And the purge is counted where operators look.
            metrics = urllib.request.urlopen(f"{engine.http_url}/metrics", timeout=10).read().decode()
            assert 'dapr_workflows_retention_purged_total{status="COMPLETED"} 1.0' in metrics, metrics
        finally:
            worker.close()
    finally:
        engine.kill()
    assert re.search(r"retention: purged 1 COMPLETED instances", engine.log_text()), engine.log_text()


def test_instances_that_finished_before_the_policy_are_purged_too(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path).start()
    try:
        engine.wait_http()
        worker = SdkHost("dapr", engine.dapr_address, tmp_path / "dapr-host.log")
        http = Http(engine.http_url)
        try:
            old = [http.start("chain", unique("old"), {"n": 1}) for _ in range(3)]
            for instance_id in old:
                http.wait_status(instance_id, "COMPLETED")
            running = http.start("wait_events", unique("running"), {"names": ["never"]})
            http.wait_status(running, "RUNNING")
        finally:
            worker.close()
        time.sleep(1.2)
        engine.extra_args += ["--retention", "anyTerminal=1s"]
        engine.restart()
        engine.wait_http()
        wait_until(lambda: [http.get(i) for i in old], lambda s: s == [None, None, None], timeout=10)
        assert http.get(running) is not None  # retention never touches unfinished instances
    finally:
        engine.kill()


def test_a_bad_retention_is_one_sentence() -> None:
    for value, fragment in (
        ("completed", "KIND=DURATION"),
        ("finished=1h", "KIND=DURATION"),
        ("completed=soon", "duration"),
        ("completed=1h,completed=2h", "given twice"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "dapr_workflows_component.cli", "serve", "--retention", value],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode != 0
        assert fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def _finished(n: int, prefix: str, finished_at: int) -> list[Instance]:
    return [
        Instance(
            instance_id=f"{prefix}-{i:05d}",
            name="imported",
            dialect="dapr",
            status=RuntimeStatus.COMPLETED,
            execution_id="e",
            created_at=finished_at - 1000,
            updated_at=finished_at,
            completed_at=finished_at,
        )
        for i in range(n)
    ]


async def _fill(url: str, instances: list[Instance]) -> None:
    store = open_store(url)
    try:
        await store.run(lambda t: t.put_instances(instances))
    finally:
        await store.close()


def test_engines_sharing_postgresql_split_the_purging(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database()
    engines = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        args = (*POSTGRES_ENGINE_ARGS, "--retention", "completed=1s", "--socket-name", "")
        engines.append(EngineProcess(tmp_path / name, *args, store_url=url))
    total = 6000
    try:
        for engine in engines:
            engine.start()
        # A backlog that finished an hour ago appears while both engines look for work.
        asyncio.run(_fill(url, _finished(total, "backlog", (time.time_ns() // 1000) - 3_600_000_000)))
        engines[0].wait_http()
        http = Http(engines[0].http_url)
        wait_until(
            lambda: http.listing(("countsOnly", "true"))["counts"]["COMPLETED"], lambda n: n == 0, timeout=60
        )
    finally:
        for engine in engines:
            engine.kill()
    purged = [
        sum(int(n) for n in re.findall(r"retention: purged (\d+) COMPLETED", e.log_text())) for e in engines
    ]
    assert sum(purged) == total, purged  # each instance purged once
