"""Benchmark: how long small commands take from start to exit, as an operator or CI step sees it.

    python bench/startup.py [--runs 15]

Makes a demo repository (`commsync init --demo`, SQLite store) in bench/.work/startup, then runs
`commsync --help`, `commsync token 1001` and `commsync validate` there as subprocesses, `--runs`
times each, and prints the median and the fastest with the machine line. For reference, the same
run times `python -c pass` (the interpreter's own start-up on this machine).

Targets (issue 12): `--help` ≤ 0.2 s; `token`, `validate` on the demo ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "startup"
sys.path.insert(0, str(HERE))
from plan import compile_bytecode, machine  # noqa: E402


def _commsync() -> str:
    return shutil.which("commsync", path=str(Path(sys.executable).parent)) or "commsync"


def _times(command: list[str], runs: int, cwd: Path) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    compile_bytecode()
    exe = _commsync()
    subprocess.run([exe, "init", "--demo", str(WORK / "demo")], check=True, capture_output=True)
    demo = WORK / "demo"
    cases = [
        ("python -c pass (reference)", [sys.executable, "-c", "pass"]),
        ("commsync --help", [exe, "--help"]),
        ("commsync token 1001", [exe, "token", "1001"]),
        ("commsync validate (demo)", [exe, "validate"]),
    ]
    for label, command in cases:
        times = _times(command, args.runs, demo)
        print(
            f"{label}: median {statistics.median(times):.3f} s, fastest {min(times):.3f} s "
            f"({args.runs} runs)"
        )


if __name__ == "__main__":
    main()
