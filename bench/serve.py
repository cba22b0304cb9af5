"""Benchmark: the notices feed and event ingestion of `commsync serve`, loaded from a second process.

    python bench/serve.py     # options: --customers 10000 --notices 200 --rate 500 --seconds 20
                              #          --workers 1 --store URL (default: SQLite in bench/.work)

Builds (once, cached in bench/.work/serve/) a repository with N customers in 10 products and
200 active notices (a fifth for everyone, half for one product, a fifth for two products, the rest
for listed customers; markdown with placeholders), applies it, and starts the real
`commsync serve --no-deliver` as a subprocess. Then, from a second process (this script with
--load), with a lean asyncio HTTP/1.1 keep-alive client:

- **feed at a fixed rate** (open loop): GET /v1/customers/{id}/notices for random customers, each
  with its own token, at --rate requests/s for --seconds. Latency is measured from the moment each
  request was *due*, so a server that falls behind shows it (no coordinated omission).
- **feed built for the first time**: each customer the open loop did not ask, once (32
  connections): what a feed costs when `serve` keeps no response for that customer yet.
- **feed, as fast as it goes** (closed loop, 32 connections, 10 s; by now every customer's feed
  is kept until it changes): the ceiling.
- **events**: POST /v1/events (payment_received, unique idempotency keys, 16 connections, 10 s),
  each rendering and queuing its system emails (customer and admin) — events/s ingested.
- **the reference**: a bare ASGI app under uvicorn (one process) answering a fixed JSON body of
  the feed response's size, loaded by the same closed loop: what Python's HTTP stack does on this
  machine at all. The feed's ceiling is printed as a share of it (issue 12's target: ≥ 0.7).

Floor (issue 4): feed p99 ≤ 25 ms at 500 req/s with 10,000 customers and 200 active notices.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "serve"
sys.path.insert(0, str(HERE))
from plan import compile_bytecode, machine  # noqa: E402

API_KEY = "bench-admin-key-0123456789abcdef"  # serve wants 16 characters or more
PRODUCTS = [f"plan-{i}" for i in range(10)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commsync(root: Path, *args: str, store: str | None = None) -> str:
    command = [sys.executable, "-m", "commsync", "-C", str(root)]
    command += ["--store", store] if store else []
    done = subprocess.run([*command, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"commsync {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def build(root: Path, customers: int, notices: int, store: str | None) -> None:
    """The repository, its data and its notices, applied."""
    marker = root / ".built"
    wanted = f"{customers} {notices} {store}"
    if marker.exists() and marker.read_text() == wanted:
        return
    if root.exists():
        shutil.rmtree(root)
    started = time.perf_counter()
    commsync(HERE, "init", str(root))
    rng = random.Random(4)
    data = root / "data"
    data.mkdir()
    (data / "products.csv").write_text(
        "slug,name\n" + "".join(f"{p},Plan {p[-1]}\n" for p in PRODUCTS)
    )
    (data / "customers.csv").write_text(
        "id,email,username,first_name,last_name\n"
        + "".join(
            f"{i},c{i}@example.com,user{i},First{i},Last{i}\n" for i in range(1, customers + 1)
        )
    )
    rows = ["customer_id,product,status"]
    for i in range(1, customers + 1):
        for product in rng.sample(PRODUCTS, rng.choice((1, 1, 2))):
            rows.append(f"{i},{product},{rng.choice(('active',) * 8 + ('trialing', 'cancelled'))}")
    (data / "memberships.csv").write_text("\n".join(rows) + "\n")
    for kind in ("products", "customers", "memberships"):
        commsync(root, kind, "import", f"data/{kind}.csv", store=store)
    for old in (root / "broadcasts").rglob("*.yaml"):
        old.unlink()
    folder = root / "broadcasts" / "bench"
    folder.mkdir(parents=True)
    types = ("info", "success", "warning", "error")
    for n in range(notices):
        share = n % 10
        if share < 2:
            targets = "  all: true\n"
        elif share < 7:
            targets = f"  products: [{rng.choice(PRODUCTS)}]\n"
        elif share < 9:
            targets = f"  products: [{', '.join(rng.sample(PRODUCTS, 2))}]\n"
        else:
            listed = ", ".join(str(rng.randint(1, customers)) for _ in range(20))
            targets = f"  customers: [{listed}]\n"
        (folder / f"notice-{n:03d}.yaml").write_text(
            f"kind: notice\nmessage_type: {types[n % 4]}\n"
            f'subject: "Notice {n} for {{{{ customer_first_name }}}}"\n'
            f"targets:\n{targets}"
            "content: |\n"
            f"  Hi {{{{ customer_first_name }}}}, this is notice **{n}** on {{{{ network_name }}}}.\n"
            f"  [Read more](https://acme.example/news/{n}) about what changes for your sites.\n"
        )
    (root / "emails").mkdir(exist_ok=True)
    (root / "emails" / "payment_received_admin.yaml").write_text("email: payment_received_admin\n")
    if not (root / ".git").exists():  # init leaves git alone inside another repository
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-qm",
            "bench notices",
        ],
        check=True,
    )
    commsync(root, "apply", "--yes", store=store)
    marker.write_text(wanted)
    print(f"built the repository and store in {time.perf_counter() - started:.1f} s")


def tokens(root: Path, customers: int, store: str | None) -> list[tuple[str, str]]:
    """A token per customer, signed with the store's key (what `commsync token` prints)."""
    os.chdir(root)
    from commsync.api import Project
    from commsync.api.context import Context
    from commsync.auth import issue_token
    from commsync.store.sql import open_store

    settings = Context(Project(root, store)).settings()
    opened = open_store(settings.store_url)
    try:
        key = opened.signing_key()
    finally:
        opened.close()
    expires = datetime.now(UTC) + timedelta(days=1)
    return [(str(i), issue_token(key, str(i), expires)) for i in range(1, customers + 1)]


