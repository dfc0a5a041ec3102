"""What the three apps share: run a workflow runtime until Ctrl+C (or SIGTERM from `dapr run`)."""

from __future__ import annotations

import signal
import threading

import dapr.ext.workflow as wf


def serve(runtime: wf.WorkflowRuntime, name: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runtime.start()
    print(f"{name}: worker started", flush=True)
    stop.wait()
    runtime.shutdown()
