"""Prometheus metrics: what each process counts, and what `/metrics` reads from shared state.

Counters and histograms are per process. With `PROMETHEUS_MULTIPROC_DIR` set (a directory the
host's API and worker processes share, emptied before they start), prometheus-client keeps
them in files there and any one process's `/metrics` adds them all up; without it, a process
reports its own (the embedded default runs the worker inside the API, so that is everything).
What is true of the whole service at once — unfinished work, queue depth, the oldest pending
batch — is read from the database and Redis at scrape time instead, so it is right however
many processes there are. No label carries a company id: metrics are the operator's view.
"""

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from infra.settings import Settings

CONTENT_TYPE = CONTENT_TYPE_LATEST

BATCHES = Counter("sync2books_batches", "Batches reaching each status.", ["record_type", "status"])
ITEMS = Counter("sync2books_items", "Items reaching each status.", ["record_type", "status"])
ATTACHMENTS = Counter(
    "sync2books_attachments", "Attachments reaching each status.", ["record_type", "status"]
)
ITEM_FAILURES = Counter(
    "sync2books_item_failures", "Items that FAILED, by error code.", ["provider", "code"]
)
PUSH_SECONDS = Histogram(
    "sync2books_push_duration_seconds",
    "One push to a ledger (a call, however many records it carries), to its answer.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PUSH_ATTEMPTS = Histogram(
    "sync2books_push_attempts",
    "Pushes an item took in one sync, to SUCCESS or FAILED.",
    ["provider"],
    buckets=(1, 2, 3, 4, 5, 8, 13),
)
RATE_LIMIT_WAITS = Counter(
    "sync2books_rate_limit_waits",
    "Calls that waited for a ledger's limit, by the limit that held them back: the "
    "connection's rate, its daily calls, or the app's rate across every connection.",
    ["provider", "limit"],
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "sync2books_rate_limit_wait_seconds",
    "How long a push waited for the ledger's rate and concurrency limits.",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LIVE_SUBSCRIPTIONS = Gauge(
    "sync2books_live_subscriptions",
    "Subscriptions following a company's events now.",
    multiprocess_mode="livesum",
)
ALERT_SUBSCRIPTIONS = Gauge(
    "sync2books_alert_subscriptions",
    "Subscriptions following a company's alerts now.",
    multiprocess_mode="livesum",
)


@dataclass(frozen=True)
class ServiceState:
    """The service as a whole, at one moment."""

    unfinished: Sequence[tuple[str, str, int, int, int]]  # status, type, batches, pending, proc.
    queue_depth: int
    oldest_pending: datetime | None


class _StateCollector(Collector):
    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["status", "record_type"]
        batches = GaugeMetricFamily(
            "sync2books_unfinished_batches", "Batches PENDING or PROCESSING now.", labels=labels
        )
        items = GaugeMetricFamily(
            "sync2books_unfinished_items",
            "Items PENDING or PROCESSING now.",
            labels=labels,
        )
        counts: dict[tuple[str, str], int] = {}
        for status, record_type, count, pending, processing in self.state.unfinished:
            batches.add_metric([status, record_type], count)
            for item_status, n in (("PENDING", pending), ("PROCESSING", processing)):
                key = (item_status, record_type)
                counts[key] = counts.get(key, 0) + n
        for (status, record_type), n in counts.items():
            items.add_metric([status, record_type], n)
        yield batches
        yield items
        yield GaugeMetricFamily(
            "sync2books_queue_depth",
            "Jobs queued and not yet started (deferred ones too).",
            self.state.queue_depth,
        )
        oldest = self.state.oldest_pending
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        yield GaugeMetricFamily(
            "sync2books_oldest_pending_seconds",
            "Age of the oldest batch with items still PENDING (0 when none).",
            age,
        )


def process_registry(settings: Settings) -> CollectorRegistry:
    """Every process's counters when they share a directory, else this process's own."""
    if settings.prometheus_multiproc_dir is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.prometheus_multiproc_dir))  # type: ignore[no-untyped-call]
    return registry


def process_exited(settings: Settings) -> None:
    """Drop this process's live gauges from the shared directory (its counters stay: they
    still count what happened)."""
    if settings.prometheus_multiproc_dir is not None:
        mark_process_dead(os.getpid(), path=str(settings.prometheus_multiproc_dir))  # type: ignore[no-untyped-call]


def exposition(settings: Settings, state: ServiceState | None) -> bytes:
    """The text `/metrics` answers: the processes' figures, then the service's state (left
    out when the database or Redis did not answer: the rest is still worth scraping)."""
    text = generate_latest(process_registry(settings))
    if state is None:
        return text
    shared = CollectorRegistry(auto_describe=False)
    shared.register(_StateCollector(state))
    return text + generate_latest(shared)
