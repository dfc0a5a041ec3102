"""Runs durabletask's own reference backend (its in-memory `durabletask.testing` backend) on a
port, so tests compare the engine's behaviour with it:
`python -m tests.sdk_apps.durabletask_reference_backend PORT`."""

from __future__ import annotations

import sys
import threading

from durabletask.testing import create_test_backend


def main() -> None:
    backend = create_test_backend(port=int(sys.argv[1]))
    print("listening", flush=True)
    try:
        threading.Event().wait()
    finally:
        backend.stop()


if __name__ == "__main__":
    main()
