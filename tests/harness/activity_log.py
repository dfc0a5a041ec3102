"""Activity executions recorded in a file that every SDK host process appends to.

An activity's counter in memory dies with its host; a file survives a killed host and is shared by
two hosts, so a test can see an activity run again elsewhere. Imports no workflow SDK: the SDK hosts
(`tests/sdk_apps/*_durability_workflows.py`) and the test process both use it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def record(args: dict[str, Any], instance_id: str, task_id: int, key: str | None = None) -> int:
    """Appends one execution line to the file `args["log"]`, if given.

    With a `key`, returns how many runs of that key the file holds now (this one included); else 0.
    """
    path = args.get("log")
    if not path:
        return 0
    line = json.dumps(
        {
            "key": key or f"{instance_id}#{task_id}",
            "instance": instance_id,
            "task": task_id,
            "pid": os.getpid(),
        }
    )
    # One write of a short line with O_APPEND: lines of concurrent writers (threads, processes) do not mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    if key is None:
        return 0
    return sum(1 for e in read(Path(path)) if e["key"] == key)


def read(path: Path) -> list[dict[str, Any]]:
    """The complete lines of the file; a line another writer has not finished yet is left out."""
    if not path.exists():
        return []
    *lines, _unfinished = path.read_bytes().split(b"\n")
    return [json.loads(line) for line in lines if line.strip()]


def slow_step(args: dict[str, Any], instance_id: str, task_id: int) -> int:
    """The `slow_step` activity: records its run, sleeps long the first time for its key, then short."""
    runs = record(args, instance_id, task_id, key=args["key"])
    time.sleep(float(args["first_sleep"]) if runs <= 1 else float(args.get("sleep", 0)))
    return int(args["value"])


def expected_sum(base: int, chain: int, fan: int, event: int) -> dict[str, int]:
    """The output of `durable_sum` when each activity result is applied exactly once."""
    acc = sum(base + i for i in range(chain))
    squares = sum((base + j) ** 2 for j in range(fan))
    return {"chain": acc, "fan": squares, "event": event, "total": acc + squares + event}
