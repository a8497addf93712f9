"""JSON log lines on stdout: one object per line, easy for Docker, Loki or jq."""

from __future__ import annotations

import logging
import sys
import time

from . import fastjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if getattr(record, "request_id", None):
            line["request_id"] = record.request_id
        line.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return fastjson.dumps(line)


def configure_logging(level: str) -> None:
    """Idempotent: create_app may run several times in one process (tests)."""
    logger = logging.getLogger("gateway")
    logger.setLevel(level)
    if not any(getattr(h, "_gateway", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        handler._gateway = True
        logger.addHandler(handler)
    logger.propagate = False
