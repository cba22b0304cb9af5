"""`/metrics` in Prometheus text format.

Counts that matter across processes (events, messages, queue depth) are read from the store when
scraped, so every `serve` worker reports the same totals; feed requests and their latency are
this process's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from commsync.store.base import Store


class _StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "commsync_events_received", "Events received, by type.", labels=["event"]
        )
        for event, count in sorted(self.store.events_received().items()):
            events.add_metric([event], count)
        yield events
        sent = CounterMetricFamily(
            "commsync_messages_sent", "Messages delivered, by kind.", labels=["kind"]
        )
        failed = CounterMetricFamily(
            "commsync_messages_failed",
            "Messages that failed permanently, by kind.",
            labels=["kind"],
        )
        broadcasts = [
            b.progress for b in self.store.snapshot().broadcasts.values() if b.progress is not None
        ]
        system = self.store.system_emails().values()
        sent.add_metric(["broadcast"], sum(p.sent for p in broadcasts))
        sent.add_metric(["system_email"], sum(e.stats.sent for e in system))
        failed.add_metric(["broadcast"], sum(p.failed for p in broadcasts))
        failed.add_metric(["system_email"], sum(e.stats.failed for e in system))
        yield sent
        yield failed
        yield GaugeMetricFamily(
            "commsync_queue_depth",
            "Messages queued and due now.",
            value=self.store.queue_depth(datetime.now(UTC)),
        )


class Metrics:
    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "commsync_feed_requests",
            "Notices feed requests served by this process.",
            registry=self.registry,
        )
        self.latency = Histogram(
            "commsync_feed_request_seconds",
            "Time to build a notices feed response, in this process.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store))

    def feed(self, seconds: float) -> None:
        self.requests.inc()
        self.latency.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
