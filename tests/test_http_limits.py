"""Bounded HTTP: a connection cap, header and body timeouts, and a log that does not flood.

The probe of the issue: 300 idle HTTP connections to an engine limited to 256 file descriptors
used to take every descriptor, so the gRPC ports accepted nothing and the log filled with
"Too many open files" tracebacks. Now the connections beyond the cap are refused with 503, the gRPC
API keeps serving and the refusals are one line per interval.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dapr_workflows_component.http_limits import automatic_connection_cap
from dapr_workflows_component.log_limits import BURST, RepeatFilter

from tests.harness.engine_process import EngineProcess
from tests.harness.raw_grpc import RawClient
from tests.harness.shared import unique

HEADER_TIMEOUT = 3
BODY_TIMEOUT = 2


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(
        tmp_path,
        "--http-header-timeout-seconds",
        str(HEADER_TIMEOUT),
        "--http-body-timeout-seconds",
        str(BODY_TIMEOUT),
        fd_limit=256,
    ).start()
    proc.wait_http()
    yield proc
    proc.kill()


def connect(engine: EngineProcess) -> socket.socket:
    host, port = engine.http_address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def get_status(engine: EngineProcess) -> int:
    """The status of one GET of an unknown instance on a fresh connection (0: no answer)."""
    with connect(engine) as s:
        s.sendall(b"GET /v1.0/workflows/dapr/nobody HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = s.recv(100)
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_idle_connections_under_256_descriptors_leave_the_grpc_api_serving(tmp_path: Path) -> None:
    idle_timeout = 8  # long enough for the checks below on a busy machine
    engine = EngineProcess(
        tmp_path, "--http-header-timeout-seconds", str(idle_timeout), fd_limit=256
    ).start()
    try:
        engine.wait_http()
        opened = time.monotonic()
        idle = [connect(engine) for _ in range(300)]
        try:
            time.sleep(1)  # the engine has accepted (or refused) every one of them
            # The cap is full of idle connections: a new one is refused with 503, not left hanging.
            assert get_status(engine) == 503
            with RawClient(engine.dapr_address, "dapr") as raw:
                iid = unique("fd-probe")
                assert raw.start("echo_input", iid, "1") == iid
                assert raw.get(iid) is not None
            refused = [s for s in idle if s.recv(20).startswith(b"HTTP/1.1 503")]
            assert len(refused) >= 300 - 64, "the connections beyond the cap were not refused"
            # The idle ones are closed after the header timeout, and HTTP serves again.
            time.sleep(max(opened + idle_timeout + 2 - time.monotonic(), 0))
            assert get_status(engine) == 404
        finally:
            for s in idle:
                s.close()
    finally:
        engine.kill()
    log = engine.log_text()
    # Running short of descriptors while idle connections pile up is allowed: accepting pauses, and
    # it is one line per interval, never a traceback per connection.
    assert "Traceback" not in log and "socket.accept() out of system resource" not in log, log[-3000:]
    assert log.count("out of file descriptors") <= 2, log[-3000:]
    assert 1 <= log.count("refused ") <= 3, log[-3000:]
    assert len(log.splitlines()) < 100, "the log floods"


def test_a_silent_or_half_sent_request_is_closed_after_the_header_timeout(engine: EngineProcess) -> None:
    silent = connect(engine)
    half = connect(engine)
    half.sendall(b"GET /v1.0/workflows/dapr/x HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    assert silent.recv(100) == b"" and half.recv(100) == b""
    assert HEADER_TIMEOUT - 0.5 < time.monotonic() - t0 < HEADER_TIMEOUT + 3
    silent.close()
    half.close()


def test_a_body_that_does_not_arrive_in_time_is_408(engine: EngineProcess) -> None:
    with connect(engine) as s:
        s.sendall(
            b"POST /v1.0/workflows/dapr/echo_input/start HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        t0 = time.monotonic()
        answer = s.recv(1000)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"ERR_REQUEST_TIMEOUT" in answer and b"--http-body-timeout-seconds" in answer
        assert BODY_TIMEOUT - 0.5 < time.monotonic() - t0 < BODY_TIMEOUT + 3


def test_the_automatic_connection_cap_leaves_most_descriptors_free() -> None:
    cap = automatic_connection_cap()
    assert 4 <= cap <= 1024


def test_repeated_log_lines_are_limited_and_counted() -> None:
    logger = logging.getLogger("test.repeats")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    repeat = RepeatFilter(interval=0.5)
    handler.addFilter(repeat)
    logger.addHandler(handler)
    try:
        for _ in range(1000):
            logger.error("accept failed: %s", "Too many open files")
        for n in range(3):  # other lines of the same template are not repeats
            logger.error("accept failed: %s", n)
        logger.info("an info line %s", 1)
        logger.info("an info line %s", 1)
        assert len(records) == BURST + 3 + 2, [r.getMessage() for r in records]
        time.sleep(0.6)
        logger.error("accept failed: %s", "Too many open files")
        assert f"[{1000 - BURST} more like this were not logged" in records[-1].getMessage()
    finally:
        logger.removeHandler(handler)
