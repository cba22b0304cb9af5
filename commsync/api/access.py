"""Who may do what: the local operator may do everything; over HTTP, the admin key allows the
platform's writes and events, and a customer's token allows that customer's own notices only."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from commsync.auth import token_claims
from commsync.errors import Forbidden, Unauthorized


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the operator at the command line (`local`), or an HTTP client's credential."""

    local: bool = False
    authorization: str | None = None  # the HTTP Authorization header, as sent

    @classmethod
    def http(cls, authorization: str | None) -> Caller:
        return cls(local=False, authorization=authorization)


OPERATOR = Caller(local=True)
MIN_API_KEY = 16  # characters: a shorter admin key could be guessed


def _bearer(caller: Caller) -> str:
    header = caller.authorization
    if not header or not header.startswith("Bearer "):
        raise Unauthorized("missing bearer token")
    return header[len("Bearer ") :].strip()


def require_admin(caller: Caller, api_key: str | None) -> None:
    """The admin key (COMMSYNC_API_KEY) for platform writes and events."""
    if caller.local:
        return
    if api_key is None:
        raise Unauthorized("the admin API is disabled: set COMMSYNC_API_KEY")
    if len(api_key) < MIN_API_KEY:
        raise Unauthorized(
            f"the admin API is disabled: COMMSYNC_API_KEY is shorter than {MIN_API_KEY} "
            "characters (make one with: openssl rand -hex 32)"
        )
    if not hmac.compare_digest(_bearer(caller).encode(), api_key.encode()):
        raise Unauthorized("invalid admin key")


def require_customer(caller: Caller, key: bytes, customer_id: str, now: datetime) -> None:
    """That customer's own token (401 without a valid one, 403 with another customer's)."""
    if caller.local:
        return
    require_claims(token_of(caller, key, now), customer_id)


def token_of(caller: Caller, key: bytes, now: datetime) -> tuple[str, int]:
    """(customer id, expiry) of the caller's valid customer token (401 without one)."""
    return token_claims(key, _bearer(caller), now)


def require_claims(claims: tuple[str, int], customer_id: str) -> None:
    """A valid token's claims name this customer (403 otherwise)."""
    if claims[0] != customer_id:
        raise Forbidden("this token is for another customer")
