"""Log formats of `serve` (--log-format): text for people, JSON lines for log shippers."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Neither format shows where a call was made, nor its thread or process: not looking them up
    # makes every record cheaper (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]
