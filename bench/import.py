"""Benchmark: `commsync customers import` and `memberships import` of large files.

    python bench/import.py [--customers 200000] [--memberships 300000] [--store URL]

Writes (once, cached in bench/.work/import/) a CSV of N customers and one of M memberships over
100 products, then times the real commands as subprocesses into a fresh store: products, then
customers, then memberships — first into an empty store (all inserts), then again (all updates,
the nightly re-import). Prints the machine, each step's wall time, rows per second and peak RSS,
and each time as a multiple of bench/plan.py's same-run reference (fixed Python and SQLite work
in a fresh process): machines of this kind differ up to 2x, and so does one machine by the hour.

Target (issue 12): ≥ 100,000 rows/s; 1M customers + 1.5M memberships ≤ 30 s, flat memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "import"
sys.path.insert(0, str(HERE))
from plan import compile_bytecode, machine, reference  # noqa: E402
from send import timed_commsync  # noqa: E402

STATUSES = ["active"] * 7 + ["trialing", "cancelled", "expired"]


def _files(customers: int, memberships: int) -> Path:
    """The CSV files, written once by a child process: the set of pairs it keeps would stay in
    this process's memory, and a command started from a large process reports the pages it
    shared with it before `exec` in its peak RSS."""
    data = WORK / f"data-v2-{customers}-{memberships}"
    if (data / "memberships.csv").exists():
        return data
    writer = multiprocessing.get_context("fork").Process(
        target=_write_files, args=(data, customers, memberships)
    )
    writer.start()
    writer.join()
    if writer.exitcode != 0:
        raise SystemExit(f"writing the data files failed (exit {writer.exitcode})")
    return data


def _write_files(data: Path, customers: int, memberships: int) -> None:
    data.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    (data / "products.csv").write_text(
        "slug,name\n" + "".join(f"p{i:03},Plan {i}\n" for i in range(100))
    )
    # Addresses and usernames in no relation to the ids, as a platform's are: numbered in the
    # ids' order, each index took its rows in order too, which flattered an import by half.
    names = list(range(1, customers + 1))
    rng.shuffle(names)
    with (data / "customers.csv").open("w") as out:
        out.write("id,email,username,first_name,last_name,locale\n")
        for n, m in zip(range(1, customers + 1), names, strict=True):
            out.write(f"c{n},user{m}@example.com,user{m},First{n},Last{n},en_GB\n")
    seen: set[tuple[int, int]] = set()
    with (data / "memberships.csv").open("w") as out:
        out.write("customer_id,product,status\n")
        while len(seen) < memberships:
            pair = (rng.randint(1, customers), rng.randrange(100))
            if pair in seen:
                continue
            seen.add(pair)
            out.write(f"c{pair[0]},p{pair[1]:03},{rng.choice(STATUSES)}\n")


def _fresh_schema(url: str) -> str:
    """A PostgreSQL store URL on a new, empty schema `bench_import` (dropped first if there)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS bench_import CASCADE")
        conn.execute("CREATE SCHEMA bench_import")
    return url + ("&" if "?" in url else "?") + "options=-csearch_path%3Dbench_import"


def _project(store: str | None) -> Path:
    root = WORK / "repo"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "commsync.yaml").write_text(
        "version: 1\nnetwork: {name: Bench, url: https://bench.example}\n"
        "mail:\n  from: Bench <hello@bench.example>\nimports: none\n"
        + (f"store: {store}\n" if store else "")
    )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--memberships", type=int, default=300_000)
    parser.add_argument(
        "--store",
        help="a store URL (default: SQLite in the work directory); on PostgreSQL the benchmark "
        "uses a new schema, bench_import",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    compile_bytecode()
    data = _files(args.customers, args.memberships)
    ref = reference(3)
    print(
        f"reference (fixed Python + SQLite work, fresh process, as bench/plan.py): median {ref:.2f} s"
    )
    store = args.store
    if store and store.startswith("postgresql"):
        store = _fresh_schema(store)
    root = _project(store)
    for run in ("into an empty store", "again (every row an update)"):
        for kind, rows in (
            ("products", 100),
            ("customers", args.customers),
            ("memberships", args.memberships),
        ):
            wall, rss, out = timed_commsync(root, kind, "import", str(data / f"{kind}.csv"))
            print(
                f"{kind} import {run}: {rows:,} rows in {wall:.1f} s ({wall / ref:.1f}x the "
                f"reference), {rows / wall:,.0f} rows/s, peak RSS {rss:.0f} MiB ({out.strip()})"
            )


if __name__ == "__main__":
    main()
