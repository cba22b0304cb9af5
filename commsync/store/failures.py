"""What a store operation raises when the database fails, rather than because of a bug.

Callers that carry on past one failed operation (apply's other actions, the delivery worker's
next round) catch these, and only these: anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import SQLAlchemyError

from commsync.errors import StoreError


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:  # the postgres extra is not installed
        return ()
    return (psycopg.Error,)


# The ledger's hot path talks to the DB-API driver directly, so its errors come unwrapped.
STORE_ERRORS: tuple[type[Exception], ...] = (
    StoreError,
    SQLAlchemyError,
    sqlite3.Error,
    *_driver_errors(),
)


def describe(exc: BaseException) -> str:
    """One line naming a store failure: the driver's first line, never the SQL or its parameters
    (SQLAlchemy appends both, and parameters carry customers' addresses)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
