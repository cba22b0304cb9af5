"""Benchmark: `commsync plan` on a large repository against a large SQLite store.

    python bench/plan.py [--customers 1000000] [--runs 3] [--scheduled] [--instructions]

Builds (once, cached in bench/.work/) a SQLite store with 1,000,000 customers, 100 products and
1,500,000 memberships, and a repository with 2,000 broadcast files plus an override file for every
registered default. Then runs the real `commsync plan` command as a subprocess and reports wall
time and peak RSS for three cases:

- first plan: nothing applied yet, so every broadcast is new and every audience is counted; the
  store as commsync's writers leave it — after the day's `commsync memberships import` (a real
  subprocess, timed: an import counts the audience histogram at its end, for the qualifying
  statuses) and 20 membership events (customers' memberships replaced through the store, as the
  platform reports them, which keep the histogram current), with the parsed files the store
  keeps dropped (every file is new to it);
- first plan, histogram counted afresh: the same with the histogram dropped too — a store that
  never kept one (migrated from before 0011) or whose qualifying statuses just changed: once;
- re-plan: the store already holds what the first plan would create, and the files that plan
  parsed (the everyday CI case: the pull request's plan, then apply on merge, then the next plan).

The repository mixes notices and email broadcasts (3 in 10) targeting one product, two of the
100 products, everyone, or five listed customers by id, email and username (some with a product
too). `--scheduled` makes every email broadcast a scheduled one (`send_at`), the shape of a
network that plans its sends ahead; `--customers 200000` the smaller network of issue 12's
second shape.

Also times a fixed piece of Python and SQLite work in a fresh process (the reference) in the
same run, and prints each case as a multiple of it: machines of this kind differ up to 2x in
speed, and so does one machine from hour to hour.

`--instructions` also runs each case once under valgrind's callgrind and prints the instructions
it executed: the same count on any machine of this kind, however busy (wall time on one such
machine moved 2x within an hour), so two versions compare exactly.

Floor (issue 2): first plan ≤ 3 s wall and ≤ 300 MB peak RSS on the 2-core CI machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
PRODUCTS = [f"p{i:03}" for i in range(100)]
STATUSES = ["active"] * 7 + ["trialing", "cancelled", "expired"]
FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Edsger",
    "Barbara",
    "Dennis",
    "Frances",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Johnson",
    "Torvalds",
    "Hamilton",
    "Dijkstra",
    "Liskov",
    "Ritchie",
    "Allen",
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}"
    )


def compile_bytecode() -> None:
    """Compile commsync's modules as an installed wheel has them: pip compiles the bytecode at
    install time, but an editable checkout under PYTHONDONTWRITEBYTECODE=1 (set on this machine
    kind) compiles every module from source on every start — 0.1-0.2 s of each command's
    start-up that no operator pays."""
    import commsync

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(commsync.__file__).parent)],
        check=True,
        capture_output=True,
    )


def build_store(path: Path, customers: int) -> float:
    """Create the store with commsync (migrations), then bulk-load platform data with sqlite3."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.db")
    for leftover in path.parent.glob(tmp.name + "*"):
        leftover.unlink()
    from commsync.store.sql import open_store

    open_store(f"sqlite:///{tmp}").close()
    rng = random.Random(1)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        conn.executemany(
            "INSERT INTO products (slug, name, updated_at) VALUES (?, ?, ?)",
            ((p, p.upper(), now) for p in PRODUCTS),
        )
        conn.executemany(
            "INSERT INTO customers (id, email, email_key, username, first_name, last_name, display_name, locale, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, NULL, 'en_US', ?)",
            (
                (
                    str(n),
                    f"c{n}@example.com",
                    f"c{n}@example.com",
                    f"user{n}",
                    FIRST[n % 10],
                    LAST[n // 10 % 10],
                    now,
                )
                for n in range(1, customers + 1)
            ),
        )

        def memberships():  # type: ignore[no-untyped-def]
            for n in range(1, customers + 1):
                first = rng.choice(PRODUCTS)
                yield (str(n), first, rng.choice(STATUSES), now)
                if n % 2 == 0:
                    second = rng.choice([p for p in PRODUCTS if p != first])
                    yield (str(n), second, rng.choice(STATUSES), now)

        conn.executemany(
            "INSERT INTO memberships (customer_id, product_slug, status, updated_at) VALUES (?, ?, ?, ?)",
            memberships(),
        )
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    tmp.rename(path)
    return time.perf_counter() - started


def _targets(rng: random.Random, customers: int) -> str:
    roll = rng.random()
    if roll < 0.55:
        return f"  products: [{rng.choice(PRODUCTS)}]\n"
    if roll < 0.75:
        return f"  products: [{', '.join(rng.sample(PRODUCTS, 2))}]\n"
    if roll < 0.85:
        return "  all: true\n"
    refs = []
    for _ in range(5):
        n = rng.randint(1, customers)
        refs.append(rng.choice([str(n), f"c{n}@example.com", f"user{n}"]))
    extra = f"  products: [{rng.choice(PRODUCTS)}]\n" if roll > 0.95 else ""
    return f"  customers: [{', '.join(refs)}]\n{extra}"


# The same-run reference: a fixed piece of CPU-bound Python and SQLite work in a fresh process
# (start-up included), so figures from machines of different speed compare as multiples of it.
REFERENCE = """
import json, sqlite3
doc = [{"id": i, "name": f"customer {i}", "tags": ["a", "b"], "n": i * 0.5} for i in range(40000)]
for _ in range(3):
    json.loads(json.dumps(doc))
db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE t (a INTEGER, b TEXT)")
db.executemany("INSERT INTO t VALUES (?, ?)", ((i % 997, str(i)) for i in range(300000)))
db.execute("SELECT a, COUNT(*) FROM t GROUP BY a").fetchall()
"""


def reference(runs: int) -> float:
    """Median wall time of the reference workload, `runs` times in fresh processes."""
    walls = []
    for _ in range(max(3, runs)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", REFERENCE], check=True)
        walls.append(time.perf_counter() - started)
    return sorted(walls)[len(walls) // 2]


def build_repo(root: Path, customers: int, files: int = 2000, scheduled: bool = False) -> None:
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(2)
    (root / "broadcasts").mkdir(parents=True)
    (root / "emails").mkdir()
    (root / "commsync.yaml").write_text(
        "version: 1\nnetwork: {name: Bench Network, url: https://bench.example}\n"
        "store: sqlite:///../store.db\nmail:\n  from: Bench <hello@bench.example>\n  admins: [ops@bench.example]\n"
    )
    body = "\n".join(
        [
            "Hi {{ customer_first_name }}, this is update NUMBER.",
            "",
            "This is an announcement for everyone on {{ network_name }}. It has a few paragraphs,",
            "**bold** words, a [link]({{ network_url }}/news) and a list:",
            "",
            "- first point",
            "- second point",
            "- third point",
            "",
            "Thanks, the team",
        ]
    )
    send_at = datetime(2031, 1, 6, 9, 0, tzinfo=UTC).isoformat()
    for i in range(files):
        kind = "email" if i % 10 < 3 else "notice"
        extra = "message_type: warning\n" if kind == "notice" and i % 4 == 0 else ""
        if scheduled and kind == "email":  # each send starts later, by the workers
            extra = f"send_at: {send_at}\n"
        text = (
            f'kind: {kind}\nsubject: "Update {i} for {{{{ customer_name }}}}"\n{extra}targets:\n{_targets(rng, customers)}'
            "content: |\n"
            + "".join(
                f"  {line}\n" if line else "\n"
                for line in body.replace("NUMBER", str(i)).splitlines()
            )
        )
        path = root / "broadcasts" / f"team{i % 20:02}" / f"b{i:04}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    from commsync.catalog.loader import build_catalog, core_catalog_dir

    catalog, _ = build_catalog([core_catalog_dir()])
    for slug, default in catalog.defaults.items():
        (root / "emails" / f"{slug}.yaml").write_text(
            f'email: {slug}\nsubject: "[Bench] {default.fields.subject}"\ncontent: |\n'
            + "".join(
                f"  {line}\n" if line else "\n" for line in default.fields.content.splitlines()
            )
            + "  (customised for the benchmark)\n"
        )


def _plan_command(root: Path) -> list[str]:
    exe = shutil.which("commsync", path=str(Path(sys.executable).parent)) or "commsync"
    return [exe, "-C", str(root), "plan", "--format", "json", "--out", str(WORK / "plan.json")]


def count_instructions(root: Path) -> int:
    """Instructions one `commsync plan` executes, counted by valgrind's callgrind: the same
    figure on any machine of this kind, busy or not (wall time here moved 2x within an hour)."""
    out = WORK / "callgrind.out"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *_plan_command(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out.unlink(missing_ok=True)
    found = [line for line in done.stderr.splitlines() if "Collected :" in line]
    if done.returncode not in (0, 2) or not found:
        raise SystemExit(f"commsync plan under callgrind failed ({done.returncode}): {done.stderr}")
    return int(found[-1].rsplit(":", 1)[1])


def run_plan(root: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one `commsync plan` subprocess."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        _plan_command(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        raise SystemExit(
            f"commsync plan failed ({code}): {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return wall, usage.ru_maxrss / 1024, code


def _forget(store: Path, *, histogram: bool) -> None:
    """Drop what an earlier plan kept in the store: the broadcast files it parsed (commsync ≥
    0010's schema: these files are new to a first plan) and, with `histogram`, the audience
    histogram (≥ 0007; its generation in `audience_histogram_keys` from 0011)."""
    conn = sqlite3.connect(store)
    try:
        kept = ["audience_histograms", "audience_histogram_keys"] if histogram else []
        for table in ("parsed_files", *kept):
            with contextlib.suppress(sqlite3.OperationalError):  # an older schema keeps none
                conn.execute(f"DELETE FROM {table}")
        conn.commit()
    finally:
        conn.close()


def membership_events(store_url: str, customers: int, events: int = 20) -> bool:
    """What a network whose platform reports membership changes (the Ultimate Multisite bridge)
    does between two plans: `events` customers' memberships replaced through the store, as
    `PUT /v1/customers/{id}/memberships` does. True when the kept histogram stayed current
    (commsync ≥ 0011's writers keep it; before, any such write made the next plan count it)."""
    from commsync.model import MembershipRecord
    from commsync.store.sql import open_store

    rng = random.Random(events)
    store = open_store(store_url)
    try:
        for _ in range(events):
            cid = str(rng.randint(1, customers))
            products = rng.sample(PRODUCTS, rng.randint(0, 3))
            store.replace_memberships(cid, [MembershipRecord(cid, p, "active") for p in products])
    finally:
        store.close()
    conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
    try:
        (generation,) = conn.execute(
            "SELECT value FROM commsync_meta WHERE key = 'memberships_generation'"
        ).fetchone()
        kept = conn.execute("SELECT generation FROM audience_histogram_keys").fetchall()
    except sqlite3.OperationalError:  # before 0011
        return False
    finally:
        conn.close()
    return any(int(g) == int(generation) for (g,) in kept)


def daily_import(repo: Path, customers: int, rows: int = 1000) -> tuple[float, int]:
    """The real `commsync memberships import` of a small file (the day's changes: existing
    customers' memberships), as a network's nightly job runs it; its wall seconds. At its end
    the import counts the audience histogram (commsync ≥ 0011's writers; before, the next plan
    did)."""
    rng = random.Random(rows)
    path = WORK / "daily-memberships.csv"
    seen: set[tuple[int, str]] = set()
    with path.open("w") as out:
        out.write("customer_id,product,status\n")
        while len(seen) < rows:
            key = (rng.randint(1, customers), rng.choice(PRODUCTS))
            if key not in seen:
                seen.add(key)
                out.write(f"{key[0]},{key[1]},{rng.choice(STATUSES)}\n")
    exe = shutil.which("commsync", path=str(Path(sys.executable).parent)) or "commsync"
    started = time.perf_counter()
    subprocess.run(
        [exe, "-C", str(repo), "memberships", "import", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started, rows


def seed_applied(store_url: str) -> int:
    """Write into the store what the saved plan would create (a stand-in for apply)."""
    import json

    from commsync.apply.effects import apply_effects
    from commsync.plan.codec import plan_from_json
    from commsync.store.sql import open_store

    plan = plan_from_json(json.loads((WORK / "plan.json").read_text()))
    store = open_store(store_url)
    after = apply_effects(plan, store.snapshot(), datetime.now(UTC))
    for broadcast in after.broadcasts.values():
        store.put_broadcast(broadcast)
    for email in after.system_emails.values():
        store.put_system_email(email)
    store.close()
    return len(plan.changes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--scheduled",
        action="store_true",
        help="every email broadcast (600 of the 2,000 files) scheduled with send_at",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also run each case once under valgrind's callgrind and print the instructions it "
        "executed (2-3 minutes a case): a comparison no busy machine disturbs",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    compile_bytecode()
    base = WORK / f"store-{args.customers}.db"
    if not base.exists():
        seconds = build_store(base, args.customers)
        print(f"built the store in {seconds:.1f} s ({base.stat().st_size / 2**20:.0f} MiB)")
    conn = sqlite3.connect(base)
    counts = [
        conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
        for t in ("customers", "products", "memberships")
    ]
    conn.close()
    print(f"store: {counts[0]:,} customers, {counts[1]} products, {counts[2]:,} memberships")
    store = WORK / "store.db"
    shutil.copyfile(base, store)
    for suffix in ("-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    repo = WORK / "repo"
    build_repo(repo, args.customers, scheduled=args.scheduled)
    shape = "; the 600 email broadcasts scheduled" if args.scheduled else ""
    print(
        f"repository: {len(list(repo.rglob('*.yaml')))} YAML files (2,000 broadcasts, "
        f"13 overridden defaults{shape})"
    )
    ref = reference(args.runs)
    print(f"reference (fixed Python + SQLite work, fresh process): median {ref:.2f} s")
    seconds, rows = daily_import(repo, args.customers)
    print(
        f"  (the day's memberships import, {rows} rows, counting the histogram at its end: "
        f"{seconds:.2f} s)"
    )
    results = {}
    cold = "first plan, histogram counted afresh"
    for case in ("first plan", cold, "re-plan"):
        if case == "re-plan":
            print(
                f"  (seeded the store with the {seed_applied(f'sqlite:///{store}')} changes of the first plan)"
            )
        runs = []
        current = []
        for _ in range(args.runs):
            if case != "re-plan":  # files the store has not seen; cold: the histogram counted too
                _forget(store, histogram=case == cold)
            if case == "first plan":
                current.append(membership_events(f"sqlite:///{store}", args.customers))
            runs.append(run_plan(repo))
        if current:
            print(
                f"  (20 membership events before each run; the histogram stayed current: "
                f"{sum(current)} of {len(current)})"
            )
        walls = sorted(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        results[case] = (walls[len(walls) // 2], walls[0], rss, runs[0][2])
        print(
            f"{case}: median {walls[len(walls) // 2]:.2f} s ({walls[len(walls) // 2] / ref:.2f}x the "
            f"reference), best {walls[0]:.2f} s, peak RSS {rss:.0f} MiB, exit {runs[0][2]}"
        )
        if args.instructions:
            if case != "re-plan":
                _forget(store, histogram=case == cold)
            if case == "first plan":
                membership_events(f"sqlite:///{store}", args.customers)
            print(f"{case}: {count_instructions(repo) / 1e9:.2f} G instructions (callgrind)")
    wall, _, rss, _ = results["first plan"]
    verdict = "meets" if wall <= 3 and rss <= 300 else "MISSES"
    print(f"floor (≤ 3 s, ≤ 300 MB): first plan {verdict} it")


if __name__ == "__main__":
    main()
