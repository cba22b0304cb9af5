"""The hostile-request corpus: what an attacker sends `commsync serve` (the HTTP cases of
../shared/design/hostile-inputs.md, and more).

One real `commsync serve` process (uvicorn on loopback, delivery worker running) on a copy of the
demo, applied, with a notice full of hostile HTML. Every case must be answered with its 4xx (or
the one success named), never 5xx, never a traceback, quickly; a JSON refusal says what was wrong.
When all cases ran, the store's data and the outbox are exactly as before, the server's log
holds no traceback and no secret, it stops cleanly on SIGTERM and its peak memory stayed under
512 MB.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from commsync.store.sql import open_store
from tests.conftest import EXAMPLES
from tests.helpers import Repo, dump_store
from tests.hostile import EXE, MAX_RSS_MB
from tests.smtp_server import free_port

ADMIN_KEY = "hostile-admin-key-5f2c1a9e7b"
ORIGIN = "https://acme.example"  # the network URL: the feed's default allowed origin
EVIL = "https://evil.example"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
HOSTILE_HTML = (
    "<script>alert(1)</script><img src=x onerror=alert(2)><svg onload=alert(3)></svg>"
    '<a href="javascript:alert(4)">j</a><a href="data:text/html,x">d</a>'
    '<a href="vbscript:x">v</a><iframe src="https://evil.example"></iframe>'
    '<form action="https://evil.example"><input name=p></form><style>*{}</style>'
    '<math><mi xlink:href="javascript:alert(5)">m</mi></math>'
    '<p style="position:fixed" onclick="alert(6)">text</p><b onmouseover=alert(7)>bold</b>'
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed(key: bytes, claims: Any) -> str:
    """A token with any claims (JSON, or `str`: the payload's text), signed as tokens are."""
    payload = _b64((claims if isinstance(claims, str) else json.dumps(claims)).encode())
    mac = hmac.new(key, b"customer-token\x00" + payload.encode(), hashlib.sha256).digest()
    return f"v1.{payload}.{_b64(mac)}"


@dataclass(frozen=True)
class Request:
    """One hostile request. `status` is what it must be answered with; `detail` (a regex) must
    match the JSON refusal's detail, `absent` header names must not be in the response."""

    name: str
    method: str
    path: str
    status: int | tuple[int, ...]
    headers: Mapping[str, str | bytes] = field(default_factory=dict)
    body: bytes | None = None
    json: Any = None
    detail: str | None = None
    absent: tuple[str, ...] = ()
    present: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    text: str
    seconds: float


@dataclass
class Server:
    root: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    tokens: dict[str, str]
    key: bytes


def _payment(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "events/payment_received.json").read_text())
    data.update(changes)
    return data


def _event(**changes: Any) -> dict[str, Any]:
    return {"type": "payment_received", "key": "hostile", "data": _payment(**changes)}


def _deep(levels: int) -> bytes:
    return b'{"type": "payment_received", "data": {"a": ' + b"[" * levels + b"]" * levels + b"}}"


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FEED = "/v1/customers/1001/notices"
BIG = b"x" * 10_000_000


