"""PostgreSQL store: several engines share one database and split the work through leases.

Each transaction runs on a pooled connection in a greenlet on the event loop's thread
(`postgres_loop.py`: a store function calls the transaction's methods synchronously, and waits for
the server on the loop), its statements sent through libpq's pipeline mode (`postgres_wire.py`).
Commits are announced only while another engine listens.

Leases live in the rows they guard (`lease_token`, `lease_until`) and expire by the database's
clock, so engines whose clocks disagree still agree on when a lease has lapsed. Writers to one
instance serialize on its row lock (`SELECT ... FOR UPDATE`); the scans that look for work skip rows
another transaction has locked. Commits that make work ready are announced with NOTIFY, delivered
only when the transaction commits, so other engines react at once instead of polling.

A transaction takes few round trips (`postgres_tx.py`): a turn's claim or lease check is one
statement that also returns the instance row, its visible inbox and, unless the history this store
caches is current by the instance's `history_version`, its history (`postgres_cache.py`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from .base import Announcement, Store, StoreTx, StoreUnavailable
from .postgres_cache import HistoryCache
from .postgres_ids import ActivityIds
from .postgres_loop import await_only, await_started_here, run_on_loop
from .postgres_schema import _MIGRATIONS, SCHEMA_VERSION
from .postgres_tx import CHANNEL, LISTENER_LOCK, PostgresTx, listeners_besides, placeholders
from .postgres_wire import NeedsTransaction

T = TypeVar("T")

log = logging.getLogger("dapr_workflows.store")


# Serializes schema migrations of engines that start at once (an arbitrary, fixed 64-bit key).
_MIGRATION_LOCK = 0x6461707277666C77

_DEFAULT_POOL_SIZE = 8
_DEFAULT_POOL_TIMEOUT = 10.0
_CHECK_AFTER_IDLE = 1.0  # seconds a pooled connection may sit unused before it is checked
_RETRIES = 5  # attempts after the first, on a deadlock or a serialization failure
# A unique violation is a row another transaction created first (e.g. two starts of one ID):
# running the transaction again sees it.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.UniqueViolation)
_LISTEN_BACKOFF_FIRST = 0.5
_LISTEN_BACKOFF_MAX = 10.0
# How often a listener counts the other engines' listeners.
_LISTENERS_CHECK_SECONDS = 1.0

# libpq settings unless the URL sets them: a dead server or network is noticed within half a
# minute, even on a connection that only waits (a listener, an idle pooled connection).
_NETWORK_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


_OWN_OPTIONS = ("pool_size", "pool_timeout")


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL for libpq without this store's own query options, and those options."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN_OPTIONS:
            ours[key] = value
        else:
            theirs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def _describe(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or 5432)
    dbname = str(params.get("dbname") or params.get("user") or "")
    return f"PostgreSQL {host}:{port}/{dbname}"


class PostgresStore(Store):
    shared = True

    def __init__(
        self, conninfo: str, pool_size: int = _DEFAULT_POOL_SIZE, pool_timeout: float = _DEFAULT_POOL_TIMEOUT
    ) -> None:
        self.description = _describe(conninfo)
        given = conninfo_to_dict(conninfo)
        self._conninfo = conninfo
        self._connect_options = {k: v for k, v in _NETWORK_DEFAULTS.items() if k not in given}
        # Tells this store's own announcements apart from the other engines'.
        self._origin = uuid.uuid4().hex
        self._closed = False
        self._down = False  # the last transaction failed for the server or the network: logged once
        self._listen_tasks: set[asyncio.Task[None]] = set()
        # Whether another engine listens for announcements (`_count_listeners`; until known, yes);
        # the backend of this store's own listener.
        self._others_listen = True
        self._listener_pid = 0
        # Histories kept between transactions, each used only while its version is current.
        self._history = HistoryCache()
        self._activity_ids = ActivityIds()
        try:
            with psycopg.connect(conninfo, autocommit=True, **self._connect_options) as conn:
                self._migrate(conn)
        except psycopg.OperationalError as err:
            raise RuntimeError(f"cannot connect to {self.description}: {str(err).strip()}") from None
        except psycopg.Error as err:  # e.g. a user without the right to create tables
            raise RuntimeError(
                f"cannot create the schema in {self.description}: {str(err).strip()}"
            ) from None
        # When each pooled connection last committed: one used a moment ago is not checked again.
        self._last_used: weakref.WeakKeyDictionary[psycopg.AsyncConnection[TupleRow], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool_size = pool_size
        self._pool_timeout = pool_timeout
        # Opened by the first transaction, on its loop (the one of `serve`; a test may use the
        # store from several loops one after the other: each gets a pool of its own).
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._pool = self._new_pool()
        # A transaction's turn for one of the pool's connections (made again with the pool).
        self._turns = asyncio.Semaphore(pool_size)

    def _new_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        return AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True, **self._connect_options},
            # Checked as it leaves the pool, a connection the server dropped (say, in a restart) is
            # replaced before a transaction uses it, so transactions succeed again once the server is
            # back instead of each failing on a dead connection first.
            check=self._check_connection,
            timeout=self._pool_timeout,
            name="dapr-workflows",
            open=False,
        )

    async def _open_pool(self) -> None:
        """A pool for the running loop, its first connection made before a transaction asks for
        one (none is left connecting when a loop that ran one transaction ends)."""
        if self._pool_loop is not None:  # its loop has ended: its connections close with it
            self._pool = self._new_pool()
        self._pool_loop = asyncio.get_running_loop()
        self._turns = asyncio.Semaphore(self._pool_size)
        try:
            await self._pool.open(wait=True, timeout=self._pool_timeout)
        except Exception:  # a cancelled caller leaves the pool opening for the others
            self._pool_loop = None  # closed by its failure: the next transaction opens another
            self._pool = self._new_pool()
            raise

    async def _check_connection(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        """The pool's check before a transaction takes a connection: a round trip, so skipped for a
        connection that committed within the last `_CHECK_AFTER_IDLE` seconds (a server that went
        away since then fails that one transaction, and the pool replaces the broken connection)."""
        if time.monotonic() - self._last_used.get(conn, float("-inf")) >= _CHECK_AFTER_IDLE:
            await AsyncConnectionPool.check_connection(conn)

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """`postgresql://user:password@host:port/dbname?pool_size=8&pool_timeout=10` (libpq's URL form)."""
        conninfo, options = _split_url(url)
        try:
            pool_size = int(options.get("pool_size", _DEFAULT_POOL_SIZE))
            pool_timeout = float(options.get("pool_timeout", _DEFAULT_POOL_TIMEOUT))
        except ValueError:
            raise ValueError(
                "pool_size must be a whole number and pool_timeout a number of seconds"
            ) from None
        if pool_size < 1:
            raise ValueError(f"pool_size={pool_size} is not supported: use 1 or more")
        if pool_timeout <= 0:
            raise ValueError(
                f"pool_timeout={pool_timeout:g} is not supported: use a positive number of seconds"
            )
        try:
            conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as err:
            raise ValueError(f"malformed PostgreSQL URL: {err}") from None
        return cls(conninfo, pool_size=pool_size, pool_timeout=pool_timeout)

    def _migrate(self, conn: psycopg.Connection[TupleRow]) -> None:
        with conn.transaction():
            # Engines starting at once take turns here; each reads the version under the lock.
            conn.execute(placeholders("SELECT pg_advisory_xact_lock(?)"), (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the store has schema version {current}, newer than this engine's {SCHEMA_VERSION}: "
                    "upgrade dapr-workflows"
                )
            for version in sorted(v for v in _MIGRATIONS if v > current):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute(placeholders("INSERT INTO schema_version (version) VALUES (?)"), (version,))
                log.info("%s: applied schema migration %d", self.description, version)

    def _transaction(self, fn: Callable[[StoreTx], T], writable: bool, one_shot: bool) -> T:
        """Runs in a greenlet on the loop (`postgres_loop.py`): it waits for the pool and the
        server there, and the loop runs other tasks meanwhile."""
        begin = "BEGIN" if writable else "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
        # A backlog queues here without a time limit, so the pool's timeout is only how long a
        # connection may take to make: a busy store is not taken for an unreachable one.
        await_only(self._turns.acquire(), cancellable=True)
        try:
            return self._on_connection(fn, writable, begin, one_shot)
        finally:
            self._turns.release()

    def _on_connection(self, fn: Callable[[StoreTx], T], writable: bool, begin: str, one_shot: bool) -> T:
        pool = self._pool  # the one the connection goes back to, even if another replaced it
        # The pool gives a connection back itself if its caller is cancelled while it waits.
        conn = await_only(pool.getconn(), cancellable=True)
        try:
            attempt = 0
            # A read, or a claim (`run_claim`), commits in its first round trip if it needs no second.
            single_shot = one_shot
            while True:
                # BEGIN goes with the first statement, the statements nobody reads go with the
                # next one or with the COMMIT, whose answer `end` waits for (a failed COMMIT
                # raises there, before the result is returned).
                tx = PostgresTx(conn, self._origin, writable, self._history, self._activity_ids)
                tx.announcing = self._others_listen
                tx._wire.single_shot = single_shot
                try:
                    tx._send(begin)
                    result = fn(tx)
                    tx.end("COMMIT")
                    tx._memo.committed(self._history)
                    self._last_used[conn] = time.monotonic()
                    return result
                except NeedsTransaction:
                    self._roll_back(conn, tx)
                    single_shot = False
                except _RETRYABLE as err:
                    self._roll_back(conn, tx)
                    if attempt >= _RETRIES:
                        raise
                    attempt += 1
                    # Jittered, so the two sides of a deadlock do not meet again in step.
                    delay = random.uniform(0.5, 1.5) * 0.005 * 2**attempt
                    log.warning(
                        "%s: %s; running the transaction again in %.0f ms (retry %d of %d)",
                        self.description,
                        type(err).__name__,
                        delay * 1000,
                        attempt,
                        _RETRIES,
                    )
                    await_only(asyncio.sleep(delay))
                except BaseException:
                    self._roll_back(conn, tx)
                    raise
        finally:
            await_started_here(pool.putconn(conn))

    @staticmethod
    def _roll_back(conn: psycopg.AsyncConnection[TupleRow], tx: PostgresTx) -> None:
        """Ends a failed transaction; a connection left in a state that cannot be ended cleanly
        (the server gone, answers still unread) is closed, and the pool replaces it."""
        try:
            tx.abandon()
            if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                await_only(conn.execute("ROLLBACK"))
        except psycopg.Error:
            await_only(conn.close())

    async def run(self, fn: Callable[[StoreTx], T]) -> T:
        return await self._on_loop(fn, True, False)

    async def read(self, fn: Callable[[StoreTx], T]) -> T:
        return await self._on_loop(fn, False, True)

    async def run_claim(self, fn: Callable[[StoreTx], T]) -> T:
        # BEGIN, the claim with what it reads, COMMIT: one round trip instead of two.
        return await self._on_loop(fn, True, True)

    async def _on_loop(self, fn: Callable[[StoreTx], T], writable: bool, one_shot: bool) -> T:
        try:
            if self._pool_loop is not asyncio.get_running_loop():
                await self._open_pool()
            result: T = await run_on_loop(self._transaction, fn, writable, one_shot)
        except psycopg.OperationalError as err:  # the server or the network is down; no commit
            reason = str(err).strip()
            unavailable = StoreUnavailable(f"the store ({self.description}) is unavailable: {reason}")
            if not self._down:
                self._down = True
                log.warning("%s; calls answer UNAVAILABLE until it is back", unavailable.message)
            raise unavailable from err
        if self._down:
            self._down = False
            log.info("the store (%s) is available again", self.description)
        return result

    async def listen(self, on_announcement: Callable[[Announcement], None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._listen_tasks.add(task)
        try:
            await self._listen(on_announcement)
        finally:
            self._listen_tasks.discard(task)

    async def _listen(self, on_announcement: Callable[[Announcement], None]) -> None:
        delay = _LISTEN_BACKOFF_FIRST
        while not self._closed:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._connect_options
                ) as conn:
                    # Held while this session lives: the others count it (`listeners_besides`).
                    await conn.execute(f"SELECT pg_advisory_lock_shared({LISTENER_LOCK})")
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listener_pid = conn.info.backend_pid
                    # The others announce again at once, if they had stopped for want of listeners.
                    await conn.execute(
                        placeholders("SELECT pg_notify(?, ?)"), (CHANNEL, f"{self._origin}|hello||")
                    )
                    delay = _LISTEN_BACKOFF_FIRST
                    # What others committed while nobody listened is found only by a scan.
                    on_announcement(Announcement("resync", "", ""))
                    while True:
                        async for notify in conn.notifies(timeout=_LISTENERS_CHECK_SECONDS):
                            parts = notify.payload.split("|", 3)  # an instance ID may hold "|"
                            if len(parts) != 4 or parts[0] == self._origin:
                                continue
                            if parts[1] == "hello":
                                self._others_listen = True
                            else:
                                on_announcement(Announcement(parts[1], parts[2], parts[3]))
                        await self._count_listeners()
            except Exception as err:  # a lost connection, or anything else: listen again
                if self._closed:
                    return
                log.warning(
                    "%s: not listening for other engines' changes (retrying in %.1fs): %s",
                    self.description,
                    delay,
                    str(err).strip(),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LISTEN_BACKOFF_MAX)

    async def _count_listeners(self) -> None:
        """Whether another engine listens, so that this one's commits announce only then."""
        pid = self._listener_pid
        others = await self.read(lambda t: listeners_besides(cast(PostgresTx, t), pid))
        self._others_listen = others > 0

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._listen_tasks):
            task.cancel()
        if self._pool_loop is asyncio.get_running_loop():
            await self._pool.close()
