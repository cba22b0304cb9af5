"""The shape of the code holds: faces call one service method per command or route, the import
contracts hold, the command line starts without the heavy libraries, modules stay small."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import click
import httpx
import pytest
from fastapi.routing import APIRoute

import commsync.api.service as service_module
from commsync.cli import cli
from commsync.http import app as http_app
from tests.helpers import Repo, run_cli
from tests.http_server import Served

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "commsync"


class SpyService:
    """A real Service that records which of its public methods the face called.

    Calls the service makes to itself go to the real object, so only the face's calls count.
    """

    calls: ClassVar[list[str]] = []
    real: ClassVar[type[service_module.Service]] = service_module.Service

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._real = SpyService.real(*args, **kwargs)

    def __enter__(self) -> SpyService:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def close(self, grace: float | None = None) -> None:
        self._real.close(grace)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def recorded(*args: Any, **kwargs: Any) -> Any:
            SpyService.calls.append(name)
            return attr(*args, **kwargs)

        return recorded


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[SpyService]]:
    monkeypatch.setattr(service_module, "Service", SpyService)  # the command line's
    monkeypatch.setattr(http_app, "Service", SpyService)  # serve's
    SpyService.calls = []
    yield SpyService


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            if command.invoke_without_command:  # a command of its own too (`commsync queue`)
                out.append(path)
            out.extend(_leaves(command, path))
        else:
            out.append(path)
    return out


# One run of every command, in a demo repository (`{root}`: a scratch directory).
RUNS: dict[tuple[str, ...], list[str]] = {
    ("init",): ["init", "{root}/new"],
    ("validate",): ["validate"],
    ("plan",): ["plan"],
    ("apply",): ["apply", "--yes"],
    ("unlock",): ["unlock", "nobody"],
    ("status",): ["status"],
    ("emails", "list"): ["emails", "list"],
    ("emails", "import"): ["emails", "import", "site_published_admin"],
    ("emails", "reset"): ["emails", "reset", "--all"],
    ("customers", "import"): ["customers", "import", "data/customers.csv"],
    ("products", "import"): ["products", "import", "data/products.csv"],
    ("memberships", "import"): ["memberships", "import", "data/memberships.csv"],
    ("event",): ["event", "payment_received", "--data", "events/payment_received.json"],
    ("deliver",): ["deliver"],
    ("queue",): ["queue"],
    ("queue", "cancel"): ["queue", "cancel", "--email", "payment_received_customer", "--yes"],
    ("suppressions", "list"): ["suppressions", "list"],
    ("suppressions", "add"): ["suppressions", "add", "ada@example.com"],
    ("suppressions", "remove"): ["suppressions", "remove", "nobody@example.com"],
    ("suppressions", "import"): ["suppressions", "import", "data/customers.csv"],
    ("test-send",): ["test-send", "payment_received_customer", "--to", "you@example.com"],
    ("token",): ["token", "1001"],
    ("rotate-key",): ["rotate-key", "--yes"],
    ("serve",): ["serve"],
    ("drift",): ["drift"],
    ("pull",): ["pull"],
    ("schema",): ["schema", "--out", "{root}/schemas"],
    ("preview",): ["preview", "broadcasts/emails/2026-12-holiday-support-hours.yaml", "--out", "p"],
}


def test_every_command_has_a_run_below() -> None:
    assert sorted(RUNS) == _leaves(cli)


def test_every_command_calls_exactly_one_service_method(
    demo_repo: Repo, spy: type[SpyService], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)  # serve: do not block
    assert (demo_repo.root / RUNS[("preview",)][1]).exists()
    for path, args in sorted(RUNS.items()):
        spy.calls = []
        argv = [a.replace("{root}", str(tmp_path)) for a in args]
        result = run_cli("-C", str(demo_repo.root), *argv)
        assert result.exit_code in (0, 1, 2), (path, result.output)
        assert len(spy.calls) == 1, f"commsync {' '.join(path)} called {spy.calls}"


Request = Callable[[httpx.Client], httpx.Response]
ADMIN_ROUTES = {
    ("POST", "/v1/events"),
    ("PUT", "/v1/customers/{customer_id}"),
    ("PUT", "/v1/products/{slug}"),
    ("PUT", "/v1/customers/{customer_id}/memberships"),
    ("DELETE", "/v1/customers/{customer_id}"),
    ("DELETE", "/v1/products/{slug}"),
    ("GET", "/v1/event-types"),
    ("POST", "/v1/customers/{customer_id}/token"),
}


def _requests(admin: dict[str, str], token: str) -> dict[tuple[str, str], Request]:
    own = {"Authorization": f"Bearer {token}"}
    return {
        ("GET", "/healthz"): lambda c: c.get("/healthz"),
        ("GET", "/metrics"): lambda c: c.get("/metrics"),
        ("GET", "/widget.js"): lambda c: c.get("/widget.js"),
        ("GET", "/v1/customers/{customer_id}/notices"): lambda c: c.get(
            "/v1/customers/1001/notices", headers=own
        ),
        ("POST", "/v1/customers/{customer_id}/notices/{notice_id:path}/dismiss"): lambda c: c.post(
            "/v1/customers/1001/notices/welcome/dismiss", headers=own
        ),
        ("POST", "/v1/events"): lambda c: c.post(
            "/v1/events", json={"type": "site_published", "data": {}}, headers=admin
        ),
        ("PUT", "/v1/customers/{customer_id}"): lambda c: c.put(
            "/v1/customers/77", json={"email": "x@example.com"}, headers=admin
        ),
        ("PUT", "/v1/products/{slug}"): lambda c: c.put(
            "/v1/products/gold", json={"name": "Gold"}, headers=admin
        ),
        ("PUT", "/v1/customers/{customer_id}/memberships"): lambda c: c.put(
            "/v1/customers/77/memberships", json=[], headers=admin
        ),
        ("DELETE", "/v1/customers/{customer_id}"): lambda c: c.delete(
            "/v1/customers/77", headers=admin
        ),
        ("DELETE", "/v1/products/{slug}"): lambda c: c.delete("/v1/products/gold", headers=admin),
        ("GET", "/v1/event-types"): lambda c: c.get("/v1/event-types", headers=admin),
        ("POST", "/v1/customers/{customer_id}/token"): lambda c: c.post(
            "/v1/customers/1001/token", json={"ttl": "5m"}, headers=admin
        ),
        ("GET", "/v1/unsubscribe/{token}"): lambda c: c.get("/v1/unsubscribe/nope"),
        ("POST", "/v1/unsubscribe/{token}"): lambda c: c.post("/v1/unsubscribe/nope"),
    }


def test_every_route_calls_exactly_one_service_method(
    demo_repo: Repo, spy: type[SpyService]
) -> None:
    assert demo_repo.cli("apply", "--yes").exit_code == 0
    token = demo_repo.cli("token", "1001").stdout.strip().splitlines()[-1]
    routes = {
        (method, route.path)
        for route in http_app.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    with Served(demo_repo.root) as served:
        requests = _requests(served.admin, token)
        assert routes == set(requests), "a route without a request below (or one gone)"
        for route, send in sorted(requests.items()):
            spy.calls = []
            response = send(served.client)
            assert response.status_code < 500, (route, response.text)
            # admin routes check the key first, before the body is read; then one use case
            admin = route in ADMIN_ROUTES
            if admin:
                assert spy.calls[:1] == ["authorize_admin"], (route, spy.calls)
            use_cases = spy.calls[1:] if admin else spy.calls
            assert len(use_cases) == 1, f"{route} called {spy.calls}"
        spy.calls = []
        refused = served.client.post("/v1/events", json={"type": 1}, headers={})
        assert refused.status_code == 401 and spy.calls == ["authorize_admin"], spy.calls


def test_the_import_contracts_hold() -> None:
    """The layers, the forbidden imports and the acyclic check of pyproject.toml."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is part of the test extras"
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "4 kept, 0 broken" in done.stdout


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    heavy = ["sqlalchemy", "jinja2", "jsonschema", "fastapi", "rich", "git", "alembic", "uvicorn"]
    # nor the model's package: its dataclasses take 50 ms to define, half of `--help`
    heavy.append("commsync.model")
    code = f"import sys, commsync.cli; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_token_and_validate_load_only_what_they_use(repo: Repo) -> None:
    """`token` reads commsync.yaml and the store: not the planner, the renderer, Jinja2, the
    event service, the delivery engine, GitPython, or psycopg for a SQLite store. `validate`
    needs the loader, the planner's checks and templates, but neither the delivery engine nor
    SQLAlchemy (it reads a SQLite store's references directly), nor does `plan`; `apply` on
    SQLite neither psycopg nor the PostgreSQL dialect; `plan` and `validate` no markdown. (A module
    check, not a timer: bench/run-all times start-up.)"""
    repo.import_data()
    heavy = [
        "jinja2",
        "git",
        "psycopg",
        "fastapi",
        "rich",
        "alembic",
        "commsync.plan",
        "commsync.render",
        "commsync.events",
        "commsync.delivery.engine",
        "commsync.apply",
        "commsync.repo.loader",
    ]

    def loaded(*args: str, watch: list[str] = heavy) -> list[str]:
        code = (
            "import atexit, sys\n"
            f"atexit.register(lambda: print([m for m in {watch!r} if m in sys.modules],"
            " file=sys.stderr))\n"
            "sys.argv = ['commsync', '-C', sys.argv[1], *sys.argv[2:]]\n"
            "from commsync.cli import main\n"
            "main()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(repo.root), *args], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        return list(ast.literal_eval(last))

    assert loaded("token", "1") == []  # the first token makes the store's signing key
    # with the key made, token reads a SQLite store directly: no SQLAlchemy at all
    assert loaded("token", "1", watch=["sqlalchemy", "psycopg", "alembic"]) == []
    checking = {"jinja2", "commsync.plan", "commsync.render", "commsync.repo.loader"}
    assert set(loaded("validate")) <= checking
    # validate reads a SQLite store's references over the driver: no SQLAlchemy at all
    assert loaded("validate", watch=["sqlalchemy", "psycopg", "alembic"]) == []
    # plan reads a SQLite store at this schema over the driver too (store/light.py)
    assert loaded("plan", watch=["sqlalchemy", "psycopg", "alembic"]) == []
    # nor does apply on a SQLite store load PostgreSQL's driver or SQLAlchemy's dialect
    postgresql = ["psycopg", "sqlalchemy.dialects.postgresql"]
    # plan and validate render no content: no markdown renderer
    assert loaded("plan", watch=["markdown_it"]) == []
    assert loaded("validate", watch=["markdown_it"]) == []
    assert loaded("apply", "--yes", watch=postgresql) == []


def test_modules_stay_small_or_say_why() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines <= 400 or "versions" in path.parts:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert "longer than 400 lines because" in doc.lower(), f"{path} has {lines} lines"


def test_the_slow_tests_named_in_conftest_exist() -> None:
    """A renamed test would silently stop being marked slow."""
    from tests.conftest import SLOW_MODULES, SLOW_TESTS

    for name in SLOW_TESTS:
        module, test = name.split("::")
        text = (ROOT / "tests" / module).read_text(encoding="utf-8")
        assert f"def {test}(" in text, name
    assert all((ROOT / "tests" / module).exists() for module in SLOW_MODULES)