def requests(tokens: Mapping[str, str], key: bytes) -> list[Request]:
    ada, grace = tokens["1001"], tokens["1002"]
    now = datetime.now(UTC)
    later = int((now + timedelta(days=1)).timestamp())
    _, payload, signature = ada.split(".")
    grace_payload = grace.split(".")[1]

    def bearer(token: str | bytes) -> dict[str, str | bytes]:
        return {
            "Authorization": (b"Bearer " + token) if isinstance(token, bytes) else f"Bearer {token}"
        }

    feed_refusals = [
        Request("feed without a token", "GET", FEED, 401, detail="missing bearer token"),
        Request(
            "feed with a non-ASCII bearer",
            "GET",
            FEED,
            401,
            headers=bearer("v1.\xfc.\xe9".encode("latin-1")),
        ),
        Request("feed with a UTF-8 bearer", "GET", FEED, 401, headers=bearer("v1.ü.é".encode())),
        Request(
            "feed with a 100 KB token",
            "GET",
            FEED,
            (400, 401, 431),
            headers=bearer("v1." + "a" * 100_000 + ".b"),
        ),
        Request(
            "feed with a 5 KB token", "GET", FEED, 401, headers=bearer("v1." + "a" * 5_000 + ".b")
        ),
        Request("feed with another customer's token", "GET", FEED, 403, headers=bearer(grace)),
        Request(
            "a payload of another customer under my signature",
            "GET",
            "/v1/customers/1002/notices",
            401,
            headers=bearer(f"v1.{grace_payload}.{signature}"),
        ),
        Request("a token without a signature", "GET", FEED, 401, headers=bearer(f"v1.{payload}.")),
        Request(
            "a token of version 2", "GET", FEED, 401, headers=bearer(f"v2.{payload}.{signature}")
        ),
        Request(
            "a signature in upper case",
            "GET",
            FEED,
            401,
            headers=bearer(f"v1.{payload}.{signature.upper()}"),
        ),
        Request(
            "a signature with padding",
            "GET",
            FEED,
            401,
            headers=bearer(f"v1.{payload}.{signature}=="),
        ),
        Request(
            "an expired token, validly signed",
            "GET",
            FEED,
            401,
            headers=bearer(signed(key, {"c": "1001", "x": int(now.timestamp()) - 60})),
            detail="expired token",
        ),
        Request(
            "a token that expires in 10^30 seconds",
            "GET",
            FEED,
            401,
            headers=bearer(signed(key, {"c": "1001", "x": 10**30})),
        ),
        Request(
            "a token that expires in 1e30 (a float)",
            "GET",
            FEED,
            401,
            headers=bearer(signed(key, {"c": "1001", "x": 1e30})),
        ),
        Request(
            "a token that expires at NaN",
            "GET",
            FEED,
            401,
            headers=bearer(signed(key, {"c": "1001", "x": "nan"})),
        ),
        Request(
            "a token for a list of customers",
            "GET",
            FEED,
            (401, 403),
            headers=bearer(signed(key, {"c": ["1001"], "x": later})),
        ),
        Request(
            "a token whose payload is a list",
            "GET",
            FEED,
            401,
            headers=bearer(signed(key, ["1001", later])),
        ),
        Request(
            "a token whose payload nests 1,300 deep",
            "GET",
            FEED,
            401,
            headers=bearer(signed(key, "[" * 1300 + "]" * 1300)),
        ),
        Request(
            "a token without an expiry",
            "GET",
            FEED,
            401,
            headers=bearer(signed(key, {"c": "1001"})),
        ),
        Request(
            "Basic instead of Bearer", "GET", FEED, 401, headers={"Authorization": f"Basic {ada}"}
        ),
        Request("the admin key as a customer token", "GET", FEED, 401, headers=ADMIN),
        Request("a token in the query string only", "GET", f"{FEED}?token={ada}", 401),
    ]
    paths = [
        Request(
            "an emoji customer id",
            "GET",
            "/v1/customers/%F0%9F%92%A9/notices",
            403,
            headers=bearer(ada),
        ),
        Request("a NUL customer id", "GET", "/v1/customers/%00/notices", 403, headers=bearer(ada)),
        Request(
            "a customer id of invalid UTF-8",
            "GET",
            "/v1/customers/%ff%fe/notices",
            403,
            headers=bearer(ada),
        ),
        Request(
            "a customer id climbing out",
            "GET",
            "/v1/customers/..%2F..%2Fetc/notices",
            (403, 404),
            headers=bearer(ada),
        ),
        Request(
            "a customer id past int",
            "GET",
            "/v1/customers/" + "9" * 30 + "/notices",
            403,
            headers=bearer(ada),
        ),
        Request(
            "a customer id of 20,000 characters",
            "GET",
            "/v1/customers/" + "a" * 20_000 + "/notices",
            (403, 404, 414),
            headers=bearer(ada),
        ),
        Request("a feed in TRACE", "TRACE", FEED, 405, headers=bearer(ada)),
        Request("no docs pages", "GET", "/docs", 404),
        Request("no redoc pages", "GET", "/redoc", 404),
    ]
    dismissals = [
        Request(
            "dismissing for another customer",
            "POST",
            "/v1/customers/1002/notices/notices/new-block-editor/dismiss",
            403,
            headers=bearer(ada),
        ),
        Request(
            "dismissing a notice that does not exist",
            "POST",
            "/v1/customers/1001/notices/nope/dismiss",
            404,
            headers=bearer(ada),
        ),
        Request(
            "dismissing a notice id climbing out",
            "POST",
            "/v1/customers/1001/notices/../../../etc/passwd/dismiss",
            404,
            headers=bearer(ada),
        ),
        Request(
            "dismissing without a token",
            "POST",
            "/v1/customers/1001/notices/notices/new-block-editor/dismiss",
            401,
        ),
        Request(
            "dismissing with a 10 MB body",
            "POST",
            "/v1/customers/1001/notices/notices/new-block-editor/dismiss",
            413,
            headers=bearer(ada),
            body=BIG,
        ),
    ]
    admin = [
        Request("events without a key", "POST", "/v1/events", 401, json=_event()),
        Request(
            "events with a wrong key",
            "POST",
            "/v1/events",
            401,
            headers=bearer("wrong"),
            json=_event(),
            detail="invalid admin key",
        ),
        Request(
            "events with a prefix of the key",
            "POST",
            "/v1/events",
            401,
            headers=bearer(ADMIN_KEY[:-1]),
            json=_event(),
        ),
        Request(
            "events with the key and more",
            "POST",
            "/v1/events",
            401,
            headers=bearer(ADMIN_KEY + "x"),
            json=_event(),
        ),
        Request(
            "events with the key in lower-case 'bearer'",
            "POST",
            "/v1/events",
            401,
            headers={"Authorization": f"bearer{ADMIN_KEY}"},
            json=_event(),
        ),
        Request(
            "events with a non-ASCII key",
            "POST",
            "/v1/events",
            401,
            headers=bearer("kéy".encode("latin-1")),
            json=_event(),
        ),
        Request(
            "events with a customer token",
            "POST",
            "/v1/events",
            401,
            headers=bearer(ada),
            json=_event(),
        ),
        Request(
            "customers without a key",
            "PUT",
            "/v1/customers/1001",
            401,
            json={"email": "eve@evil.example"},
        ),
        Request("products without a key", "PUT", "/v1/products/pro", 401, json={"name": "Owned"}),
        Request("memberships without a key", "PUT", "/v1/customers/1001/memberships", 401, json=[]),
    ]
    events = [
        Request(
            "an event body that is not JSON",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            body=b"{oops",
        ),
        Request(
            "an event of wrong types",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json={"type": 1, "data": []},
        ),
        Request(
            "an event of an unknown type",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json={"type": "nope", "data": {}},
            detail="unknown event 'nope'",
        ),
        Request(
            "an event type of 10,000 characters",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json={"type": "a" * 10_000, "data": {}},
        ),
        Request(
            "an idempotency key of 10,000 characters",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json={**_event(), "key": "k" * 10_000},
        ),
        Request("an event body of 10 MB", "POST", "/v1/events", 413, headers=ADMIN, body=BIG),
        Request(
            "an event body of 10 MB, chunked",
            "POST",
            "/v1/events",
            413,
            headers={**ADMIN, "Transfer-Encoding": "chunked"},
            body=BIG,
        ),
        Request(
            "an event nested 1,000 deep",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            body=_deep(1_000),
            detail="nested deeper than 32",
        ),
        Request(
            "an event nested 100,000 deep",
            "POST",
            "/v1/events",
            (413, 422),
            headers=ADMIN,
            body=_deep(100_000),
        ),
        Request(
            "an event payload of 100 KB",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json=_event(customer_name="a" * 100_000),
            detail="payload",
        ),
        Request(
            "a customer address with a header",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json=_event(customer_user_email="ada@example.com\r\nBcc: eve@evil.example"),
            detail="customer_user_email must be one email address",
        ),
        Request(
            "two customer addresses",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json=_event(customer_user_email="ada@example.com, eve@evil.example"),
            detail="customer_user_email",
        ),
        Request(
            "a customer name with a header",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json=_event(customer_name="Ada\r\nBcc: eve@evil.example"),
            detail="customer_name must be one line",
        ),
        Request(
            "a customer name with a NUL",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            json=_event(customer_name="Ada\x00"),
            detail="customer_name",
        ),
        Request(
            "a lone surrogate in the payload",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            body=json.dumps(_event(payment_total="\ud800")).encode(),
        ),
        Request(
            "NaN in the payload",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            body=json.dumps(_event(payment_total=float("nan"))).encode(),
        ),
        Request(
            "Infinity in the payload",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            body=json.dumps(_event(payment_id=float("inf"))).encode(),
        ),
        Request(
            "a payload number past int",
            "POST",
            "/v1/events",
            422,
            headers=ADMIN,
            body=b'{"type": "payment_received", "data": {"payment_id": ' + b"9" * 5_000 + b"}}",
        ),
        Request(
            "an event sent as a form",
            "POST",
            "/v1/events",
            422,
            headers={**ADMIN, "Content-Type": "application/x-www-form-urlencoded"},
            body=b"type=payment_received",
        ),
    ]
    platform = [
        Request(
            "a customer address with a header (PUT)",
            "PUT",
            "/v1/customers/1001",
            422,
            headers=ADMIN,
            json={"email": "ada@example.com\r\nBcc: eve@evil.example"},
        ),
        Request(
            "a customer with two addresses (PUT)",
            "PUT",
            "/v1/customers/1001",
            422,
            headers=ADMIN,
            json={"email": "ada@example.com, eve@evil.example"},
        ),
        Request(
            "a customer first name with CR/LF (PUT)",
            "PUT",
            "/v1/customers/1001",
            422,
            headers=ADMIN,
            json={"email": "ada@example.com", "first_name": "Ada\r\nBcc: x@evil.example"},
        ),
        Request(
            "a customer first name with a NUL (PUT)",
            "PUT",
            "/v1/customers/1001",
            422,
            headers=ADMIN,
            json={"email": "ada@example.com", "first_name": "A\x00da"},
        ),
        Request(
            "a customer id of 1,000 characters (PUT)",
            "PUT",
            "/v1/customers/" + "1" * 1_000,
            422,
            headers=ADMIN,
            json={"email": "x@example.com"},
        ),
        Request(
            "a customer body of 10 MB (PUT)",
            "PUT",
            "/v1/customers/1001",
            413,
            headers=ADMIN,
            body=BIG,
        ),
        Request(
            "a customer nested deep (PUT)",
            "PUT",
            "/v1/customers/1001",
            422,
            headers=ADMIN,
            body=b'{"email": "a@example.com", "x": ' + b"[" * 1_000 + b"]" * 1_000 + b"}",
        ),
        Request(
            "a product slug with spaces",
            "PUT",
            "/v1/products/Bad%20Slug!",
            422,
            headers=ADMIN,
            json={"name": "Bad"},
            detail="slug",
        ),
        Request(
            "a product slug of 1,000 characters",
            "PUT",
            "/v1/products/" + "p" * 1_000,
            422,
            headers=ADMIN,
            json={"name": "Long"},
        ),
        Request(
            "a product name with CR/LF",
            "PUT",
            "/v1/products/pro",
            422,
            headers=ADMIN,
            json={"name": "Pro\r\nX-Evil: 1"},
        ),
        Request(
            "a membership of an unknown product",
            "PUT",
            "/v1/customers/1001/memberships",
            422,
            headers=ADMIN,
            json=[{"product": "gold", "status": "active"}],
            detail="gold",
        ),
        Request(
            "a membership status in French",
            "PUT",
            "/v1/customers/1001/memberships",
            422,
            headers=ADMIN,
            json=[{"product": "pro", "status": "état"}],
        ),
        Request(
            "memberships that are not a list",
            "PUT",
            "/v1/customers/1001/memberships",
            422,
            headers=ADMIN,
            json={"product": "pro"},
        ),
        Request(
            "memberships nested deep",
            "PUT",
            "/v1/customers/1001/memberships",
            422,
            headers=ADMIN,
            body=b"[" * 1_000 + b"]" * 1_000,
        ),
        Request(
            "memberships of an unknown customer",
            "PUT",
            "/v1/customers/nobody/memberships",
            (404, 422),
            headers=ADMIN,
            json=[{"product": "pro", "status": "active"}],
        ),
    ]
    unsubscribe = [
        Request(
            "an unsubscribe token tampered with (GET)",
            "GET",
            "/v1/unsubscribe/AAAAAAAAAAAAAAAAAAAAAA",
            404,
            present=SECURITY_HEADERS,
        ),
        Request(
            "an unsubscribe token tampered with (POST)",
            "POST",
            "/v1/unsubscribe/AAAAAAAAAAAAAAAAAAAAAA",
            404,
            body=b"List-Unsubscribe=One-Click",
            present=SECURITY_HEADERS,
        ),
        Request(
            "an unsubscribe token of SQL",
            "GET",
            "/v1/unsubscribe/'%20OR%201=1%20--",
            404,
            present=SECURITY_HEADERS,
        ),
        Request(
            "an unsubscribe token of HTML",
            "GET",
            "/v1/unsubscribe/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            404,  # the %2F makes it another path: a JSON 404
            present={"x-content-type-options": "nosniff"},
        ),
        Request("an unsubscribe token of invalid UTF-8", "GET", "/v1/unsubscribe/%ff%fe", 404),
        Request(
            "an unsubscribe body of 10 MB",
            "POST",
            "/v1/unsubscribe/AAAAAAAAAAAAAAAAAAAAAA",
            413,
            body=BIG,
        ),
        Request(
            "an unsubscribe body nested deep",
            "POST",
            "/v1/unsubscribe/AAAAAAAAAAAAAAAAAAAAAA",
            (404, 422),
            body=b"[" * 1_000,
        ),
    ]
    cors = [
        Request(
            "a preflight for events from another origin",
            "OPTIONS",
            "/v1/events",
            (200, 400, 405),
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
            absent=("access-control-allow-origin",),
        ),
        Request(
            "a preflight for events from the network",
            "OPTIONS",
            "/v1/events",
            (200, 400, 405),
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
            absent=("access-control-allow-origin",),
        ),
        Request(
            "a preflight for customers from another origin",
            "OPTIONS",
            "/v1/customers/1001",
            (200, 400, 405),
            headers={"Origin": EVIL, "Access-Control-Request-Method": "PUT"},
            absent=("access-control-allow-origin",),
        ),
        Request(
            "the feed from another origin",
            "GET",
            FEED,
            200,
            headers={**bearer(ada), "Origin": EVIL},
            absent=("access-control-allow-origin",),
        ),
        Request(
            "a feed preflight from another origin",
            "OPTIONS",
            FEED,
            (200, 400, 403),
            headers={
                "Origin": EVIL,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
            absent=("access-control-allow-origin",),
        ),
        Request(
            "the feed from the network (allowed)",
            "GET",
            FEED,
            200,
            headers={**bearer(ada), "Origin": ORIGIN},
            present={"access-control-allow-origin": ORIGIN},
        ),
        Request(
            "events never answer an origin",
            "POST",
            "/v1/events",
            422,
            headers={**ADMIN, "Origin": ORIGIN},
            json={"type": "nope", "data": {}},
            absent=("access-control-allow-origin",),
        ),
        Request(
            "metrics never answer an origin",
            "GET",
            "/metrics",
            200,
            headers={"Origin": ORIGIN},
            absent=("access-control-allow-origin",),
        ),
    ]
    return feed_refusals + paths + dismissals + admin + events + platform + unsubscribe + cors


def _raw(url: str, data: bytes) -> bytes:
    """Bytes straight onto the socket (for what httpx will not send), the reply's first line."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.split(b"\r\n", 1)[0]


RAW = [
    (
        "a Content-Length of 10^20",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + ADMIN_KEY.encode()
        + b"\r\nContent-Length: 100000000000000000000\r\n\r\n{}",
        (b"400", b"413"),
    ),
    (
        "a Content-Length of 10 MB, two bytes sent",
        b"POST /v1/unsubscribe/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n{}",
        (b"413",),
    ),
    (
        "a negative Content-Length",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        (b"400",),
    ),
    (
        "a header with a bare CR",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        (b"400", b"200"),
    ),
    (
        "a request line of garbage",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        (b"400", b""),
    ),
]


def _start(root: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "COMMSYNC_API_KEY": ADMIN_KEY, "NO_COLOR": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [EXE, "-C", str(root), "serve", "--port", str(port), "--log-level", "debug"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hostile-http") / "repo"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("ci", ".commsync"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "broadcasts/notices/hostile.yaml").write_text(
        "kind: notice\ntargets: {all: true}\nsubject: '<img src=x onerror=alert(0)>'\n"
        f"format: html\ncontent: '{HOSTILE_HTML}'\n",
        encoding="utf-8",
    )
    repo = Repo(root)
    repo.commit_all("examples")
    repo.import_data(EXAMPLES / "data")
    assert repo.cli("apply", "--yes").exit_code == 0
    tokens = {c: repo.cli("token", c).stdout.strip().splitlines()[-1] for c in ("1001", "1002")}
    store = open_store(f"sqlite:///{root / '.commsync/store.db'}")
    try:
        key = store.signing_key()
    finally:
        store.close()
    log = Path(tempfile.mkdtemp()) / "serve.log"
    process, url = _start(root, log)
    try:
        yield Server(root, url, process, log, tokens, key)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(log.parent, ignore_errors=True)


def _send(url: str, request: Request) -> Answer:
    started = time.monotonic()
    with httpx.Client(base_url=url, timeout=60) as client:
        body: Any = request.body
        if request.headers.get("Transfer-Encoding") == "chunked" and body is not None:
            whole = body
            body = (whole[i : i + 65_536] for i in range(0, len(whole), 65_536))
        try:
            response = client.request(
                request.method,
                request.path,
                headers={k: v for k, v in request.headers.items() if k != "Transfer-Encoding"},
                content=body,
                json=request.json,
            )
        except httpx.RemoteProtocolError as exc:  # the server closed early (a refused size)
            return Answer(0, httpx.Headers(), str(exc), time.monotonic() - started)
    return Answer(response.status_code, response.headers, response.text, time.monotonic() - started)


def _outbox(root: Path) -> list[str]:
    box = root / ".commsync/outbox"
    return sorted(str(p.relative_to(box)) for p in box.rglob("*") if p.is_file())


def _data(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The store's rows less the delivery worker's heartbeat (`workers.seen_at`, written every
    few seconds whatever the requests do: a slow machine's run spans one)."""
    workers = [
        (i, host, pid, started, stopped)
        for i, host, pid, started, _, stopped in dump.get("workers", [])
    ]
    return {**dump, "workers": workers}


@dataclass
class Run:
    answers: dict[str, Answer]
    raw: dict[str, bytes]
    store_changed: bool
    outbox_changed: bool
    exit_code: int
    rss_mb: float
    log: str
    feed: dict[str, Any]


@pytest.fixture(scope="module")
def run(server: Server) -> Run:
    """Every request, one after the other; then the server is stopped with SIGTERM."""
    store = f"sqlite:///{server.root / '.commsync/store.db'}"
    before, box = _data(dump_store(store)), _outbox(server.root)
    answers = {r.name: _send(server.url, r) for r in requests(server.tokens, server.key)}
    raw = {name: _raw(server.url, data) for name, data, _ in RAW}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ada = {"Authorization": f"Bearer {server.tokens['1001']}"}
        feed = client.get(FEED, headers=ada).json()
    time.sleep(1.5)  # a round of the delivery worker: anything wrongly queued would be sent
    changed = _data(dump_store(store)) != before
    outbox_changed = _outbox(server.root) != box
    server.process.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(server.process.pid, 0)
    server.process.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        answers,
        raw,
        changed,
        outbox_changed,
        server.process.returncode,
        usage.ru_maxrss / 1024,
        server.log.read_text(encoding="utf-8", errors="replace"),
        feed,
    )


