"""Repeated log lines are rate-limited, so that a flood of one failure cannot fill the disk or bury
everything else.

Lines of the same logger and level with the same text count as repeats (a line about another
instance or another reason is not one). Warnings and errors are limited (and info lines that ask for
it with `extra=RATE_LIMITED`); each may be logged a few times per interval, the rest are counted and
the count is told with the next one logged.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

INTERVAL_SECONDS = 10.0
BURST = 5
# Distinct lines remembered at most; windows that ended are forgotten first.
MAX_KEYS = 10_000
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
        key = (record.name, record.levelno, record.getMessage())
        now = time.monotonic()
        with self._lock:
            if len(self._windows) >= MAX_KEYS:
                self._prune(now)
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


    def _prune(self, now: float) -> None:
        ended = [k for k, w in self._windows.items() if now - w.started >= self.interval]
        for k in ended or list(self._windows)[: MAX_KEYS // 2]:
            del self._windows[k]


def limit_repeats(logger: logging.Logger | None = None) -> RepeatFilter:
    """Adds a `RepeatFilter` to every handler of `logger` (the root logger by default)."""
    repeat = RepeatFilter()
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(repeat)
    return repeat


__all__ = ["RATE_LIMITED", "RepeatFilter", "limit_repeats"]
