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
import sys
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


class BrokenConnections(logging.Filter):
    """SQLAlchemy's pool logs a traceback each time it discards a connection the store broke
    (an outage, a restart), and uvicorn one for each request it cancels when SIGTERM's grace runs
    out: expected then, and the failure itself is logged where it mattered. Such a record becomes
    one warning line naming the cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        asyncio = sys.modules.get("asyncio")  # not imported for it: start-up stays cheap
        if asyncio and record.name == "uvicorn.error" and isinstance(exc, asyncio.CancelledError):
            # SIGTERM's grace ran out while a request still waited (on a silent store): uvicorn
            # cancels it and would log the whole stack of the ASGI app.
            record.msg = "a request still in progress at shutdown was cancelled: %s"
            record.args = (str(exc) or "the shutdown grace ran out",)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        elif record.name.startswith("sqlalchemy.pool") and record.exc_info:
            cause = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {cause}"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(level: str = "warning", fmt: str | None = None) -> None:
    """Log commsync's records (and uvicorn's) at `level` to standard error, as text or JSON;
    other libraries' warnings and errors go the same way."""
    handler = logging.StreamHandler()
    chosen = fmt if fmt is not None else os.environ.get("COMMSYNC_LOG_FORMAT", "text")
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskTokens())
    handler.addFilter(BrokenConnections())
    root = logging.getLogger()  # libraries' warnings, in the same format
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("commsync", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
