"""The request loop of an SDK host process; imports no workflow SDK itself.

Each stdin line is `{"id", "op", "args"}`; each stdout line answers one request with `result` or
`error`. Requests run on a thread pool, so a long wait does not hold up other calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Ops = dict[str, Callable[..., Any]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--no-worker", action="store_true")
    return parser.parse_args()


def serve(ops: Ops, shutdown: Callable[[], None]) -> None:
    out_lock = threading.Lock()

    def answer(msg: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(msg) + "\n")
            sys.stdout.flush()

    def handle(request: dict[str, Any]) -> None:
        op = request["op"]
        try:
            if op == "shutdown":
                shutdown()
                answer({"id": request["id"], "result": None})
                return
            result = ops[op](**request.get("args", {}))
            answer({"id": request["id"], "result": result})
        except Exception as exc:  # the test side sees the SDK's exception class and message
            traceback.print_exc(file=sys.stderr)
            answer({"id": request["id"], "error": {"kind": type(exc).__name__, "message": str(exc)}})

    pool = ThreadPoolExecutor(max_workers=64)
    for line in sys.stdin:
        if line.strip():
            pool.submit(handle, json.loads(line))
    pool.shutdown(wait=False, cancel_futures=True)
