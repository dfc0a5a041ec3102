"""The statements of one PostgreSQL transaction, sent through libpq's pipeline mode directly.

psycopg's cursors cost the engine far more than the statements: in pipeline mode each `execute`
polls the socket and flushes it (a `send` per statement), and builds a cursor, a query object and a
prepared-statement lookup. Here a transaction queues its statements and sends all those queued in
one write when it needs an answer (a read, the COMMIT): one `send` per round trip. The parts are
psycopg's own: its libpq wrapper (`psycopg.pq`), its adapters (`Transformer`, so values are dumped
and loaded as by a cursor) and its error classes (`errors.error_from_result`, so a deadlock is
still `DeadlockDetected`).

Each statement is prepared on its connection the first time it is used (a Parse in the same
pipeline), so the server plans it once per connection. Parameters go without types: the server
infers each from where it stands, as it does for psycopg's strings; bytes and lists of bytes go in
binary, the rest as text. Results come in binary.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.rows import TupleRow

from .postgres_loop import wait_for_socket

# Statements prepared per connection at most; a statement past the limit (the management listing
# builds many shapes of query) runs unprepared.
_MAX_PREPARED = 200

_QUESTION = re.compile(r"\?")

_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)


def _numbered(sql: str) -> bytes:
    """`?` placeholders as libpq's `$1, $2, ...` (no statement has a `?` of its own)."""
    counter = iter(range(1, 1 << 16))
    return _QUESTION.sub(lambda _: f"${next(counter)}", sql).encode()


_SQL_CACHE: dict[str, bytes] = {}


def _sql_bytes(sql: str) -> bytes:
    found = _SQL_CACHE.get(sql)
    if found is None:
        found = _SQL_CACHE[sql] = _numbered(sql)
        if len(_SQL_CACHE) > 10_000:  # dynamic queries (management filters): keep it bounded
            _SQL_CACHE.clear()
    return found


def _format(value: Any) -> PyFormat:
    if isinstance(value, bytes):
        return PyFormat.BINARY
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return PyFormat.BINARY
    return PyFormat.TEXT


class NeedsTransaction(Exception):
    """A read in one round trip (`Wire.single_shot`) wanted a second one: it runs again, in a
    transaction of its own."""


class WireResult:
    """What a cursor gives of one statement (`sql.Cursor`): its rows and its row count."""

    __slots__ = ("rowcount", "rows")

    def __init__(self) -> None:
        self.rows: list[TupleRow] = []
        self.rowcount = -1

    def fetchone(self) -> TupleRow | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[TupleRow]:
        return self.rows


class _Prepared:
    """The statements prepared on one connection, by SQL, with their names."""

    def __init__(self) -> None:
        self.names: dict[bytes, bytes] = {}
        self.count = 0  # names are never reused, even of a Parse that failed


_PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection[TupleRow], _Prepared] = (
    weakref.WeakKeyDictionary()
)


