"""The SQLite store's guards, in-process: one engine per file whatever path reaches it, a file
deleted or replaced under the store, a full disk, a corrupt or read-only file.

tests/test_sqlite_store_files.py runs the same situations against `dapr-workflows serve`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dapr_workflows_component.store import SQLiteStore, StoreTx, StoreUnavailable, sqlite_guard
from dapr_workflows_component.workflows import ErrorCode, Instance, RuntimeStatus

LOGGER = "dapr_workflows.store"


def instance(instance_id: str, payload: str | None = None) -> Instance:
    return Instance(
        instance_id=instance_id,
        name="wf",
        dialect="dapr",
        status=RuntimeStatus.RUNNING,
        execution_id="e1",
        created_at=1,
        updated_at=1,
        input=payload,
    )


def put(instance_id: str, payload: str | None = None) -> Callable[[StoreTx], None]:
    return lambda t: t.put_instance(instance(instance_id, payload))


def within(seconds: float, main: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(main(), seconds)

    return asyncio.run(bounded())


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def store_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]


# -- one engine per file


def test_a_second_store_through_a_symlink_or_a_hard_link_is_refused(db: Path, tmp_path: Path) -> None:
    store = SQLiteStore(str(db))
    try:
        (tmp_path / "symlink.db").symlink_to(db)
        os.link(db, tmp_path / "hardlink.db")
        for other in ("symlink.db", "hardlink.db", "store.db"):
            with pytest.raises(
                RuntimeError, match="another dapr-workflows engine already uses the SQLite store"
            ):
                SQLiteStore(str(tmp_path / other))
            # What keeps another process off: an exclusive lock on the file itself, which any
            # path to the same inode meets.
            fd = os.open(tmp_path / other, os.O_RDONLY)
            try:
                with pytest.raises(BlockingIOError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            finally:
                os.close(fd)
        assert not list(tmp_path.glob("*.lock"))  # no side file whose removal would lift the guard
        within(5, lambda: store.run(put("still-works")))
    finally:
        within(5, store.close)
    # Closed, the file is free again, through any of its names.
    within(5, SQLiteStore(str(tmp_path / "hardlink.db")).close)


# -- the file deleted or replaced under the store


def test_a_deleted_file_refuses_every_call_from_then_on(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = SQLiteStore(str(db))

    async def main() -> None:
        await store.run(put("before"))
        db.unlink()
        for _ in range(3):
            with pytest.raises(StoreUnavailable) as info:
                await store.run(put("after"))
            assert info.value.code == ErrorCode.UNAVAILABLE
            assert info.value.message == (
                f"the SQLite store {db} was deleted while the engine ran; it accepts no more changes and "
                "stops (restore the file, or start it again on a new one)"
            )
        with pytest.raises(StoreUnavailable, match="was deleted"):
            await store.read(lambda t: t.get_instance("before"))
        assert "was deleted" in await asyncio.wait_for(store.lost(), 1)
        await store.close()

    within(10, main)
    assert len(store_errors(caplog)) == 1  # one line, however many calls were refused


def test_a_replaced_file_is_noticed(db: Path, tmp_path: Path) -> None:
    store = SQLiteStore(str(db))
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()

    async def main() -> None:
        await store.run(put("before"))
        os.replace(other, db)
        with pytest.raises(StoreUnavailable, match="was replaced by another file while the engine ran"):
            await store.run(put("after"))
        await store.close()

    within(10, main)


def test_a_commit_that_lands_after_the_deletion_is_not_acknowledged(db: Path) -> None:
    store = SQLiteStore(str(db))

    def deleted_midway(t: StoreTx) -> None:
        t.put_instance(instance("racing"))
        db.unlink()  # as if another process removed the file while the transaction ran

    async def main() -> None:
        with pytest.raises(StoreUnavailable, match="was deleted"):
            await store.run(deleted_midway)
        await store.close()

    within(10, main)


def test_an_idle_store_notices_the_deletion_within_a_second(db: Path) -> None:
    store = SQLiteStore(str(db))

    async def main() -> float:
        watching = asyncio.ensure_future(store.lost())
        await asyncio.sleep(0.1)
        assert not watching.done()
        db.unlink()
        deleted = time.monotonic()
        reason = await asyncio.wait_for(watching, 3)
        assert "was deleted" in reason
        await store.close()
        return time.monotonic() - deleted

    assert within(10, main) < sqlite_guard.LOST_CHECK_SECONDS + 0.5


def test_a_new_file_beside_a_deleted_databases_log_starts_clean(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    # What a killed engine leaves when its file was deleted: the write-ahead log and its index.
    first = SQLiteStore(str(db))
    within(5, lambda: first.run(put("old")))
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    saved = {p: p.read_bytes() for p in (wal, shm)}
    within(5, first.close)
    db.unlink()
    for path, content in saved.items():
        path.write_bytes(content)

    store = SQLiteStore(str(db))
    try:
        assert within(5, lambda: store.read(lambda t: t.get_instance("old"))) is None
        within(5, lambda: store.run(put("new")))
    finally:
        within(5, store.close)
    assert any("write-ahead log of a deleted database" in r.getMessage() for r in caplog.records)
    # Kept aside, should someone bring the deleted file back.
    (aside,) = db.parent.glob("store.db-wal.of-a-deleted-database-*")
    assert aside.read_bytes() == saved[wal]


# -- a full disk, a corrupt file, a read-only file


def test_a_full_disk_is_one_sentence_one_log_line_and_retried_with_backoff(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = SQLiteStore(str(db))
    conn = store._conn  # SQLite's page limit stands for the disk's
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 2}")
    big = "x" * 20_000

    async def main() -> float:
        started = time.monotonic()
        for n in range(5):
            with pytest.raises(StoreUnavailable) as info:
                await store.run(put(f"big-{n}", big))
            assert info.value.message == (
                f"the disk holding the SQLite store {db} is full (free some space; nothing was recorded)"
            )
        elapsed = time.monotonic() - started
        conn.execute("PRAGMA max_page_count=1000000")  # space freed
        await store.run(put("fits", big))
        assert await store.read(lambda t: t.get_instance("fits")) is not None
        assert await store.read(lambda t: t.get_instance("big-0")) is None
        await store.close()
        return elapsed

    elapsed = within(20, main)
    # Each retry waited: 0.05 + 0.1 + 0.2 + 0.4 seconds before the 2nd to 5th attempts.
    assert elapsed >= 0.7
    assert store_errors(caplog) == [
        f"the disk holding the SQLite store {db} is full (free some space; nothing was recorded)"
    ]
    assert any("works again (5 changes were refused)" in r.getMessage() for r in caplog.records)


def test_a_corrupt_file_is_refused_at_open_with_one_sentence(db: Path) -> None:
    db.write_bytes(b"not a database at all " * 500)
    with pytest.raises(RuntimeError) as info:
        SQLiteStore(str(db))
    assert str(info.value) == (
        f"the SQLite store {db} is corrupt (file is not a database): restore it from a backup"
    )
    # The refused open left the file locked by nobody.
    fd = os.open(db, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_corruption_found_while_running_is_unavailable_with_the_reason(db: Path) -> None:
    store = SQLiteStore(str(db))
    for n in range(50):
        within(5, lambda n=n: store.run(put(f"i{n}", "y" * 500)))
    within(5, store.close)
    conn = sqlite3.connect(db)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'instances'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xde\xad" * (page_size // 2))

    store = SQLiteStore(str(db))
    try:
        with pytest.raises(StoreUnavailable) as info:
            within(5, lambda: store.read(lambda t: t.get_instance("i7")))
        assert info.value.message.startswith(f"the SQLite store {db} is corrupt (")
        assert info.value.message.endswith("): restore it from a backup")
    finally:
        within(5, store.close)


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder holding a store file, then made read-only: a read-only mount when running as root
    (root writes through file modes), file modes otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        within(5, SQLiteStore(str(folder / "store.db")).close)
        (folder / "store.db").chmod(0o444)
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if shutil.which("mount") is None:
        pytest.skip("needs mount(8) to make a read-only folder as root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        within(5, SQLiteStore(str(folder / "store.db")).close)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_store_it_cannot_write_is_refused_at_open_with_one_sentence(read_only_folder: Path) -> None:
    path = read_only_folder / "store.db"
    with pytest.raises(RuntimeError) as info:
        SQLiteStore(str(path))
    message = str(info.value)
    assert message.startswith(f"cannot write the SQLite store {path}: ")
    assert message.endswith(
        "the engine needs to write the file, its folder and the -wal and -shm files beside it"
    )
    with pytest.raises(RuntimeError, match=f"cannot create the SQLite store {read_only_folder}/new.db: "):
        SQLiteStore(str(read_only_folder / "new.db"))


def test_disk_errors_are_sentences_and_sql_errors_stay_what_they_are() -> None:
    def error(code: int, text: str) -> sqlite3.Error:
        err = sqlite3.OperationalError(text)
        err.sqlite_errorcode = code  # type: ignore[attr-defined]
        return err

    assert sqlite_guard.store_error(error(8, "attempt to write a readonly database"), "/d/s.db") == (
        "the SQLite store /d/s.db cannot be written (attempt to write a readonly database): the engine "
        "needs to write the file, its folder and the -wal and -shm files beside it"
    )
    assert sqlite_guard.store_error(error(10 | (3 << 8), "disk I/O error"), "/d/s.db") == (
        "the SQLite store /d/s.db cannot be read or written (disk I/O error)"
    )
    # Without the code (Python 3.10's sqlite3), SQLite's wording tells.
    assert sqlite_guard.store_error(sqlite3.OperationalError("database or disk is full"), "/d/s.db") == (
        "the disk holding the SQLite store /d/s.db is full (free some space; nothing was recorded)"
    )
    assert sqlite_guard.store_error(sqlite3.OperationalError("near x: syntax error"), "/d/s.db") is None
    # A constraint or an SQL mistake is not the store's condition: it is raised as it was.
    assert sqlite_guard.store_error(error(19, "UNIQUE constraint failed"), "/d/s.db") is None
    assert sqlite_guard.store_error(error(1, "no such table: x"), "/d/s.db") is None
    unique = f"u{uuid.uuid4().hex}"
    store = SQLiteStore(":memory:")
    try:
        within(5, lambda: store.run(lambda t: t.append_history(unique, 0, [b"a"])))
        with pytest.raises(sqlite3.IntegrityError):
            within(5, lambda: store.run(lambda t: t.append_history(unique, 0, [b"b"])))
    finally:
        within(5, store.close)
