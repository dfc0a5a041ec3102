"""`dapr-workflows serve` on a SQLite file that another engine reaches through a symlink or a hard
link, that is deleted while the engine runs, on a full disk, corrupt or read-only.

The same situations in-process: tests/unit/test_sqlite_guards.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.engine_process import EngineProcess, free_port

pytestmark = pytest.mark.timeout(120)

ENGINE_ARGS = ("--http-start-timeout-seconds", "0", "--socket-name", "")


@dataclass
class Answer:
    instance_id: str
    sent_at: float
    status: int | None  # None: no answer (the engine was gone)
    body: str


def start(engine: EngineProcess, instance_id: str, payload: str = '"in"', timeout: float = 10) -> Answer:
    sent_at = time.monotonic()
    request = urllib.request.Request(
        f"{engine.http_url}/v1.0/workflows/dapr/wf/start?instanceID={instance_id}",
        data=payload.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Answer(instance_id, sent_at, resp.status, resp.read().decode())
    except urllib.error.HTTPError as err:
        return Answer(instance_id, sent_at, err.code, err.read().decode())
    except OSError:
        return Answer(instance_id, sent_at, None, "")


def get_status(engine: EngineProcess, instance_id: str) -> int:
    try:
        with urllib.request.urlopen(
            f"{engine.http_url}/v1.0/workflows/dapr/{instance_id}", timeout=10
        ) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def serve_once(store_path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`dapr-workflows serve` expected to refuse to start."""
    args = [
        sys.executable,
        "-m",
        "dapr_workflows_component.cli",
        "serve",
        "--store",
        f"sqlite:///{store_path}",
    ]
    for flag in ("--engine-address", "--durabletask-address", "--http-address"):
        args += [flag, f"127.0.0.1:{free_port()}"]
    return subprocess.run([*args, *ENGINE_ARGS], capture_output=True, text=True, timeout=60, cwd=cwd)


