"""Benchmark: delivering one email broadcast with `commsync apply` to Postfix's smtp-sink.

    python bench/send.py [--recipients 50000] [--large 200000] [--connections 4] [--workers]
                         [--instructions]

Needs Postfix's test tools (Debian: `apt-get install postfix`, which provides smtp-sink and
smtp-source). In one run, against the same `smtp-sink -u nobody 127.0.0.1:PORT 1000`:

- smtp-source -d -s 4 -m N -l 3000: Postfix's own load generator (4 sessions, 3,000-byte messages),
  run three times: the reference is the median;
- the naive baseline: stdlib smtplib + EmailMessage, one message at a time, one connection
  (measured over 5,000 messages, it is slow);
- commsync: a store with N customers and one email broadcast to all of them, delivered by the real
  `commsync apply --yes` subprocess with `mail.connections` connections; wall time of the whole
  apply (planning, freezing the audience, rendering, sending, recording) and its peak RSS;
- the same with --large customers, to show that memory stays flat as the audience grows;
- with --workers, the N-recipient send under `mail.delivery: workers`: apply only freezes the
  audience, then one `commsync deliver` worker sends it (claims of 50 rows, each recipient's
  message built by the worker) — the worker pool's path, timed against apply's in the same run;
- with --instructions, an apply of 10,000 recipients once more under valgrind's callgrind: the
  instructions of the sending process and of the process that builds its messages (the same
  count on any machine of this kind however busy, where wall times here moved 2x within an hour,
  so two versions of the send compare exactly; about a minute).

Floor (issue 3): commsync ≥ 0.20 × smtp-source's messages/s with 4 connections, and peak RSS
≤ 250 MB, flat from 50,000 to 200,000 recipients.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "send"
sys.path.insert(0, str(HERE))
from plan import compile_bytecode, machine  # noqa: E402

BODY = """Hi {{ customer_first_name }},

Our support team takes a short break over the holidays:

- **24–26 December:** urgent issues only
- **31 December – 1 January:** urgent issues only

Your sites keep running as always, and our monitoring never sleeps.

Happy holidays from everyone at {{ network_name }}!
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(sink).exists():
        raise SystemExit("smtp-sink not found: install Postfix (Debian: apt-get install postfix)")
    port = free_port()
    proc = subprocess.Popen([sink, "-u", "nobody", f"127.0.0.1:{port}", "1000"])
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("smtp-sink did not start")


def smtp_source(port: int, messages: int) -> float:
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    started = time.perf_counter()
    subprocess.run(
        [source, "-d", "-s", "4", "-m", str(messages), "-l", "3000", f"127.0.0.1:{port}"],
        check=True,
    )
    return messages / (time.perf_counter() - started)


def naive(port: int, messages: int) -> float:
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(messages):
            msg = EmailMessage()
            msg["From"] = "Acme Sites <hello@acme.example>"
            msg["To"] = f"Customer {i} <c{i}@example.com>"
            msg["Subject"] = "Holiday support hours at Acme Sites"
            text = BODY.replace("{{ customer_first_name }}", f"Customer {i}").replace(
                "{{ network_name }}", "Acme Sites"
            )
            msg.set_content(text)
            msg.add_alternative(f"<html><body><pre>{text}</pre></body></html>", subtype="html")
            smtp.send_message(msg)
    return messages / (time.perf_counter() - started)


def build_project(
    root: Path, customers: int, port: int, connections: int, mail_extra: str = ""
) -> None:
    if root.exists():
        shutil.rmtree(root)
    (root / "broadcasts").mkdir(parents=True)
    (root / "commsync.yaml").write_text(
        "version: 1\nnetwork: {name: Acme Sites, url: https://acme.example}\n"
        f"mail:\n  from: Acme Sites <hello@acme.example>\n  transport: smtp://127.0.0.1:{port}\n"
        f"  connections: {connections}\n{mail_extra}imports: none\n"
    )
    content = "".join(f"  {line}\n" if line else "\n" for line in BODY.splitlines())
    (root / "broadcasts" / "holiday.yaml").write_text(
        'kind: email\nsubject: "Holiday support hours at {{ network_name }}"\ntargets: {all: true}\n'
        f"content: |\n{content}"
    )
    from commsync.store.sql import open_store

    open_store(f"sqlite:///{root / '.commsync' / 'store.db'}").close()
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    conn = sqlite3.connect(root / ".commsync" / "store.db")
    with conn:
        conn.executemany(
            "INSERT INTO customers (id, email, email_key, username, first_name, last_name, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    str(n),
                    f"c{n}@example.com",
                    f"c{n}@example.com",
                    f"user{n}",
                    f"First{n}",
                    "Last",
                    now,
                )
                for n in range(1, customers + 1)
            ),
        )
    conn.close()


