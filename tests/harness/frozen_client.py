"""A worker process that opens work-item streams and takes what comes, to be frozen (SIGSTOP) by a test.

    python -m tests.harness.frozen_client ADDRESS DIALECT STREAMS

All streams share one channel, as an SDK worker's do. It prints `open` once the streams are asked
for, then only reads them, never answering a work item.
"""

from __future__ import annotations

import sys
import time

from tests.harness.raw_grpc import RawClient


def main() -> None:
    address, dialect, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = RawClient(address, dialect)
    streams = [client.work_items() for _ in range(count)]
    print("open", len(streams), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
