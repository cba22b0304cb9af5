"""Signed tokens: a customer's own notices feed and dismissals, and unsubscribe links.

A token is `v1.<payload>.<signature>`: the payload names the customer and an expiry; the signature
is an HMAC-SHA256 under the store's signing key (generated on first use), so the CLI that issues a
token and every `serve` worker that checks it agree without configuration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta

from commsync.errors import CommsyncError, Unauthorized
from commsync.model import jsontext
from commsync.model.durations import parse_minutes

MAX_LIFETIME = timedelta(days=3660)  # no token is valid for longer: ten years


class TokenError(Unauthorized):
    """Missing, malformed, forged or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, b"customer-token\x00" + payload.encode(), hashlib.sha256).digest())


def parse_ttl(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `1d12h`."""
    minutes = parse_minutes(text)
    if minutes is None:
        raise CommsyncError(f"invalid --ttl {text!r}: write it like 30d, 12h or 90m")
    if not 0 < minutes <= MAX_LIFETIME // timedelta(minutes=1):
        raise CommsyncError(f"invalid --ttl {text!r}: between one minute and ten years")
    return timedelta(minutes=minutes)


def issue_token(key: bytes, customer_id: str, expires: datetime) -> str:
    payload = _b64(
        json.dumps(
            {"c": customer_id, "x": int(expires.timestamp())}, separators=(",", ":")
        ).encode()
    )
    return f"v1.{payload}.{_sign(key, payload)}"


def token_claims(key: bytes, token: str, now: datetime) -> tuple[str, int]:
    """(customer id, expiry in seconds since the epoch) of a valid token; raises TokenError."""
    if not token.isascii() or len(token) > 4096:
        raise TokenError("malformed token")
    version, _, rest = token.partition(".")
    payload, _, signature = rest.partition(".")
    if version != "v1" or not payload or not signature:
        raise TokenError("malformed token")
    if not hmac.compare_digest(signature.encode(), _sign(key, payload).encode()):
        raise TokenError("invalid token")
    try:
        claims = jsontext.loads(_unb64(payload).decode("utf-8"), max_depth=2)
    except ValueError as exc:  # JsonTextError, UnicodeDecodeError, bad base64 (binascii.Error)
        raise TokenError("malformed token") from exc
    customer = claims.get("c") if isinstance(claims, dict) else None
    expiry = claims.get("x") if isinstance(claims, dict) else None
    if not isinstance(customer, str | int) or isinstance(customer, bool):
        raise TokenError("malformed token")
    if not isinstance(expiry, int) or isinstance(expiry, bool):
        raise TokenError("malformed token")
    customer = str(customer)
    if expiry <= int(now.timestamp()):
        raise TokenError("expired token")
    if expiry > int((now + MAX_LIFETIME).timestamp()):
        raise TokenError("token valid for longer than the longest lifetime")
    return customer, expiry


def unsubscribe_token(key: bytes, email_key: str) -> str:
    """Opaque and unguessable: an HMAC of the address under the store's key."""
    mac = hmac.digest(key, b"unsubscribe\x00" + email_key.encode(), "sha256")[:16]
    return _b64(mac)
