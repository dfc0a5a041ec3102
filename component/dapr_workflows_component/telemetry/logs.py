"""Log formats of `serve` (--log-format): text for people, JSON lines for log shippers."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, as logging.Formatter writes it; the time of each second is formatted once (an
    engine logs a line for every workflow it starts and finishes)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: int | None = None
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"  # as logging's default_msec_format


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and `instanceID` when
    the call passed one (`log.info(..., extra={"instanceID": ...})`); an exception as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        instance_id = getattr(record, "instanceID", None)
        if instance_id is not None:
            entry["instanceID"] = str(instance_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str, stream: TextIO) -> None:
    """Logs of every logger to `stream`, at `level`, in `log_format` (text or json)."""
    if log_format not in LOG_FORMATS:
        raise SystemExit(f"dapr-workflows: --log-format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Neither format shows where a call was made, nor its thread or process: not looking them up
    # makes every record cheaper (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "configure_logging"]
