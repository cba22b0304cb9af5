"""Test helpers: a repository driver, the CLI runner, store dumps."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner, Result

from commsync.cli import cli
from commsync.store.sql import create_store_engine

SETTINGS = """\
version: 1
network:
  name: Acme Sites
  url: https://acme.example
mail:
  from: Acme Sites <hello@acme.example>
  admins: [ops@acme.example]
"""

CUSTOMERS = """\
id,email,username,first_name,last_name,locale
1,ada@example.com,ada,Ada,Lovelace,en_GB
2,grace@example.com,grace,Grace,Hopper,en_US
3,alan@example.org,aturing,Alan,Turing,en_GB
4,kat@example.net,kjohnson,Katherine,Johnson,en_US
5,lin@example.com,linus,Linus,T,fi
"""
PRODUCTS = "slug,name\npro,Pro\nstarter,Starter\nagency,Agency\n"
MEMBERSHIPS = """\
customer_id,product,status
1,pro,active
2,pro,trialing
3,pro,cancelled
3,starter,active
4,agency,active
5,starter,expired
"""


def pg_admin_url() -> str:
    return os.environ.get("COMMSYNC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def run_cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@dataclass
class Repo:
    """An operator repository in a temp dir, driven through the real CLI."""

    root: Path

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / '.commsync' / 'store.db'}"

    def init(self, settings: str = SETTINGS) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.write("commsync.yaml", settings)
        self.write(".gitignore", ".commsync/\n")
        subprocess.run(["git", "init", "-q", str(self.root)], check=True)
        self.commit_all("init")

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.root), *args], check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def commit_all(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def cli(self, *args: str, input: str | None = None) -> Result:
        return run_cli("-C", str(self.root), *args, input=input)

    def import_data(self, directory: Path | None = None) -> None:
        if directory is None:
            directory = self.root / "data"
            self.write("data/products.csv", PRODUCTS)
            self.write("data/customers.csv", CUSTOMERS)
            self.write("data/memberships.csv", MEMBERSHIPS)
        for kind in ("products", "customers", "memberships"):
            result = self.cli(kind, "import", str(directory / f"{kind}.csv"))
            assert result.exit_code == 0, result.output

    def plan_json(self, *args: str) -> dict[str, Any]:
        result = self.cli("plan", "--format", "json", *args)
        assert result.exit_code in (0, 2), result.output
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def dump_store(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: compare before and after to prove nothing changed."""
    engine = create_store_engine(url)
    out: dict[str, list[tuple[Any, ...]]] = {}
    try:
        with engine.connect() as conn:
            for name in sorted(sa.inspect(conn).get_table_names()):
                rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
                out[name] = sorted((tuple(r) for r in rows), key=repr)
    finally:
        engine.dispose()
    return out


def settings_for(transport: str, *, connections: int = 4, extra: str = "") -> str:
    """commsync.yaml sending through `transport`."""
    return SETTINGS + f"  transport: {transport}\n  connections: {connections}\n" + extra


def news_checked_at_data(
    repo: Repo, count: int, check: Callable[[str], bool], *, connections: int = 4
) -> list[bool]:
    """`news_to_everyone` applied against a real SMTP server that, as each message's body
    arrives, asks `check(recipient)`; returns the answers, after asserting that the apply
    succeeded and every recipient got one message."""
    from tests.smtp_server import Recorder, SmtpServer

    recorder = Recorder()
    original = recorder.handle_DATA
    answers: list[bool] = []

    async def checked(server, session, envelope):  # type: ignore[no-untyped-def]
        answers.append(check(envelope.rcpt_tos[0]))
        return await original(server, session, envelope)

    recorder.handle_DATA = checked  # type: ignore[method-assign]
    with SmtpServer(recorder) as server:
        news_to_everyone(repo, server.url, count, connections=connections)
        result = repo.cli("apply", "--yes")
        assert result.exit_code == 0, result.output
    assert sorted(recorder.by_recipient().values()) == [1] * count
    return answers


def news_to_everyone(repo: Repo, transport: str, count: int, *, connections: int = 4) -> None:
    """A repository sending through `transport`, `count` seeded customers, and one email
    broadcast to all of them (`broadcasts/news.yaml`), committed."""
    repo.write(
        "commsync.yaml", settings_for(transport, connections=connections, extra="imports: none\n")
    )
    seed(repo, count)
    repo.write(
        "broadcasts/news.yaml", "kind: email\nsubject: News\ntargets: {all: true}\ncontent: Hi\n"
    )
    repo.commit_all("news")


def seed(repo: Repo, count: int, product_every: int = 2) -> None:
    """`count` customers c1…cN (first name FirstN), products pro and basic; every
    `product_every`-th customer has an active pro membership, the others basic."""
    lines = ["id,email,username,first_name,last_name"]
    lines += [f"c{i},c{i}@example.com,user{i},First{i},Last" for i in range(1, count + 1)]
    repo.write("data/customers.csv", "\n".join(lines) + "\n")
    repo.write("data/products.csv", "slug,name\npro,Pro\nbasic,Basic\n")
    members = ["customer_id,product,status"]
    members += [
        f"c{i},{'pro' if i % product_every == 0 else 'basic'},active" for i in range(1, count + 1)
    ]
    repo.write("data/memberships.csv", "\n".join(members) + "\n")
    for kind in ("products", "customers", "memberships"):
        result = repo.cli(kind, "import", f"data/{kind}.csv")
        assert result.exit_code == 0, result.output