def assert_refused_with(proc: subprocess.CompletedProcess[str], sentence: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"dapr-workflows: cannot open the store: {sentence}"


def test_a_second_engine_on_a_symlink_or_a_hard_link_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    first = EngineProcess(tmp_path / "first", *ENGINE_ARGS).start()
    try:
        first.wait_http()
        assert start(first, "before").status == 202
        other = tmp_path / "other"
        other.mkdir()
        (other / "symlink.db").symlink_to(first.db_path)
        os.link(first.db_path, other / "hardlink.db")
        for name in ("symlink.db", "hardlink.db"):
            path = other / name
            assert_refused_with(
                serve_once(path, other),
                f"another dapr-workflows engine already uses the SQLite store {path} (perhaps through "
                "another path: a symlink or a hard link); one engine owns a SQLite file "
                "(use PostgreSQL to share work between engines)",
            )
        # The first engine never noticed.
        assert start(first, "after").status == 202
        assert get_status(first, "before") == 200
    finally:
        first.kill()


def test_no_start_is_acknowledged_after_the_store_file_was_deleted(tmp_path: Path) -> None:
    engine = EngineProcess(tmp_path, *ENGINE_ARGS).start()
    engine.wait_http()
    # A second name for the file, kept by the test only, to look at what the engine wrote.
    kept = tmp_path / "kept.db"
    os.link(engine.db_path, kept)
    answers: list[Answer] = []
    lock = threading.Lock()
    done = threading.Event()

    def starter(k: int) -> None:
        n = 0
        while not done.is_set():
            answer = start(engine, f"w{k}-{n}")
            with lock:
                answers.append(answer)
            n += 1

    threads = [threading.Thread(target=starter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while sum(a.status == 202 for a in list(answers)) < 40:
            assert time.monotonic() < deadline, engine.log_text()
            time.sleep(0.01)
        engine.db_path.unlink()
        deleted_at = time.monotonic()
        assert engine.proc is not None
        code = engine.proc.wait(timeout=30)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
        engine.kill()

    # The engine stopped by itself, with one clear reason.
    log = engine.log_text()
    reason = f"the SQLite store {engine.db_path} was deleted while the engine ran"
    assert code != 0
    assert log.count(reason) >= 1 and "Traceback" not in log
    assert log.strip().splitlines()[-1].startswith(f"dapr-workflows: {reason}")
    # Every start sent after the deletion failed: 503 while the engine still answered, or no
    # answer once it was gone.
    after = [a for a in answers if a.sent_at > deleted_at]
    assert after and all(a.status in (503, None) for a in after), [
        a for a in after if a.status not in (503, None)
    ]
    # A start that found the file gone answers with the reason (the engine may also have noticed
    # first by itself, and stopped listening before any start came).
    for refused in (a for a in answers if a.status == 503):
        assert reason in json.loads(refused.body)["message"]

    # Every start acknowledged is in the file the engine wrote (its log moved along with it).
    for suffix in ("-wal", "-shm"):
        if Path(f"{engine.db_path}{suffix}").exists():
            os.replace(f"{engine.db_path}{suffix}", f"{kept}{suffix}")
    restarted = EngineProcess(
        tmp_path, *ENGINE_ARGS, store_url=f"sqlite:///{kept}", log_name="kept.log"
    ).start()
    try:
        restarted.wait_http()
        acknowledged = [a for a in answers if a.status == 202]
        assert len(acknowledged) >= 40
        lost = [a.instance_id for a in acknowledged if get_status(restarted, a.instance_id) != 200]
        assert lost == []
    finally:
        restarted.kill()
    # A new engine on the deleted path starts on a new, empty file.
    fresh = EngineProcess(tmp_path, *ENGINE_ARGS, log_name="fresh.log").start()
    try:
        fresh.wait_http()
        assert get_status(fresh, acknowledged[0].instance_id) == 404
        assert start(fresh, "new").status == 202
    finally:
        fresh.kill()


def test_an_engine_on_a_deleted_file_keeps_a_new_one_off_until_it_stopped(tmp_path: Path) -> None:
    """The write-ahead log beside the path still belongs to the engine on the deleted file: a new
    engine there would mix the two databases."""
    (tmp_path / "first").mkdir()
    first = EngineProcess(tmp_path / "first", *ENGINE_ARGS).start()
    assert first.proc is not None
    try:
        first.wait_http()
        assert start(first, "before").status == 202
        first.proc.send_signal(signal.SIGSTOP)  # it cannot notice the deletion yet
        first.db_path.unlink()
        assert_refused_with(
            serve_once(first.db_path, tmp_path),
            f"the SQLite store {first.db_path} was deleted while an engine still runs on it (its "
            "write-ahead log is in use): stop that engine first",
        )
        assert not first.db_path.exists()  # the refused start left no empty file behind
        first.proc.send_signal(signal.SIGCONT)
        assert first.proc.wait(timeout=30) != 0
    finally:
        first.kill()
    second = EngineProcess(tmp_path / "first", *ENGINE_ARGS, log_name="second.log").start()
    try:
        second.wait_http()
        assert get_status(second, "before") == 404
        assert start(second, "new").status == 202
        assert "the write-ahead log of a deleted database" in second.log_text()
    finally:
        second.kill()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB file system of its own (a tmpfs; needs root)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a small file system")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_503_with_the_reason_one_log_line_and_recovers(small_disk: Path) -> None:
    engine = EngineProcess(small_disk, *ENGINE_ARGS).start()
    try:
        engine.wait_http()
        assert start(engine, "first").status == 202
        free = shutil.disk_usage(small_disk).free
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * max(0, free - 400_000))
        payload = json.dumps("x" * 50_000)
        answers: list[Answer] = []
        while len(answers) < 40 and 503 not in [a.status for a in answers[-1:]]:
            answers.append(start(engine, f"big-{len(answers)}", payload))
        answers += [start(engine, f"big-{len(answers)}", payload) for _ in range(5)]
        statuses = [a.status for a in answers]
        assert 503 in statuses, statuses
        first_refusal = statuses.index(503)
        # Once full, every start is refused with the reason.
        assert set(statuses[first_refusal:]) == {503}
        message = json.loads(answers[first_refusal].body)["message"]
        assert message == (
            f"the disk holding the SQLite store {engine.db_path} is full "
            "(free some space; nothing was recorded)"
        )
        # However many calls were refused, the store's log says it once.
        store_lines = [line for line in engine.log_text().splitlines() if "dapr_workflows.store" in line]
        assert [line for line in store_lines if "is full" in line] == [store_lines[0]]
        filler.unlink()
        deadline = time.monotonic() + 10
        while (answer := start(engine, "after-space", payload)).status != 202:
            assert answer.status == 503 and time.monotonic() < deadline
        assert "works again" in engine.log_text()
        for a in answers[:first_refusal]:
            assert get_status(engine, a.instance_id) == 200
        assert "Traceback" not in engine.log_text()
    finally:
        engine.kill()


def test_a_corrupt_store_refuses_to_start_with_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database " * 1000)
    assert_refused_with(
        serve_once(path, tmp_path),
        f"the SQLite store {path} is corrupt (file is not a database): restore it from a backup",
    )
    # A sound header over a broken table: found while the engine recovers its work.
    path.unlink()
    engine = EngineProcess(tmp_path, *ENGINE_ARGS, store_url=f"sqlite:///{path}").start()
    engine.wait_http()
    for n in range(30):
        assert start(engine, f"w{n}", json.dumps("y" * 500)).status == 202
    assert engine.stop() == 0
    with sqlite3.connect(path) as conn:
        root, page_size = conn.execute(
            "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master "
            "WHERE name = 'inbox'"
        ).fetchone()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xde\xad" * (page_size // 2))
    assert_refused_with(
        serve_once(path, tmp_path),
        f"the SQLite store {path} is corrupt (database disk image is malformed): restore it from a backup",
    )


def test_a_store_it_cannot_write_refuses_to_start_with_one_sentence(small_disk: Path, tmp_path: Path) -> None:
    path = small_disk / "store.db"
    engine = EngineProcess(small_disk, *ENGINE_ARGS, store_url=f"sqlite:///{path}", log_name="../engine.log")
    engine.start().stop()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = serve_once(path, tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"dapr-workflows: cannot open the store: cannot write the SQLite store {path}: "
        "Read-only file system: the engine needs to write the file, its folder and the -wal and -shm "
        "files beside it"
    )
