"""durabletask's in-memory backend alone in a process, until SIGTERM (for `--reference-process`)."""

from __future__ import annotations

import argparse
import signal
import threading

from durabletask.testing import create_test_backend


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reference_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    backend = create_test_backend(port=args.port)
    try:
        stop.wait()
    finally:
        backend.stop(grace=1)


if __name__ == "__main__":
    main()