# The parametrisation needs the names before the server exists: build the list with dummies.
_NAMES = [r.name for r in requests({"1001": "v1.a.b", "1002": "v1.c.d"}, b"k")]


@pytest.mark.parametrize("name", _NAMES)
def test_hostile_request_is_refused_clearly(name: str, run: Run, server: Server) -> None:
    request = next(r for r in requests(server.tokens, server.key) if r.name == name)
    answer = run.answers[name]
    wanted = request.status if isinstance(request.status, tuple) else (request.status,)
    assert answer.status in wanted, f"{answer.status}, not {wanted}: {answer.text[:600]}"
    assert answer.seconds < 30, f"answered after {answer.seconds:.1f} s"
    assert "Traceback" not in answer.text and "Internal Server Error" not in answer.text
    if request.detail is not None:
        detail = json.dumps(json.loads(answer.text)["detail"])
        assert re.search(request.detail, detail), detail
    elif 400 <= answer.status < 500 and "json" in answer.headers.get("content-type", ""):
        assert json.loads(answer.text)["detail"], "a refusal without a reason"
    for header in request.absent:
        assert header not in answer.headers, f"{header}: {answer.headers[header]}"
    for header, value in request.present.items():
        assert answer.headers.get(header) == value, f"{header}: {answer.headers.get(header)}"