def timed_commsync(root: Path, *args: str) -> tuple[float, float, str]:
    """Run `commsync -C root ARGS`: its wall time, peak RSS (MiB) and output; exit on failure."""
    exe = shutil.which("commsync", path=str(Path(sys.executable).parent)) or "commsync"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [exe, "-C", str(root), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out = (proc.stdout.read() if proc.stdout else b"").decode()
    if os.waitstatus_to_exitcode(status) != 0:
        err = (proc.stderr.read() if proc.stderr else b"").decode()
        raise SystemExit(f"commsync {' '.join(args)} failed:\n{out}\n{err}")
    return wall, usage.ru_maxrss / 1024, out


def run_apply(root: Path) -> tuple[float, float, str]:
    return timed_commsync(root, "apply", "--yes")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--large", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--workers", action="store_true", help="also time the send by a delivery worker"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the instructions of a 10,000-recipient apply (callgrind)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    compile_bytecode()
    sink, port = start_sink()
    try:
        # smtp-source's own rate moves by a quarter from one run to the next on this machine kind:
        # the reference is the median of three
        rates = sorted(smtp_source(port, args.recipients) for _ in range(3))
        source_rate = rates[1]
        print(
            f"smtp-source (4 sessions, 3,000 bytes): {source_rate:,.0f} msg/s"
            f" (median of {', '.join(f'{r:,.0f}' for r in rates)})"
        )
        naive_rate = naive(port, 5_000)
        print(f"naive smtplib + EmailMessage (1 connection): {naive_rate:,.0f} msg/s")
        for count in (args.recipients, args.large):
            root = WORK / f"project-{count}"
            build_project(root, count, port, args.connections)
            wall, rss, _ = run_apply(root)
            rate = count / wall
            print(
                f"commsync apply, {count:,} recipients, {args.connections} connections: {wall:.1f} s, "
                f"{rate:,.0f} msg/s, ratio to smtp-source {rate / source_rate:.2f}, peak RSS {rss:.0f} MiB"
            )
        if args.workers:
            count = args.recipients
            root = WORK / f"workers-{count}"
            build_project(root, count, port, args.connections, "  delivery: workers\n")
            froze, _, _ = run_apply(root)
            wall, rss, _ = timed_commsync(root, "deliver")
            rate = count / wall
            print(
                f"commsync deliver (mail.delivery: workers), {count:,} recipients: apply froze the "
                f"audience in {froze:.1f} s; deliver {wall:.1f} s, {rate:,.0f} msg/s, ratio to "
                f"smtp-source {rate / source_rate:.2f}, peak RSS {rss:.0f} MiB"
            )
        if args.instructions:
            sender, builder = count_instructions(port, args.connections)
            built = f"{builder / 1e9:.2f} G" if builder else "none (built by the sender)"
            print(
                f"commsync apply, 10,000 recipients under callgrind: the sender {sender / 1e9:.2f} G "
                f"instructions; the message builder {built} (its count includes the sender's "
                "before the fork: callgrind carries it into the child)"
            )
    finally:
        sink.terminate()


def count_instructions(port: int, connections: int) -> tuple[int, int]:
    """Instructions of the apply process and of its forked message builder (0 if none)."""
    root = WORK / "instructions"
    build_project(root, 10_000, port, connections)
    exe = shutil.which("commsync", path=str(Path(sys.executable).parent)) or "commsync"
    out = WORK / "callgrind"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", exe, "-C",
         str(root), "apply", "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if proc.wait() != 0:
        raise SystemExit("commsync apply under callgrind failed")
    counts = {}
    for path in out.glob("cg.*"):
        totals = [
            line
            for line in path.read_text().splitlines()
            if line.startswith(("summary:", "totals:"))
        ]
        counts[int(path.name.split(".")[1])] = int(totals[0].split()[1])
    shutil.rmtree(out)
    sender = counts.pop(proc.pid)
    return sender, sum(counts.values())


if __name__ == "__main__":
    main()
