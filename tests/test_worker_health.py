"""What `/healthz` says of the delivery worker, from its health record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from commsync.delivery.worker import STALL, WorkerHealth

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_a_worker_just_started_is_healthy_until_its_first_round_is_overdue() -> None:
    health = WorkerHealth()
    assert not health.healthy(T0)  # not started
    health.running, health.started_at = True, T0
    assert health.healthy(T0 + timedelta(seconds=1))  # its first round is under way
    assert not health.healthy(T0 + STALL + timedelta(seconds=1))  # …and never reached the store
    health.beat(T0 + STALL)
    assert health.healthy(T0 + STALL + timedelta(seconds=1))
    health.failed(T0 + STALL + timedelta(seconds=2), "the store is unavailable")
    assert not health.healthy(T0 + STALL + timedelta(seconds=3))
    health.running = False
    health.beat(T0 + STALL * 2)
    assert not health.healthy(T0 + STALL * 2)  # stopped
