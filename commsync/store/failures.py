"""What a store operation raises when the database fails, rather than because of a bug.

Callers that carry on past one failed operation (apply's other actions, the delivery worker's
next round) catch these, and only these: anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from commsync.errors import StoreError


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:  # the postgres extra is not installed
        return ()
    return (psycopg.Error,)


def __getattr__(name: str) -> Any:
    # STORE_ERRORS is built when first imported: psycopg costs 50 ms of start-up, which commands
    # that never catch a store failure by class (`token`, `validate`) need not pay.
    if name == "STORE_ERRORS":
        errors = (StoreError, SQLAlchemyError, sqlite3.Error, *_driver_errors())
        globals()[name] = errors
        return errors
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    # The ledger's hot path talks to the DB-API driver directly, so its errors come unwrapped.
    STORE_ERRORS: tuple[type[Exception], ...]


def describe(exc: BaseException) -> str:
    """One line naming a store failure: the driver's first line, never the SQL or its parameters
    (SQLAlchemy appends both, and parameters carry customers' addresses)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
