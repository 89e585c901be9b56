"""Count final messages and describe the exporter itself, in Prometheus' terms.

Message totals live in `MessageTotals`, plain numbers that the ledger saves in the same
transaction as the messageIds they came from; a custom collector turns them into counters
and histograms at scrape time. Cost is summed in `Decimal`, so a thousand 7-second calls at
0.00787679 a second give exactly 55.13753. The mapping from a record's fields to metric
labels is the `count` method, and nowhere else.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.parser import FINAL_GROUPS, VoiceLog

# fmt: off
DURATION_BUCKETS = (
    5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
    1200.0, 1800.0, 3600.0,
)
"""Call lengths in seconds: a 45 s call falls in le="45", long calls are still told apart."""

LATENCY_BUCKETS = (
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0,
    600.0, 1800.0, 3600.0,
)
"""From sent to done: ringing plus talking, so mostly between seconds and minutes."""

PRICE_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0,
)
"""Per-second voice prices, which range from a tenth of a cent to tens of cents."""

POLL_BUCKETS = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)
# fmt: on

POLL_ERROR_REASONS = (
    "unauthorized",
    "forbidden",
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "bad_response",
)

INVALID_REASONS = ("no_message_id", "no_status", "not_an_object", "unparsable", "page_overflow")

MAX_LATENCY = 2 * 86400.0
"""A delivery that took longer than the API keeps logs is a broken timestamp, not a latency."""

# The most common status of each final group, so that every group is exported at 0 from the
# start and an alert on a ratio has a series to divide by.
_FIRST_STATUS = {
    "DELIVERED": "DELIVERED_TO_HANDSET",
    "UNDELIVERABLE": "UNDELIVERABLE_NOT_DELIVERED",
    "EXPIRED": "EXPIRED_EXPIRED",
    "REJECTED": "REJECTED_NETWORK",
}


_ZERO = Decimal(0)


@dataclass
class Buckets:
    """One histogram series: a count per bucket (not cumulative), a sum and a count.

    The sum is a float: exact for whole seconds, and precise enough for a histogram of
    latencies or prices. Only the cost counter needs, and gets, exact decimal sums.
    """

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        rows: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            rows.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return rows


class MessageTotals:
    """Everything counted about final messages since the state began."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[tuple[str, str], int] = {
            (group, status): 0 for group, status in _FIRST_STATUS.items()
        }
        self.errors: dict[tuple[str, str, str], int] = {}
        self.duration: dict[str, Buckets] = {g: Buckets(DURATION_BUCKETS) for g in FINAL_GROUPS}
        self.latency: dict[str, Buckets] = {g: Buckets(LATENCY_BUCKETS) for g in FINAL_GROUPS}
        self.price: dict[str, Buckets] = {}
        self.cost: dict[str, Decimal] = {}
        self.pending_abandoned = 0
        self.gap_seconds = 0.0

    def count(self, records: Iterable[VoiceLog]) -> None:
        """Add final messages: this is where a record's fields become label values."""
        # This runs once per message, so Buckets.observe is written out in place and the
        # tables are looked up once per call: the calls would cost more than the counting.
        series = self._series
        with self.lock:
            # Bound inside the lock: restore() replaces these tables.
            messages, errors, cost = self.messages, self.errors, self.cost
            durations, latencies, prices = self.duration, self.latency, self.price
            for record in records:
                status = record.status
                group = status.group
                key = (group, status.name)
                messages[key] = messages.get(key, 0) + 1

                error = record.error
                if error is not None and error.id != 0 and error.name != "NO_ERROR":
                    permanent = (
                        "unknown" if error.permanent is None else str(error.permanent).lower()
                    )
                    error_key = (error.group, error.name, permanent)
                    errors[error_key] = errors.get(error_key, 0) + 1

                duration = record.duration
                if duration is not None:
                    buckets = durations.get(group) or series(durations, group, DURATION_BUCKETS)
                    buckets.counts[bisect_left(buckets.bounds, duration)] += 1
                    buckets.total += duration
                sent_at = record.sent_at
                done_at = record.done_at
                if sent_at is not None and done_at is not None:
                    latency = done_at - sent_at
                    if 0 <= latency <= MAX_LATENCY:
                        buckets = latencies.get(group) or series(latencies, group, LATENCY_BUCKETS)
                        buckets.counts[bisect_left(buckets.bounds, latency)] += 1
                        buckets.total += latency

                price = record.price
                if price is not None:
                    per_second = price.per_second
                    currency = price.currency
                    buckets = prices.get(currency) or series(prices, currency, PRICE_BUCKETS)
                    buckets.counts[bisect_left(PRICE_BUCKETS, price.as_float)] += 1
                    buckets.total += price.as_float
                    if duration is not None:
                        cost[currency] = cost.get(currency, _ZERO) + per_second * duration

    @staticmethod
    def _series(table: dict[str, Buckets], key: str, bounds: tuple[float, ...]) -> Buckets:
        series = table.get(key)
        if series is None:
            series = table[key] = Buckets(bounds)
        return series

    def add_abandoned(self, count: int) -> None:
        with self.lock:
            self.pending_abandoned += count

    def add_gap(self, seconds: float) -> None:
        with self.lock:
            self.gap_seconds += seconds

    def snapshot(self) -> bytes:
        """All totals as JSON, for the ledger to store beside the messageIds."""
        with self.lock:
            return orjson.dumps(
                {
                    "messages": [[*k, v] for k, v in self.messages.items()],
                    "errors": [[*k, v] for k, v in self.errors.items()],
                    "duration": _dump_table(self.duration),
                    "latency": _dump_table(self.latency),
                    "price": _dump_table(self.price),
                    "cost": {k: str(v) for k, v in self.cost.items()},
                    "pending_abandoned": self.pending_abandoned,
                    "gap_seconds": self.gap_seconds,
                }
            )

    def restore(self, blob: bytes) -> None:
        """Load totals saved by `snapshot`; raises ValueError, changing nothing, when the
        blob is unusable."""
        loaded = MessageTotals()
        try:
            data = orjson.loads(blob)
            for group, status, value in data["messages"]:
                loaded.messages[(group, status)] = int(value)
            for group, name, permanent, value in data["errors"]:
                loaded.errors[(group, name, permanent)] = int(value)
            _load_table(loaded.duration, data["duration"], DURATION_BUCKETS)
            _load_table(loaded.latency, data["latency"], LATENCY_BUCKETS)
            _load_table(loaded.price, data["price"], PRICE_BUCKETS)
            loaded.cost = {k: Decimal(v) for k, v in data["cost"].items()}
            loaded.pending_abandoned = int(data["pending_abandoned"])
            loaded.gap_seconds = float(data["gap_seconds"])
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"saved totals are unusable: {exc!r}") from exc
        with self.lock:
            for name in _SAVED:
                setattr(self, name, getattr(loaded, name))


