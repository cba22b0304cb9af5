"""Transports: where messages go. A Transport opens Sessions; a Session sends one message at a time.

Sessions never raise for a delivery problem; they return an Outcome the ledger records. Its
`kind` says what happens to the row; its `cause` classifies the failure once, where it happened:

- `sent`: the server accepted the message (or the file is in the Maildir);
- `transient`: a 4xx reply (cause `reply`), a connection problem *before* the message body went
  out (cause `connection`) or a local write failure (cause `local`) — retried;
- `permanent`: a 5xx reply — recorded as failed, never retried;
- `uncertain`: the body went out but no reply came back (cause `no_reply`) — it may or may not
  have been delivered, so it is not re-sent unless the operator asks (`--resend-uncertain`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol


class OutcomeKind(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNCERTAIN = "uncertain"


class Cause(StrEnum):
    """Why a message was not sent: where the failure happened."""

    NONE = "none"
    CONNECTION = "connection"  # no usable connection: retry later, and reconnect with backoff
    REPLY = "reply"  # the server answered with a refusal
    NO_REPLY = "no_reply"  # the body went out and the reply never came
    LOCAL = "local"  # the local Maildir could not be written


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    detail: str = ""
    cause: Cause = Cause.NONE


SENT = Outcome(OutcomeKind.SENT)


class Session(Protocol):
    """One connection (or one Maildir writer), driven by one coroutine at a time.

    A message goes out in two steps, so that the ledger can commit the row's `sending` mark
    after the server accepted the envelope and before the body goes out: `begin` (None when the
    message can follow, else its outcome: nothing of it went out), then `finish` (the body; with
    `then`, the next message's sender and recipient, which a session may send ahead with it —
    the next `begin` must then be for them). `abandon` drops a message begun and never
    finished; `send` is both steps.
    """

    async def begin(self, sender: str, recipient: str) -> Outcome | None: ...

    async def finish(self, data: bytes, then: tuple[str, str] | None = None) -> Outcome: ...

    def abandon(self) -> None: ...

    async def send(self, sender: str, recipient: str, data: bytes) -> Outcome: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """Opens sessions; `describe()` names it without credentials."""

    def open(self) -> Session: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    security: Literal["none", "starttls", "tls"]
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    helo: str | None = None


def hostname() -> str:
    return os.uname().nodename or "localhost"
