"""What a store operation raises when the database fails, rather than because of a bug.

Callers that carry on past one failed operation (apply's other actions, the delivery worker's
next round) catch these, and only these: anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from commsync.errors import StoreError


def __getattr__(name: str) -> Any:
    # STORE_ERRORS, every driver's errors (serve's 503 handlers), is built when first imported:
    # psycopg costs 50 ms of start-up. Commands catch `store_errors()` instead.
    if name == "STORE_ERRORS":
        import sqlalchemy.exc  # noqa: F401 - loaded, so store_errors() names its errors

        with contextlib.suppress(ImportError):  # the postgres extra may not be installed
            import psycopg  # noqa: F401
        errors = store_errors()
        globals()[name] = errors
        return errors
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def store_errors() -> tuple[type[Exception], ...]:
    """What a store failure can be now: SQLAlchemy's and psycopg's errors once they are loaded
    (opening a store loads SQLAlchemy, a PostgreSQL store psycopg; before that none of their
    errors can be raised). Evaluated where an error is caught, so a command that reads the store
    without them (`validate` on SQLite) never pays for importing them."""
    errors: tuple[type[Exception], ...] = (StoreError, sqlite3.Error)
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None:
        errors = (*errors, sa.SQLAlchemyError)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors = (*errors, psycopg.Error)
    return errors


if TYPE_CHECKING:
    # The ledger's hot path talks to the DB-API driver directly, so its errors come unwrapped.
    STORE_ERRORS: tuple[type[Exception], ...]


def describe(exc: BaseException) -> str:
    """One line naming a store failure: the driver's first line, never the SQL or its parameters
    (SQLAlchemy appends both, and parameters carry customers' addresses)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
