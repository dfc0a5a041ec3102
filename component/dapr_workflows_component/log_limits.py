"""Repeated log lines are rate-limited, so that a flood of one failure cannot fill the disk or bury
everything else.

Lines of the same logger, level and message template count as repeats, whatever their arguments.
Warnings and errors are limited (and info lines that ask for it with `extra=RATE_LIMITED`); each
kind may log a few lines per interval, the rest are counted and the count is told with the next
line of that kind that is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

INTERVAL_SECONDS = 10.0
BURST = 5
RATE_LIMITED = {"rate_limited": True}


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    def __init__(self, interval: float = INTERVAL_SECONDS, burst: int = BURST) -> None:
        super().__init__()
        self.interval = interval
        self.burst = burst
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not getattr(record, "rate_limited", False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window.started >= self.interval:
                suppressed = window.suppressed if window else 0
                window = self._windows[key] = _Window(now)
                if suppressed:
                    record.msg = (
                        f"{record.msg} [{suppressed} more like this were not logged in the last "
                        f"{self.interval:g}s]"
                    )
            if window.logged >= self.burst:
                window.suppressed += 1
                return False
            window.logged += 1
            if window.logged == self.burst:
                record.msg = f"{record.msg} [repeats of this line are now limited for {self.interval:g}s]"
        return True


def limit_repeats(logger: logging.Logger | None = None) -> RepeatFilter:
    """Adds a `RepeatFilter` to every handler of `logger` (the root logger by default)."""
    repeat = RepeatFilter()
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(repeat)
    return repeat


__all__ = ["RATE_LIMITED", "RepeatFilter", "limit_repeats"]