# -- the load generator (a second process) -------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; requests on it are sequential."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, port)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n" if body or method != "GET" else "\r\n"
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:  # the server closed an idle keep-alive connection: reconnect once
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(head.encode() + body)
            status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def open_loop(
    port: int, pairs: list[tuple[str, str]], rate: float, seconds: float
) -> dict[str, Any]:
    idle: list[Connection] = [await Connection.open(port) for _ in range(16)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    asked: set[str] = set()
    rng = random.Random(7)
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2

    async def one(due: float) -> None:
        customer, token = rng.choice(pairs)
        asked.add(customer)
        conn = idle.pop() if idle else await Connection.open(port)
        status, _ = await conn.request(
            "GET", f"/v1/customers/{customer}/notices", {"Authorization": f"Bearer {token}"}
        )
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(conn)

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {
        "requests": total,
        "achieved_rps": total / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p90_ms": percentile(latencies, 90) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "statuses": statuses,
        "asked": sorted(asked),
    }


async def closed_loop(
    port: int, pairs: list[tuple[str, str]], concurrency: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    rng = random.Random(8)
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        conn = await Connection.open(port)
        while time.perf_counter() < stop:
            customer, token = rng.choice(pairs)
            began = time.perf_counter()
            status, _ = await conn.request(
                "GET", f"/v1/customers/{customer}/notices", {"Authorization": f"Bearer {token}"}
            )
            latencies.append(time.perf_counter() - began)
            statuses[status] = statuses.get(status, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "statuses": statuses,
    }


async def events(port: int, customers: int, concurrency: int, seconds: float) -> dict[str, Any]:
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))
    run = f"{time.time():.0f}"
    stop = time.perf_counter() + seconds
    sizes: list[int] = []
    from commsync.catalog.loader import build_catalog, core_catalog_dir

    catalog, _ = build_catalog([core_catalog_dir()])
    mock = catalog.events["payment_received"].mock_payload()

    async def worker() -> None:
        conn = await Connection.open(port)
        while time.perf_counter() < stop:
            n = next(counter)
            cid = n % customers + 1
            data = {
                **mock,
                "customer_id": cid,
                "customer_name": f"First{cid} Last{cid}",
                "customer_user_email": f"c{cid}@example.com",
                "payment_id": n,
                "payment_reference_code": f"PAY-{n:08d}",
                "payment_invoice_url": f"https://acme.example/invoices/{n}",
            }
            body = json.dumps(
                {"type": "payment_received", "key": f"bench-{run}-{n}", "data": data}
            ).encode()
            status, answer = await conn.request(
                "POST",
                "/v1/events",
                {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
                body,
            )
            statuses[status] = statuses.get(status, 0) + 1
            if status == 202:
                sizes.append(sum(e["recipients"] for e in json.loads(answer)["emails"]))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    accepted = statuses.get(202, 0)  # a refused event is no event ingested
    return {
        "events": accepted,
        "events_per_s": accepted / elapsed,
        "messages_queued": sum(sizes),
        "statuses": statuses,
    }


async def every_customer(
    port: int, pairs: list[tuple[str, str]], concurrency: int
) -> dict[str, Any]:
    """Each of `pairs` once, in order (32 connections): feeds built for the first time."""
    todo = iter(pairs)
    statuses: dict[int, int] = {}

    async def worker() -> None:
        conn = await Connection.open(port)
        for customer, token in todo:
            status, _ = await conn.request(
                "GET", f"/v1/customers/{customer}/notices", {"Authorization": f"Bearer {token}"}
            )
            statuses[status] = statuses.get(status, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {"requests": len(pairs), "rps": len(pairs) / elapsed, "statuses": statuses}


def load(args: argparse.Namespace) -> None:
    pairs = [tuple(p) for p in json.loads(Path(args.pairs).read_text())]
    if args.closed_only:
        print(json.dumps({"closed": asyncio.run(closed_loop(args.port, pairs, 32, 10))}))  # type: ignore[arg-type]
        return
    opened = asyncio.run(open_loop(args.port, pairs, args.rate, args.seconds))  # type: ignore[arg-type]
    asked = set(opened.pop("asked"))
    result = {
        "open": opened,
        # the customers the open loop did not ask: none of their feeds is kept yet
        "first": asyncio.run(
            every_customer(args.port, [p for p in pairs if p[0] not in asked], 32)
        ),  # type: ignore[misc]
        "closed": asyncio.run(closed_loop(args.port, pairs, 32, 10)),  # type: ignore[arg-type]
        "events": asyncio.run(events(args.port, len(pairs), 16, 10)),
    }
    print(json.dumps(result))


BARE_APP = """
import sys, uvicorn
BODY = b'{"notices": "' + b"x" * (int(sys.argv[2]) - 15) + b'"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off")
"""


def _wait_listening(port: int, what: str) -> None:
    """Until something accepts connections on 127.0.0.1:`port` (20 s at most)."""
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def bare_endpoint(pairs_file: Path, size: int) -> dict[str, Any]:
    """The reference: an ASGI app under uvicorn answering a fixed body of `size` bytes, loaded by
    the same client as the feed, so the feed's ceiling reads as a share of what the machine's
    Python HTTP stack can do at all."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port), str(size)])
    try:
        _wait_listening(port, "the bare endpoint")
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                "--closed-only",
                "--port",
                str(port),
                "--pairs",
                str(pairs_file),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the load generator failed:\n{done.stderr}")
        return dict(json.loads(done.stdout)["closed"])
    finally:
        server.terminate()
        server.wait(timeout=60)


# -- the driver -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--notices", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--store", help="a store URL instead of SQLite in the work directory")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pairs", help=argparse.SUPPRESS)
    parser.add_argument("--closed-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load(args)
        return

    print(f"machine: {machine()}")
    compile_bytecode()
    root = WORK / "repo"
    build(root, args.customers, args.notices, args.store)
    pairs_file = WORK / "tokens.json"
    pairs_file.write_text(json.dumps(tokens(root, args.customers, args.store)))
    port = free_port()
    command = [sys.executable, "-m", "commsync", "-C", str(root)]
    command += ["--store", args.store] if args.store else []
    command += [
        "serve",
        "--no-deliver",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, env={**os.environ, "COMMSYNC_API_KEY": API_KEY})
    try:
        _wait_listening(port, "commsync serve")
        time.sleep(1.0)
        feed_body = subprocess.run(
            [
                "curl",
                "-s",
                "-H",
                f"Authorization: Bearer {json.loads(pairs_file.read_text())[0][1]}",
                f"http://127.0.0.1:{port}/v1/customers/1/notices",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        visible = json.loads(feed_body)
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                "--port",
                str(port),
                "--pairs",
                str(pairs_file),
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"the load generator failed:\n{done.stderr}")
        result = json.loads(done.stdout)
    finally:
        server.terminate()
        server.wait(timeout=60)
    bare = bare_endpoint(pairs_file, len(feed_body.encode()))
    o, f, c, e = result["open"], result["first"], result["closed"], result["events"]
    print(
        f"store: {args.store or 'SQLite (WAL)'}; serve workers: {args.workers}; "
        f"{args.customers:,} customers, {args.notices} active notices "
        f"(customer 1 sees {len(visible['notices'])})"
    )
    print(
        f"feed at {args.rate:.0f} req/s for {args.seconds:.0f} s: {o['achieved_rps']:.0f} req/s, "
        f"p50 {o['p50_ms']:.1f} ms, p90 {o['p90_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms, "
        f"max {o['max_ms']:.1f} ms; statuses {o['statuses']}"
    )
    print(
        f"feed built for the first time (the {f['requests']:,} customers the open loop did not "
        f"ask, each once; 32 connections): {f['rps']:.0f} req/s; statuses {f['statuses']}"
    )
    print(
        f"feed, closed loop (32 connections, 10 s; every feed kept): {c['rps']:.0f} req/s, "
        f"p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms; statuses {c['statuses']}"
    )
    print(
        f"events (16 connections, 10 s): {e['events_per_s']:.0f} events/s, "
        f"{e['messages_queued']:,} messages queued; statuses {e['statuses']}"
    )
    print(
        f"bare endpoint (uvicorn, one process, a fixed {len(feed_body.encode()):,}-byte JSON "
        f"body, the same closed loop): {bare['rps']:.0f} req/s; commsync's feed is "
        f"{c['rps'] / bare['rps']:.2f} of it"
    )
    verdict = "meets" if o["p99_ms"] <= 25 and o["achieved_rps"] >= 0.98 * args.rate else "MISSES"
    print(f"floor (p99 ≤ 25 ms at {args.rate:.0f} req/s): {verdict}")


if __name__ == "__main__":
    main()