@pytest.mark.parametrize("name", [name for name, _, _ in RAW])
def test_malformed_http_is_refused(name: str, run: Run) -> None:
    wanted = next(codes for n, _, codes in RAW if n == name)
    first_line = run.raw[name]
    assert any(first_line.split(b" ")[1:2] == [code] or first_line == code for code in wanted), (
        first_line
    )


def test_the_feed_shows_hostile_html_as_harmless_markup(run: Run) -> None:
    """The hostile notice reached the feed with no script, handler, form, style or foreign URL."""
    notice = next(n for n in run.feed["notices"] if n["id"] == "notices/hostile")
    assert notice["heading"] == "<img src=x onerror=alert(0)>"  # text, escaped by the widget

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found.append((tag, attrs))

    parser = Tags()
    parser.feed(notice["html"])
    tags = {tag for tag, _ in parser.found}
    assert not tags & {"script", "img", "svg", "iframe", "form", "input", "style", "math"}, tags
    for tag, attrs in parser.found:
        for name, value in attrs:
            assert not name.startswith("on") and name != "style", (tag, name)
            if name in ("href", "src"):
                assert (value or "").startswith(("https:", "http:", "mailto:")), (tag, value)
    assert "text" in notice["html"] and "bold" in notice["html"]


def test_nothing_changed_the_server_kept_quiet_and_stopped_cleanly(run: Run) -> None:
    assert not run.store_changed, "the store's data changed"
    assert not run.outbox_changed, "a message was sent"
    assert run.rss_mb < MAX_RSS_MB, f"peak memory {run.rss_mb:.0f} MB"
    assert "Traceback" not in run.log, run.log[-3000:]
    assert ADMIN_KEY not in run.log
    assert run.exit_code in (0, -signal.SIGTERM), run.log[-2000:]
    assert "Application shutdown complete" in run.log, run.log[-2000:]


def test_every_request_was_logged_with_its_status(run: Run) -> None:
    """serve logs each request (access log at info) so an operator can see the attack."""
    assert run.log.count('"GET /v1/customers/1001/notices HTTP/1.1" 401') >= 5
    assert '"POST /v1/events HTTP/1.1" 413' in run.log
