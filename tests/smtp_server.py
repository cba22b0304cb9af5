"""A real SMTP server on loopback (aiosmtpd) that records what it receives and can be scripted."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

# A script sees (recipient, how many times it was offered before) and answers None (accept),
# an SMTP reply like "451 4.3.0 try later", or "drop" to cut the connection.
Script = Callable[[str, int], str | None]


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.strict)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class Recorder:
    """The aiosmtpd handler."""

    script: Script | None = None
    pipelining: bool = True
    # answers the end of DATA, as `script` answers RCPT (its recipient, how many times it
    # reached the end of DATA before)
    data_script: Script | None = None
    ended: Counter[str] = field(default_factory=Counter)
    on_message: Callable[[Received], None] | None = None  # called in the server's thread
    delay: float = 0.0
    messages: list[Received] = field(default_factory=list)
    offered: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            seen = self.offered[address]
            self.offered[address] += 1
        answer = self.script(address, seen) if self.script else None
        if answer == "drop":
            assert server.transport is not None
            server.transport.abort()
            return "421 closing"
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.original_content or b""
        received = Received(str(envelope.mail_from), list(envelope.rcpt_tos), data)
        if self.data_script is not None:
            with self.lock:
                seen = self.ended[received.recipients[0]]
                self.ended[received.recipients[0]] += 1
            answer = self.data_script(received.recipients[0], seen)
            if answer:
                return answer
        with self.lock:
            self.messages.append(received)
        if self.on_message is not None:
            self.on_message(received)
        return "250 OK queued"

    def by_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(r for m in self.messages for r in m.recipients)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """aiosmtpd in a thread on 127.0.0.1; optionally with TLS (implicit or STARTTLS) and AUTH."""

    def __init__(self, recorder: Recorder, **kwargs: Any) -> None:
        self.recorder = recorder
        self.port = free_port()
        self.controller = Controller(recorder, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


def authenticator(username: str, password: str) -> Callable[..., AuthResult]:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)  # handled=False: let aiosmtpd send 535

    return check


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)
