"""durabletask's reference backend (`durabletask.testing`) in a process of its own, for tests that
compare our engine with it (its protobuf modules cannot be imported beside ours in one process)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.engine_process import free_port
from tests.harness.sdk_host import REPO


@contextmanager
def reference_backend(log: Path) -> Iterator[str]:
    """Starts the backend and yields its address; it is killed afterwards."""
    port = free_port()
    with open(log, "ab") as stderr:
        backend = subprocess.Popen(
            [sys.executable, "-m", "tests.sdk_apps.durabletask_reference_backend", str(port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert backend.stdout is not None and backend.stdout.readline().strip() == b"listening"
        yield f"localhost:{port}"
    finally:
        backend.kill()
        backend.wait(timeout=10)
