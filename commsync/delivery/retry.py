"""When a message that failed for a transient reason is tried again: one policy, two schedules.

An apply retries within its own run (short pauses between passes over the send); the delivery
worker requeues the row with a due time and moves on (long pauses, survives restarts). Either
way a transient failure becomes final after `max_attempts`, and `give_up_after` consecutive
connection failures stop a connection (the transport is down: the rest stays queued).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    delays: tuple[float, ...]  # seconds before retry 1, 2, …; the last repeats
    reconnect_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # after a failed connection
    give_up_after: int = 5  # consecutive connection failures before a connection stops

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        return _pick(self.delays, attempt)

    def reconnect_delay(self, failures: int) -> float:
        return _pick(self.reconnect_delays, failures)


def _pick(delays: tuple[float, ...], n: int) -> float:
    return delays[min(n, len(delays)) - 1] if n > 0 else 0.0


# Passes over a broadcast send within one apply.
APPLY_RETRIES = RetryPolicy(max_attempts=5, delays=(0.5, 2.0, 5.0, 15.0))
# The delivery worker: a row is requeued 1m, 5m, 15m, 1h, then every 4h, up to 8 attempts.
WORKER_RETRIES = RetryPolicy(max_attempts=8, delays=(60.0, 300.0, 900.0, 3600.0, 14400.0))