class Wire:
    """One transaction's statements on one pooled connection (used by one thread at a time)."""

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        self._conn = conn
        self._pg = conn.pgconn
        self._adapt = Transformer(conn)
        self._encoding = conn.info.encoding
        prepared = _PREPARED.get(conn)
        if prepared is None:
            prepared = _PREPARED[conn] = _Prepared()
        self._prepared = prepared
        # Queued: (SQL, arguments, where its result goes; None: nobody reads it).
        self._queue: list[tuple[bytes, Sequence[Any], WireResult | None]] = []
        # A read that takes one round trip commits in it (BEGIN, the statements, COMMIT): most
        # reads read one row. One that needs a second raises `NeedsTransaction`.
        self.single_shot = False
        self.round_trips = 0

    def send(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Queues a statement whose result nobody reads: its error, if any, surfaces at the next
        round trip (the rest of the transaction is skipped by the server)."""
        self._queue.append((_sql_bytes(sql), args, None))

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> WireResult:
        """Runs the queued statements and this one in one round trip; this one's rows."""
        return self.fetch_many(((sql, args),))[0]

    def fetch_many(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[WireResult]:
        if self.single_shot and self.round_trips:
            raise NeedsTransaction()
        results = []
        for sql, args in statements:
            result = WireResult()
            self._queue.append((_sql_bytes(sql), args, result))
            results.append(result)
        if self.single_shot:
            self.send("COMMIT")
        self.round_trip()
        return results

    def finish_single_shot(self) -> None:
        """The end of a single-shot read: committed in its round trip; one that took none still
        goes to the server (BEGIN, COMMIT: a readiness check asks whether it answers)."""
        if self.round_trips == 0:
            self.send("COMMIT")
        elif self._queue:
            raise NeedsTransaction()
        self.leave()

    def round_trip(self) -> None:
        """Sends what is queued in one write and reads every answer; raises the first error."""
        queue, self._queue = self._queue, []
        if not queue:
            return
        self.round_trips += 1
        pg = self._pg
        if pg.pipeline_status == pq.PipelineStatus.OFF:
            pg.enter_pipeline_mode()
        # What each answer is for: a new statement's Parse (its SQL), or a statement (its result).
        expected: list[tuple[bytes | None, WireResult | None]] = []
        for sql, args, result in queue:
            values: Sequence[pq.abc.Buffer | None] | None = None
            formats: Sequence[pq.Format] | None = None
            if args:
                values = self._adapt.dump_sequence(args, [_format(a) for a in args])
                formats = self._adapt.formats
            names = self._prepared.names
            name = names.get(sql)
            if name is None and len(names) < _MAX_PREPARED:
                name = b"dw_%d" % self._prepared.count
                self._prepared.count += 1
                names[sql] = name  # taken back below unless the Parse succeeds
                pg.send_prepare(name, sql)
                expected.append((sql, None))
            if name is not None:
                pg.send_query_prepared(name, values, param_formats=formats, result_format=pq.Format.BINARY)
            else:
                pg.send_query_params(sql, values, param_formats=formats, result_format=pq.Format.BINARY)
            expected.append((None, result))
        pg.pipeline_sync()
        self._flush()
        error: psycopg.Error | None = None
        for parsed, result in expected:
            ok = True
            while (res := self._next_result()) is not None:
                status = res.status
                if status == pq.ExecStatus.FATAL_ERROR:
                    ok = False
                    if error is None:
                        error = pg_errors.error_from_result(res, encoding=self._encoding)
                elif status == pq.ExecStatus.PIPELINE_ABORTED:
                    ok = False
                elif result is not None and status in _OK:
                    self._adapt.set_pgresult(res)
                    result.rows = self._adapt.load_rows(0, res.ntuples, tuple)
                    tuples = res.command_tuples
                    result.rowcount = tuples if tuples is not None else -1
            if parsed is not None and not ok:
                self._prepared.names.pop(parsed, None)
        sync = self._next_result()
        if sync is None or sync.status != pq.ExecStatus.PIPELINE_SYNC:
            raise psycopg.OperationalError("the server's answers do not match the statements sent")
        if error is not None:
            raise error

    def leave(self) -> None:
        """Plain mode again (after the last round trip), as psycopg expects its connection."""
        self.round_trip()
        if self._pg.pipeline_status != pq.PipelineStatus.OFF:
            self._pg.exit_pipeline_mode()

    def abandon(self) -> None:
        """Drops what is queued and leaves pipeline mode; raises `psycopg.Error` if answers are
        still unread (then the connection cannot be used any more)."""
        self._queue = []
        if not self._pg.pipeline_status == pq.PipelineStatus.OFF:
            self._pg.exit_pipeline_mode()

    def _flush(self) -> None:
        # While the server cannot take more, it may be waiting for us to read its answers (libpq:
        # wait for either, and consume what arrived before flushing again).
        while self._pg.flush():
            if wait_for_socket(self._pg.socket, read=True, write=True):
                self._pg.consume_input()

    def _next_result(self) -> pq.abc.PGresult | None:
        pg = self._pg
        while pg.is_busy():
            wait_for_socket(pg.socket)
            pg.consume_input()
        return pg.get_result()