_SAVED = (
    "messages",
    "errors",
    "duration",
    "latency",
    "price",
    "cost",
    "pending_abandoned",
    "gap_seconds",
)


def _dump_table(table: dict[str, Buckets]) -> dict[str, Any]:
    return {key: [series.counts, series.total] for key, series in table.items()}


def _load_table(table: dict[str, Buckets], data: dict[str, Any], bounds: tuple[float, ...]) -> None:
    for key, (counts, total) in data.items():
        if len(counts) != len(bounds) + 1:
            raise ValueError(f"bucket count changed for {key}")
        table[key] = Buckets(bounds, [int(c) for c in counts], float(total))


class MessageCollector(Collector):
    """Exposes `MessageTotals` as the contract's `infobip_voice_*` families."""

    def __init__(self, totals: MessageTotals) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        t = self._totals
        with t.lock:
            messages = CounterMetricFamily(
                "infobip_voice_messages",
                "Voice messages that reached a final status, each counted once.",
                labels=["status_group", "status"],
            )
            for (group, status), value in sorted(t.messages.items()):
                messages.add_metric([group, status], value)

            errors = CounterMetricFamily(
                "infobip_voice_errors",
                "Final voice messages whose error id is not 0.",
                labels=["error_group", "error", "permanent"],
            )
            for labels, value in sorted(t.errors.items()):
                errors.add_metric(list(labels), value)

            duration = _histogram(
                "infobip_voice_call_duration_seconds",
                "Call duration of final voice messages.",
                "status_group",
                t.duration,
            )
            latency = _histogram(
                "infobip_voice_delivery_latency_seconds",
                "Time from sentAt to doneAt of final voice messages.",
                "status_group",
                t.latency,
            )
            price = _histogram(
                "infobip_voice_price_per_second",
                "Per-second price of each final voice message.",
                "currency",
                t.price,
            )

            cost = CounterMetricFamily(
                "infobip_voice_cost",
                "Sum of duration times price per second of final voice messages.",
                labels=["currency"],
            )
            for currency, amount in sorted(t.cost.items()):
                cost.add_metric([currency], float(amount))

            abandoned = CounterMetricFamily(
                "infobip_voice_pending_abandoned",
                "Messages still pending when they left the API's 48-hour retention.",
                value=t.pending_abandoned,
            )
            gap = CounterMetricFamily(
                "infobip_exporter_unread_window_seconds",
                "Seconds of log time that left the API's retention before they could be read.",
                value=t.gap_seconds,
            )
        yield from (messages, errors, duration, latency, price, cost, abandoned, gap)


def _histogram(name: str, doc: str, label: str, table: dict[str, Buckets]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, series in sorted(table.items()):
        family.add_metric([key], series.cumulative(), series.total)
    return family


class Metrics:
    """The registry behind /metrics: message totals plus the exporter's own health."""

    def __init__(self, totals: MessageTotals | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.totals = totals or MessageTotals()
        self.registry.register(MessageCollector(self.totals))
        ProcessCollector(registry=self.registry)
        r = self.registry

        self.pending = Gauge(
            "infobip_voice_pending_messages",
            "Messages seen pending and not yet final.",
            registry=r,
        )
        self.up = Gauge(
            "infobip_exporter_up",
            "1 when the last poll of the logs API succeeded, else 0.",
            registry=r,
        )
        self.last_success = Gauge(
            "infobip_exporter_last_success_timestamp_seconds",
            "Unix time at the end of the last successful poll.",
            registry=r,
        )
        self.poll_duration = Histogram(
            "infobip_exporter_poll_duration_seconds",
            "Wall time of each poll.",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.api_requests = Counter(
            "infobip_exporter_api_requests",
            "Calls to the logs API by HTTP status or failure.",
            ["code"],
            registry=r,
        )
        self.poll_errors = Counter(
            "infobip_exporter_poll_errors",
            "Failed polls by reason.",
            ["reason"],
            registry=r,
        )
        self.invalid_records = Counter(
            "infobip_exporter_invalid_records",
            "Records skipped as unusable, by reason.",
            ["reason"],
            registry=r,
        )
        self.tracked = Gauge(
            "infobip_exporter_tracked_messages",
            "messageIds held in the ledger.",
            registry=r,
        )
        self.build_info = Gauge(
            "infobip_exporter_build_info",
            "Build information; always 1.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)
        for reason in POLL_ERROR_REASONS:
            self.poll_errors.labels(reason=reason)
        for reason in INVALID_REASONS:
            self.invalid_records.labels(reason=reason)

    def api_request(self, code: str) -> None:
        self.api_requests.labels(code=code).inc()
