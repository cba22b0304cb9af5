"""`/metrics` in Prometheus text format.

Counts that matter across processes (events, messages, queue depth) come from the store when
scraped (the service reads them), so every `serve` worker reports the same totals; feed
requests and their latency are this process's own.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from commsync.api.operations import DeliveryCounts


class _Counts(Collector):
    """The store's counts of the scrape in progress."""

    def __init__(self) -> None:
        self.counts: DeliveryCounts | None = None

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        if counts is None:
            return
        events = CounterMetricFamily(
            "commsync_events_received", "Events received, by type.", labels=["event"]
        )
        for event, n in sorted(counts.events_received.items()):
            events.add_metric([event], n)
        yield events
        sent = CounterMetricFamily(
            "commsync_messages_sent", "Messages delivered, by kind.", labels=["kind"]
        )
        failed = CounterMetricFamily(
            "commsync_messages_failed",
            "Messages that failed permanently, by kind.",
            labels=["kind"],
        )
        for kind in ("broadcast", "system_email"):
            sent.add_metric([kind], counts.sent.get(kind, 0))
            failed.add_metric([kind], counts.failed.get(kind, 0))
        yield sent
        yield failed
        depth = GaugeMetricFamily(
            "commsync_queue_depth",
            "System-email messages queued: due now, or waiting for their time (a delay, a retry).",
            labels=["state"],
        )
        depth.add_metric(["due"], counts.queue.due)
        depth.add_metric(["waiting"], counts.queue.waiting)
        yield depth
        broadcasts = GaugeMetricFamily(
            "commsync_broadcasts_pending",
            "Email broadcasts not yet out: scheduled (waiting for send_at), or being sent.",
            labels=["state"],
        )
        broadcasts.add_metric(["scheduled"], counts.queue.scheduled)
        broadcasts.add_metric(["sending"], counts.queue.sending)
        yield broadcasts
        yield GaugeMetricFamily(
            "commsync_broadcast_recipients_left",
            "Recipients still queued in the email broadcast sends in progress.",
            value=counts.queue.recipients_left,
        )
        if counts.queue.next_due is not None:
            yield GaugeMetricFamily(
                "commsync_queue_next_due_timestamp_seconds",
                "When the first waiting message falls due (Unix time).",
                value=counts.queue.next_due.timestamp(),
            )
        if counts.worker_up is None:
            return
        yield GaugeMetricFamily(
            "commsync_worker_up",
            "1 while this process's delivery worker reaches the store and keeps up.",
            value=1 if counts.worker_up else 0,
        )
        last = counts.worker_last_round
        yield GaugeMetricFamily(
            "commsync_worker_last_round_timestamp_seconds",
            "When this process's delivery worker last completed a round (Unix time).",
            value=last.timestamp() if last else 0,
        )
        yield CounterMetricFamily(
            "commsync_worker_reconnects",
            "Times this process's delivery worker reconnected to the store.",
            value=counts.worker_reconnects,
        )


class FeedTimes(Collector):
    """Feed requests and their latency, counted on the event loop (the only place the feed is
    answered) with plain integers: prometheus_client's locked counter and histogram cost a kept
    feed answer a fifth of its time."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BUCKETS) + 1)  # the last: above every bucket
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.BUCKETS, seconds)] += 1
        self.total += seconds

    def collect(self) -> Iterator[Metric]:
        counts, total = list(self.counts), self.total
        yield CounterMetricFamily(
            "commsync_feed_requests",
            "Notices feed requests served by this process.",
            value=sum(counts),
        )
        latency = HistogramMetricFamily(
            "commsync_feed_request_seconds",
            "Time to build a notices feed response, in this process.",
        )
        cumulative, buckets = 0, []
        for bound, n in zip((*map(str, self.BUCKETS), "+Inf"), counts, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        latency.add_metric([], buckets, total)
        yield latency


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.feed_times = FeedTimes()
        self.registry.register(self.feed_times)
        self.shed = Counter(
            "commsync_requests_shed",
            "Requests this process answered 503 at once because limits.requests_in_flight "
            "were in progress.",
            registry=self.registry,
        )
        self._counts = _Counts()
        self._lock = threading.Lock()
        self.registry.register(self._counts)

    def feed(self, seconds: float) -> None:
        self.feed_times.observe(seconds)

    def render(self, counts: DeliveryCounts) -> tuple[bytes, str]:
        with self._lock:
            self._counts.counts = counts
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
