"""What keeps a SQLite store file safe under the engine that owns it.

- One engine per file, whatever path reaches it: the engine holds an exclusive `flock` on the
  database file itself (its device and inode), so a symlink or a hard link to a file in use is
  refused. A network file system is not supported (SQLite's WAL mode needs one host anyway).
- A file deleted or replaced under a running engine: each write transaction compares the device
  and inode the path names with those of the open file after its commit, so no write is
  acknowledged once the path names another file (or none); `lost()` also checks twice a second,
  for an idle engine. The store then refuses every call and the engine stops.
- A file the engine cannot write, a full disk, a corrupt file: one sentence (`StoreUnavailable`,
  UNAVAILABLE / 503 to the caller), one log line when the store starts failing and one when it
  recovers, and while it fails, writes wait out a doubling delay (up to `MAX_BACKOFF_SECONDS`)
  instead of retrying as fast as the engine offers work again.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import sqlite3
import struct
import sys
import time

from .base import StoreUnavailable

log = logging.getLogger("dapr_workflows.store")

LOST_CHECK_SECONDS = 0.5
FIRST_BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 2.0
# While a failure lasts, it is logged again this often (with the count of refused writes).
REPEAT_LOG_SECONDS = 60.0

# Files of this process's open stores, by (device, inode): a second store on one of them in the
# same process is refused before it opens (and later closes) a descriptor of the file, which
# would drop SQLite's own POSIX locks on it.
_OPEN_HERE: set[tuple[int, int]] = set()

# SQLite's primary result codes that mean "the file or the disk", not "the SQL".
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_PROTOCOL = 15
_SQLITE_NOTADB = 26

# SQLite's own wording of those errors, for Pythons whose sqlite3 does not give the code.
_CODES_BY_TEXT = {
    "database or disk is full": _SQLITE_FULL,
    "attempt to write a readonly database": _SQLITE_READONLY,
    "unable to open database file": _SQLITE_CANTOPEN,
    "database disk image is malformed": _SQLITE_CORRUPT,
    "file is not a database": _SQLITE_NOTADB,
    "disk I/O error": _SQLITE_IOERR,
    "database is locked": _SQLITE_BUSY,
}

# The byte of the -shm file every connection of a database keeps a shared lock on (SQLite's
# "DMS" slot): a lock there means some process has that write-ahead log open.
_SHM_DMS_BYTE = 128


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def store_error(err: sqlite3.Error, where: str) -> str | None:
    """The sentence for a SQLite error that is about the file or the disk (None for others: a
    constraint or SQL error is the caller's or the code's, and stays as it is)."""
    code = getattr(err, "sqlite_errorcode", None)  # Python 3.11 and later
    if code is None:
        code = _CODES_BY_TEXT.get(str(err))
        if code is None:
            return None
    code &= 0xFF
    if code == _SQLITE_FULL:
        return f"the disk holding the SQLite store {where} is full (free some space; nothing was recorded)"
    if code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
        return (
            f"the SQLite store {where} cannot be written ({err}): the engine needs to write the file, "
            "its folder and the -wal and -shm files beside it"
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return f"the SQLite store {where} is corrupt ({err}): restore it from a backup"
    if code in (_SQLITE_IOERR, _SQLITE_PROTOCOL):
        return f"the SQLite store {where} cannot be read or written ({err})"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return f"the SQLite store {where} is locked by another process ({err})"
    return None


class FileGuard:
    """The lock on a store file, its identity checks, and how its failures are reported."""

    def __init__(self, path: str) -> None:
        # Absolute, so that the checks look at the same place whatever the working directory.
        self.path = self.where = os.path.abspath(path)
        self.lost_reason: str | None = None
        self._failing: str | None = None  # the sentence of the failure in progress
        self._refused = 0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._logged_at = 0.0
        self._lost_event: asyncio.Event | None = None
        self._fd = self._lock()
        self.identity = _identity(os.fstat(self._fd))
        _OPEN_HERE.add(self.identity)

    def _lock(self) -> int:
        try:
            before = os.stat(self.path)
        except FileNotFoundError:
            created = True
        else:
            created = False
            if _identity(before) in _OPEN_HERE:
                raise self._in_use()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            doing = "create" if created else "write"
            raise RuntimeError(
                f"cannot {doing} the SQLite store {self.where}: {err.strerror}: the engine needs to "
                "write the file, its folder and the -wal and -shm files beside it"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise self._in_use() from None
            raise RuntimeError(f"cannot lock the SQLite store {self.where}: {err.strerror}") from None
        try:
            # An empty file is new too: SQLite writes the first page when it switches to WAL mode.
            if created or os.fstat(fd).st_size == 0:
                self._drop_orphaned_log()
        except BaseException:
            if created:
                os.unlink(self.path)
            os.close(fd)
            raise
        return fd

    def _in_use(self) -> RuntimeError:
        return RuntimeError(
            f"another dapr-workflows engine already uses the SQLite store {self.where} (perhaps through "
            "another path: a symlink or a hard link); one engine owns a SQLite file "
            "(use PostgreSQL to share work between engines)"
        )

    def _drop_orphaned_log(self) -> None:
        """A new database file beside a -wal file: the log of a database that was deleted. If an
        engine still has that log open (it has not noticed yet), starting here would mix the two;
        if nobody has, it is left over from a crash, and SQLite would apply it to the new file."""
        wal, shm = self.path + "-wal", self.path + "-shm"
        if not os.path.exists(wal) and not os.path.exists(shm):
            return
        if os.path.exists(shm) and _locked_elsewhere(shm):
            raise RuntimeError(
                f"the SQLite store {self.where} was deleted while an engine still runs on it (its "
                "write-ahead log is in use): stop that engine first"
            )
        # Kept aside rather than removed: it holds that database's last changes, should someone
        # bring its file back. The -shm file is only an index of it.
        if os.path.exists(wal):
            aside = f"{wal}.of-a-deleted-database-{time.strftime('%Y%m%dT%H%M%S')}"
            os.replace(wal, aside)
            log.warning("moved %s to %s: the write-ahead log of a deleted database", wal, aside)
        try:
            os.unlink(shm)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------------ identity

    def refuse_if_lost(self) -> None:
        """Raises StoreUnavailable if the file was found deleted or replaced (no system call)."""
        if self.lost_reason is not None:
            raise StoreUnavailable(self.lost_reason)

    def check(self) -> None:
        """Raises StoreUnavailable once the path names another file than the one open (or none)."""
        if self.lost_reason is None:
            try:
                same = _identity(os.stat(self.path)) == self.identity
                what = "replaced by another file"
            except (FileNotFoundError, NotADirectoryError):
                same, what = False, "deleted"
            except OSError:
                same = True  # cannot tell (e.g. a folder it may not search): the writes then say why
            if same:
                return
            self.lost_reason = (
                f"the SQLite store {self.where} was {what} while the engine ran; it accepts no more "
                "changes and stops (restore the file, or start it again on a new one)"
            )
            log.error("%s", self.lost_reason)
            if self._lost_event is not None:
                self._lost_event.set()
        raise StoreUnavailable(self.lost_reason)

    async def lost(self) -> str:
        """Returns the reason once the file is gone or replaced; checks twice a second meanwhile."""
        if self._lost_event is None:
            self._lost_event = asyncio.Event()
        while self.lost_reason is None:
            try:
                self.check()
            except StoreUnavailable:
                break
            try:
                await asyncio.wait_for(self._lost_event.wait(), LOST_CHECK_SECONDS)
            except asyncio.TimeoutError:
                pass
        assert self.lost_reason is not None
        return self.lost_reason

    # ------------------------------------------------------------------------ failures

    async def wait_turn(self) -> None:
        """While the store fails, a write first waits until the next retry is due."""
        if self._failing is not None:
            delay = self._retry_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def failed(self, err: sqlite3.Error) -> StoreUnavailable | None:
        """The StoreUnavailable for a SQLite error about the file or the disk (logged once, and
        again only when it changes or lasts), or None when the error is not about the store."""
        reason = store_error(err, self.where)
        if reason is None:
            return None
        now = time.monotonic()
        self._refused += 1
        self._backoff = min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, self._backoff * 2))
        self._retry_at = now + self._backoff
        if reason != self._failing:
            log.error("%s", reason)
            self._logged_at = now
        elif now - self._logged_at >= REPEAT_LOG_SECONDS:
            log.error("%s (still: %d changes refused so far)", reason, self._refused)
            self._logged_at = now
        self._failing = reason
        return StoreUnavailable(reason)

    def succeeded(self) -> None:
        if self._failing is not None:
            log.warning(
                "the SQLite store %s works again (%d changes were refused)", self.where, self._refused
            )
            self._failing = None
            self._refused = 0
            self._backoff = 0.0

    def close(self) -> None:
        if self._fd >= 0:
            _OPEN_HERE.discard(self.identity)
            os.close(self._fd)
            self._fd = -1


def _locked_elsewhere(path: str) -> bool:
    """True when another process holds a lock on the -shm file's DMS byte (Linux only: elsewhere
    `struct flock` is laid out differently, and this says False)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        # struct flock: l_type, l_whence, l_start, l_len, l_pid (Linux layout, 64-bit offsets).
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS_BYTE, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        return bool(struct.unpack("hhqqi", answer)[0] != fcntl.F_UNLCK)
    except OSError:
        return False
    finally:
        os.close(fd)
