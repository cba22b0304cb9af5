"""Logging: the standard library's, configured in one place.

`configure(level)` is called by the command line (`--log-level`) and by each `serve` worker
process; `COMMSYNC_LOG_FORMAT=json` writes one JSON object per line for log shippers. Secrets
never reach a record: commsync logs no credentials, and the one secret a request path carries
— an unsubscribe token — is masked in access logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime

LEVELS = ("critical", "error", "warning", "info", "debug")
_TOKEN_PATH = re.compile(r"(/v1/unsubscribe/)[^\s/?\"]+")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class MaskTokens(logging.Filter):
    """Unsubscribe tokens in request paths (access logs) are shown as `…`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_PATH.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_PATH.sub(r"\1…", record.msg)
        return True


def configure(level: str = "warning", fmt: str | None = None) -> None:
    """Log commsync's records (and uvicorn's) at `level` to standard error, as text or JSON."""
    handler = logging.StreamHandler()
    chosen = fmt if fmt is not None else os.environ.get("COMMSYNC_LOG_FORMAT", "text")
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskTokens())
    for name in ("commsync", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
