"""Secrets never reach a log, and failures are logged with their cause.

A real `commsync serve` at --log-level debug (text and JSON) and the command line at debug, with
every secret an operator gives commsync — the SMTP password, the admin API key, a password in
COMMSYNC_STORE — plus a customer's feed token and an unsubscribe token in use: none of them
appears in anything commsync writes, while the SMTP server refusing the credentials is logged
with its reply.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import trustme
from sqlalchemy.engine import make_url

from tests.helpers import Repo, settings_for
from tests.hostile import EXE
from tests.smtp_server import Recorder, SmtpServer, authenticator, free_port, wait_for
from tests.test_events import _setup, payment

SMTP_PASSWORD = "smtp-secret-7Hq2xZ"
API_KEY = "api-secret-key-R4nd0m-0123456789"
STORE_PASSWORD = "store-secret-Vb8k"


@pytest.fixture
def secured(tmp_path: Path) -> tuple[SmtpServer, dict[str, str]]:
    """A STARTTLS SMTP server that wants AUTH with a password other than the one commsync has."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = SmtpServer(
        Recorder(),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator("ops", "the-right-one"),
        auth_required=True,
    )
    env = {
        "SSL_CERT_FILE": str(bundle),
        "COMMSYNC_SMTP_USERNAME": "ops",
        "COMMSYNC_SMTP_PASSWORD": SMTP_PASSWORD,
        "COMMSYNC_API_KEY": API_KEY,
    }
    return server, env


def _store_with_password(pg_url: str) -> str:
    """The test database's URL with a password (trust authentication ignores it)."""
    return make_url(pg_url).set(password=STORE_PASSWORD).render_as_string(hide_password=False)


def _serve(repo: Repo, env: dict[str, str], log: Path, *args: str) -> None:
    """serve at debug level: events (one with a refused key), a feed read with a customer
    token, a dismissal with a forged one, an unsubscribe link; then a graceful stop."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = repo.cli("token", "1").output.strip().splitlines()[-1]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [EXE, "-C", str(repo.root), "--log-level", "debug", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        wait_for(lambda: _up(url), timeout=60)
        admin = {"Authorization": f"Bearer {API_KEY}"}
        for i in range(3):
            data = payment(customer_id=i, customer_user_email=f"s{i}@example.com")
            answer = httpx.post(
                f"{url}/v1/events",
                json={"type": "payment_received", "data": data, "key": f"k{i}"},
                headers=admin,
            )
            assert answer.status_code == 202, answer.text
        wrong = {"Authorization": f"Bearer {API_KEY[:-1]}x"}
        assert httpx.post(f"{url}/v1/events", json={}, headers=wrong).status_code == 401
        feed = httpx.get(
            f"{url}/v1/customers/1/notices", headers={"Authorization": f"Bearer {token}"}
        )
        assert feed.status_code == 200, feed.text
        forged = httpx.post(
            f"{url}/v1/customers/1/notices/x/dismiss",
            headers={"Authorization": f"Bearer {token[:-2]}zz"},
        )
        assert forged.status_code == 401
        httpx.get(f"{url}/v1/unsubscribe/{token}")
        wait_for(lambda: "(at AUTH)" in log.read_text(errors="replace"), timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    text = log.read_text(errors="replace")
    for secret in (SMTP_PASSWORD, API_KEY, STORE_PASSWORD, token, token.split(".")[-1]):
        assert secret not in text, f"a secret reached the log: {secret[:6]}…"
    assert "Traceback" not in text, text[-3000:]


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_serve_logs_no_secret_and_says_why_mail_failed(
    repo: Repo,
    pg_url: str,
    secured: tuple[SmtpServer, dict[str, str]],
    tmp_path: Path,
    fmt: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, env = secured
    with server:
        env = {**env, "COMMSYNC_STORE": _store_with_password(pg_url), "COMMSYNC_LOG_FORMAT": fmt}
        settings = settings_for(f"smtp+starttls://127.0.0.1:{server.port}?timeout=5")
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # the in-process setup (apply, token) sees them too
        _setup(repo, server, settings=settings + "imports: none\n")
        log = tmp_path / "serve.log"
        _serve(repo, env, log)
    lines = log.read_text().splitlines()
    if fmt == "json":
        records = [json.loads(line) for line in lines if line.startswith("{")]
        assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
        messages = [r["message"] for r in records]
    else:
        messages = lines
    failures = [m for m in messages if "(at AUTH)" in m]
    assert failures, "the refused credentials were not logged"
    assert all(re.search(r"535 .*\(at AUTH\)", m) for m in failures), failures
    assert any("/v1/unsubscribe/…" in m for m in messages), "the access log shows no masked link"


def test_the_command_line_logs_no_secret(
    repo: Repo,
    pg_url: str,
    secured: tuple[SmtpServer, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, env = secured
    with server:
        env = {**env, "COMMSYNC_STORE": _store_with_password(pg_url)}
        for name, value in env.items():
            monkeypatch.setenv(name, value)  # the in-process import sees them too
        repo.write("emails/payment_received_customer.yaml", "email: payment_received_customer\n")
        repo.write(
            "commsync.yaml",
            settings_for(f"smtp+starttls://127.0.0.1:{server.port}?timeout=5") + "imports: none\n",
        )
        repo.write(
            "broadcasts/emails/hello.yaml",
            "kind: email\nsubject: Hello\ncontent: Hi {{ customer_first_name }}\n"
            "targets:\n  all: true\n",
        )
        repo.import_data()
        repo.commit_all("hello")
        outputs = []
        for args in (
            ["apply", "--yes"],
            ["deliver"],
            ["status"],
            ["test-send", "payment_received_customer", "--to", "ops@example.com"],
        ):
            result = subprocess.run(
                [EXE, "-C", str(repo.root), "--log-level", "debug", *args],
                capture_output=True,
                text=True,
                env={**os.environ, **env},
                timeout=120,
            )
            outputs.append(
                f"$ {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}"
            )
    text = "\n".join(outputs)
    for secret in (SMTP_PASSWORD, API_KEY, STORE_PASSWORD):
        assert secret not in text, f"a secret reached the output: {secret[:6]}…\n{text}"
    assert re.search(r"535 .*\(at AUTH\)", text), text  # the refusal, with the server's reply
    assert "Traceback" not in text, text
