"""Benchmark: the delivery worker sending queued system emails (`commsync deliver`).

    python bench/deliver.py [--events 5000] [--connections 4]

Needs Postfix's smtp-sink (Debian: `apt-get install postfix`). A project whose
payment_received_customer email is installed gets N events (fired in-process through the event
service, as `POST /v1/events` would: checked, rendered and queued), then the real
`commsync deliver` subprocess sends them to `smtp-sink` — each message claimed, checked against
the email as it is now (events/recheck.py), sent and recorded. Two runs:

- *unchanged*: the email is as it was when the events came — the stored messages are sent;
- *edited*: the email's subject was changed (and applied) after the events — every message is
  rendered again from its stored payload before it is sent.

It prints the machine, each run's wall time, messages per second and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "deliver"
sys.path.insert(0, str(HERE))
from plan import compile_bytecode, machine  # noqa: E402
from send import start_sink, timed_commsync  # noqa: E402

EXE = shutil.which("commsync", path=str(Path(sys.executable).parent)) or "commsync"
CUSTOMER = "email: payment_received_customer\n"


def _cli(root: Path, *args: str) -> str:
    done = subprocess.run([EXE, "-C", str(root), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"commsync {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def build(root: Path, port: int, connections: int, events: int) -> None:
    """A fresh project with the customer email installed and `events` payments queued."""
    if root.exists():
        shutil.rmtree(root)
    (root / "emails").mkdir(parents=True)
    (root / "commsync.yaml").write_text(
        "version: 1\nnetwork: {name: Acme Sites, url: https://acme.example}\n"
        f"mail:\n  from: Acme Sites <hello@acme.example>\n  transport: smtp://127.0.0.1:{port}\n"
        f"  connections: {connections}\nimports: none\n"
    )
    (root / "emails" / "payment_received_customer.yaml").write_text(CUSTOMER)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    _commit(root, "emails")
    _cli(root, "apply", "--yes")

    from commsync.api import Project
    from commsync.api.service import Service

    with Service(Project(root)) as service:
        mock = service._event_service().catalog.events["payment_received"].mock_payload()
        for n in range(events):
            data = {
                **mock,
                "customer_id": n,
                "customer_name": f"Customer {n}",
                "customer_user_email": f"c{n}@example.com",
                "payment_reference_code": f"PAY-{n:08d}",
            }
            service.fire_event("payment_received", data, key=f"bench-{n}")


def _commit(root: Path, message: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", message], check=True, env=env)


def deliver(root: Path) -> tuple[float, float, str]:
    return timed_commsync(root, "deliver")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    compile_bytecode()
    sink, port = start_sink()
    try:
        for edited in (False, True):
            root = WORK / ("edited" if edited else "unchanged")
            started = time.perf_counter()
            build(root, port, args.connections, args.events)
            queued = time.perf_counter() - started
            if edited:
                (root / "emails" / "payment_received_customer.yaml").write_text(
                    CUSTOMER + 'subject: "Thanks: {{ payment_total }} received"\n'
                )
                _commit(root, "edit the subject")
                _cli(root, "apply", "--yes")
            wall, rss, out = deliver(root)
            summary = next(line for line in out.splitlines() if line.startswith("delivered:"))
            rate = args.events / wall
            label = "edited after the events (rendered again)" if edited else "unchanged"
            print(
                f"{label}: {args.events:,} events queued in {queued:.1f} s; deliver: {wall:.1f} s, "
                f"{rate:,.0f} msg/s, peak RSS {rss:.0f} MiB ({summary})"
            )
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
