"""What every request and response of `commsync serve` passes through, before any route:

- a body larger than `limits.request_bytes` is refused with 413 before it is read whole, and a
  JSON body nested deeper than `limits.json_depth` with 422 before it is parsed;
- CORS is answered only for what a dashboard calls from a browser (the notices feed, dismiss,
  /widget.js) and only for `serve.allowed_origins`; admin routes never allow another origin;
- every response says `nosniff`; HTML pages also forbid framing, scripts and referrers;
- at most `limits.requests_in_flight` requests are worked on at once: past that a request is
  answered 503 with `Retry-After: 1` at once, so a saturated process sheds load instead of
  queueing it without bound (and never resets a connection).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from commsync.model import jsontext
from commsync.model.limits import DEFAULT_LIMITS, Limits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_BROWSER_PATHS = re.compile(r"^/v1/customers/[^/]+/notices(/.+/dismiss)?$|^/widget\.js$")
_HTML_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope.get("headers", []) if k == name), None)


def _app_state(scope: Scope, name: str, default: Any) -> Any:
    app = scope.get("app")
    return getattr(getattr(app, "state", None), name, default)


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json_body(content_type: bytes | None) -> bool:
    """Whether the app parses the body as JSON: FastAPI does without a content type, too."""
    if not content_type:
        return True
    kind = content_type.split(b";")[0].strip().lower()
    return kind == b"application/json" or (
        kind.startswith(b"application/") and kind.endswith(b"+json")
    )


class RequestLimits:
    """413 for a body over `limits.request_bytes`; 422 for JSON nested past `limits.json_depth`."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits: Limits = _app_state(scope, "limits", DEFAULT_LIMITS)
        too_big = (
            f"the request body is larger than {limits.request_bytes:,} bytes (limits.request_bytes)"
        )
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.request_bytes):
            await _answer(send, 413, too_big, [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.request_bytes:
                await _answer(send, 413, too_big, [(b"connection", b"close")])
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and _json_body(_header(scope, b"content-type")):
            try:
                jsontext.check_depth(body.decode("utf-8", "replace"), limits.json_depth)
            except jsontext.JsonTextError as exc:
                await _answer(send, 422, f"the request body is {exc.message}", [])
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def cors_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The CORS headers of a response to this (non-preflight) request: none unless it comes
    from an allowed origin to a path dashboards call from browsers."""
    origin = _header(scope, b"origin")
    if origin is None or not _BROWSER_PATHS.match(scope["path"]):
        return []
    if origin.decode("latin-1") not in _app_state(scope, "cors_origins", ()):
        return []
    return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` and the ones every response carries (and HTML pages' own)."""
    headers = [*headers, (b"x-content-type-options", b"nosniff")]
    content_type = next((v for k, v in headers if k == b"content-type"), b"")
    if content_type.startswith(b"text/html"):
        headers += _HTML_HEADERS
    return headers


class ScopedCors:
    """CORS only where a dashboard page calls from its own origin, for the allowed origins."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _header(scope, b"origin")
        if scope["type"] != "http" or origin is None or not _BROWSER_PATHS.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        allowed = origin.decode("latin-1") in _app_state(scope, "cors_origins", ())
        preflight = scope["method"] == "OPTIONS" and _header(
            scope, b"access-control-request-method"
        )
        if preflight:
            if not allowed:
                await _answer(
                    send, 403, "this origin may not call commsync", [(b"vary", b"origin")]
                )
                return
            headers = [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", b"GET, POST"),
                (b"access-control-allow-headers", b"authorization, content-type"),
                (b"access-control-max-age", b"600"),
                (b"vary", b"origin"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        extra = cors_headers(scope)

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_cors)


class SecurityHeaders:
    """`nosniff` on every response; no framing, scripts or referrers on HTML pages."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, guarded)


class InFlight:
    """Sheds load past `limits.requests_in_flight` requests in progress (one event loop, so a
    plain counter): 503 with `Retry-After`, answered before any route or store is touched.
    `/metrics` is always answered, so a saturated process can still be watched."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.current = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/metrics":
            await self.app(scope, receive, send)
            return
        limits: Limits = _app_state(scope, "limits", DEFAULT_LIMITS)
        if self.current >= limits.requests_in_flight:
            metrics = _app_state(scope, "metrics", None)
            if metrics is not None:
                metrics.shed.inc()
            detail = "serve is at capacity; try again shortly"
            await _answer(send, 503, detail, [(b"retry-after", b"1")])
            return
        self.current += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.current -= 1
