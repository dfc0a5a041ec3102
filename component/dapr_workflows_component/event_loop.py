"""Which asyncio event loop `serve` runs on (`--event-loop`).

uvloop's loop runs the scheduling every gRPC call and work item goes through (callbacks, timers,
the poll for ready sockets) in C: measured on the benchmark's one-activity workflow, the engine
spends about a tenth less CPU per workflow on it. grpc.aio works on it unchanged (its completion
queue wakes the loop through a socket the loop reads). It is an optional dependency
(`pip install 'dapr-workflows[uvloop]'`; not available on Windows).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any

EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def chosen_loop(choice: str) -> str:
    """The loop `choice` names: "auto" is uvloop when it is installed, asyncio otherwise."""
    name = choice.strip().lower()
    if name not in EVENT_LOOPS:
        raise SystemExit(
            f"dapr-workflows: --event-loop must be one of {', '.join(EVENT_LOOPS)}, not {choice!r}"
        )
    installed = importlib.util.find_spec("uvloop") is not None
    if name == "uvloop" and not installed:
        raise SystemExit(
            "dapr-workflows: --event-loop uvloop needs uvloop: pip install 'dapr-workflows[uvloop]'"
        )
    if name == "auto":
        return "uvloop" if installed else "asyncio"
    return name


def running_loop_name() -> str:
    """The running loop's kind, for the log: uvloop or asyncio."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def run(main: Callable[[], Coroutine[Any, Any, None]], choice: str) -> None:
    """Runs the coroutine `main()` to completion on the loop `choice` names."""
    loop = chosen_loop(choice)
    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
