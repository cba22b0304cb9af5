"""The notices feed's fast path: `GET /v1/customers/{id}/notices` answered before FastAPI's
middleware, routing and dependency injection, which cost more than the answer itself when the
service keeps it (docs/benchmarks.md).

It calls the same service method as the route (`Service.customer_feed`: the token check, the
kept response or a fresh one) and writes the headers every response gets (`nosniff`, CORS for
allowed origins — the same functions the guards use). Whatever that method raises is left to
the route, which raises it again, so every refusal is answered by FastAPI's handlers exactly
as before: the fast path only ever writes a 200 or a 304. A request with a body goes the
whole way (the guards judge its size).

**Asking the store once per turn of the event loop.** Before answering from a kept response,
the service asks the store whether anything changed (`Dashboards.feed_changes`). The first feed
request of a turn of the loop asks; the others of the same turn do not need to: asyncio runs a
request's first step in the turn after the one that read it from its socket, so every request
answered before the turn ends (`loop.call_soon`) arrived before that question was asked, and an
answer as of that moment is one its client could have got. A write that completed before a
request was sent is always seen.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from commsync.api.access import Caller
from commsync.http.guards import Scope, Send, cors_headers, with_security_headers

if TYPE_CHECKING:
    from commsync.api.feed import FeedAnswer
    from commsync.api.service import Service
    from commsync.http.metrics import Metrics

FEED_PATH = re.compile(r"^/v1/customers/([^/]+)/notices$")
FEED_ERROR = "commsync.feed_error"  # in the scope: what the fast path's call raised
# No Cache-Control: without one (and without Last-Modified) a browser keeps the response only
# to revalidate it with If-None-Match, and a shared cache never stores a response to a request
# that carried Authorization (RFC 9111 §3.5, §4.2.2) — what "private, no-cache" would say.


def feed_headers(
    answer: FeedAnswer, if_none_match: bytes | None
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The status and headers of a feed response: 304 when the client holds this version."""
    if if_none_match is not None and _holds(if_none_match, answer.etag):
        return 304, [(b"etag", answer.etag)]
    return 200, [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(answer.body)).encode()),
        (b"etag", answer.etag),
    ]


def _holds(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 §13.1.2: any listed tag equal to ours (weakly compared), or `*`."""
    for tag in if_none_match.split(b","):
        tag = tag.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


class FeedFastPath:
    """The feed answered for one app's service (made when the service starts)."""

    def __init__(self, service: Service, metrics: Metrics) -> None:
        self.service, self.metrics = service, metrics
        self.asked = False  # the store was asked what changed in this turn of the event loop

    def _next_turn(self) -> None:
        self.asked = False

    async def answered(self, scope: Scope, send: Send) -> bool:
        """Answer a GET of a customer's feed if the service can; False: the app answers it."""
        match = FEED_PATH.match(scope["path"])
        if match is None:
            return False
        authorization = if_none_match = None
        origin = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value
            elif name == b"origin":
                origin = True
            elif (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
                return False
        started = time.perf_counter()
        recheck = not self.asked
        try:
            answer = self.service.customer_feed(
                match[1], Caller(False, authorization), recheck=recheck
            )
        except Exception as exc:  # the route raises it again, for FastAPI's handlers
            scope[FEED_ERROR] = exc
            return False
        if recheck:
            self.asked = True
            asyncio.get_running_loop().call_soon(self._next_turn)
        if origin or if_none_match is not None:
            status, headers = feed_headers(answer, if_none_match)
            headers = with_security_headers([*headers, *cors_headers(scope)] if origin else headers)
        else:  # the usual request: headers made once per kept answer
            status, wire = 200, answer.wire
            if wire is None:
                wire = answer.wire = with_security_headers(feed_headers(answer, None)[1])
            headers = wire
        self.metrics.feed(time.perf_counter() - started)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body if status == 200 else b""})
        return True
