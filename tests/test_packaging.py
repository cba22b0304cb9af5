"""The wheel carries everything commsync reads at run time, and works without the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in ROOT.joinpath("schemas").glob("*.json"):
        assert f"commsync/_data/schemas/{schema.name}" in names
    assert "commsync/_data/examples/commsync.yaml" in names
    assert "commsync/_data/examples/data/customers.csv" in names
    assert "commsync/catalog/core/emails/payment_failed_customer.yaml" in names
    assert "commsync/store/migrations/versions/0001_initial.py" in names
    assert "commsync/store/migrations/versions/0002_system_email_outbox.py" in names
    assert "commsync/render/widget.js" in names
    assert "commsync/_data/examples/events/payment_received.json" in names
    assert "commsync/store/migrations/script.py.mako" in names
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert any(n.endswith("entry_points.txt") for n in names)


def test_the_wheel_runs_the_demo_on_its_own(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target), "NO_COLOR": "1"}
    work = tmp_path / "work"
    work.mkdir()

    def commsync(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "commsync", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import commsync; print(commsync.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(target)), where.stdout  # not the source checkout
    init = commsync("init", "--demo", "demo")
    assert init.returncode == 0, init.stderr
    plan = commsync("-C", "demo", "plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stderr
    assert "320 recipients (all customers)" in plan.stdout
