"""The poll loop: read every record the last poll may have missed, then count it once.

Each poll reads a *window* from the ledger's horizon (the previous poll's start less the
overlap) up to now. The API answers the newest `limit` records and has no cursor, so a full
page is followed by another whose `sentUntil` is the oldest `sentAt` already read, until a
page is not full or the window's start is reached; records are merged by messageId. Pending
messages older than the window are looked up by messageId, so they are seen turning final.

A poll that fails part-way keeps what it read and what is left to read; the next poll reads
the newest records again and then finishes the old plan, so no page is lost or counted twice.
A failed poll changes no message metric.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from exporter.client import ApiError, LogsClient, RateLimiter
from exporter.ledger import RETENTION, Ledger
from exporter.metrics import Metrics
from exporter.parser import BadResponseError, VoiceLog, format_timestamp, parse_page

log = logging.getLogger(__name__)

TICK = 0.001
"""The API's timestamps have millisecond resolution."""

LOOKUP_BATCH = 50
"""messageIds per lookup request: keeps the URL well under common 8 KB limits."""

FRUITLESS_PAGES = 3
"""Full pages in a row that bring no new messageId and reach no further back in time, after
which paging gives up: a tie takes one such page to detect and one more to step past."""

STATUS_FILTERS = ("DELIVERED", "UNDELIVERABLE", "EXPIRED", "REJECTED", "PENDING", "ACCEPTED")

FILTER_PARAMS = {
    "from": "from",
    "to": "to",
    "general_status": "generalStatus",
    "mcc": "mcc",
    "mnc": "mnc",
}


class Stopped(Exception):  # noqa: N818 (a signal to unwind, not an error)
    """The exporter is shutting down; the poll in progress is abandoned."""


@dataclass(frozen=True)
class PollSettings:
    interval: float = 60.0
    page_size: int = 1000
    initial_lookback: float = 3600.0
    overlap: float = 120.0
    filters: dict[str, str] = field(default_factory=dict)
    rate_retries: int = 6
    max_retry_wait: float = 60.0
    max_backoff: float = 600.0


@dataclass
class Window:
    """Records sent from `since` to `until` (None: up to the newest), read newest first."""

    since: float
    until: float | None = None


@dataclass
class Lookup:
    message_ids: list[str]


@dataclass
class Plan:
    """What one poll still has to read, and what it has read so far."""

    started: float
    steps: list[Window | Lookup]
    records: dict[str, VoiceLog] = field(default_factory=dict)
    requests: int = 0
    unread: float = 0.0


class Poller:
    """Polls one account's logs endpoint into a ledger and a set of metrics."""

    def __init__(
        self,
        client: LogsClient,
        ledger: Ledger,
        metrics: Metrics,
        settings: PollSettings,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.metrics = metrics
        self.settings = settings
        self.limiter = limiter or RateLimiter(120)
        self.clock = clock
        self.stop = threading.Event()
        self.failures = 0
        self.last_reason: str | None = ""
        self._plan: Plan | None = None
        self._next: tuple[LogsClient, PollSettings] | None = None
        self._warned: set[str] = set()
        self._sync_gauges()

    def reconfigure(self, client: LogsClient, settings: PollSettings) -> None:
        """Use a new client and settings from the next poll on."""
        self._next = (client, settings)

    def run(self) -> None:
        """Poll until `stop` is set: at once, then every interval, backing off on failure."""
        log.info(
            "polling interval=%.0fs page_size=%d", self.settings.interval, self.settings.page_size
        )
        while not self.stop.is_set():
            try:
                self.poll_once()
            except Stopped:
                break
            if self.stop.wait(self.next_delay()):
                break
        log.info("polling stopped")

    def next_delay(self) -> float:
        """The normal interval, or an exponential backoff with jitter after failures."""
        interval = self.settings.interval
        if self.failures == 0 or self.last_reason in ("unauthorized", "forbidden"):
            return interval
        backoff = min(interval * 2 ** (self.failures - 1), max(interval, self.settings.max_backoff))
        return float(backoff * random.uniform(0.9, 1.1))

    def poll_once(self) -> bool:
        """One poll; True when it read everything it had to and counted it."""
        if self._next is not None:
            old = self.client
            self.client, self.settings = self._next
            self._next = None
            old.close()
        began = time.monotonic()
        try:
            plan = self._plan = self._make_plan()
            self._execute(plan)
        except ApiError as exc:
            self._failed(exc)
            return False
        except Stopped:
            raise
        except Exception as exc:
            # A defect must cost one poll, not the poll loop: log it whole, count it, and
            # start the next poll from a clean plan.
            log.exception("poll failed on an unexpected error")
            self._plan = None
            self._failed(ApiError("bad_response", f"unexpected {type(exc).__name__}"))
            return False
        finally:
            self.metrics.poll_duration.observe(time.monotonic() - began)

        self._commit(plan)
        self._plan = None
        self._succeeded(plan)
        return True

    def _make_plan(self) -> Plan:
        now = self.clock()
        settings = self.settings
        horizon = self.ledger.horizon
        since = horizon if horizon is not None else now - settings.initial_lookback
        oldest_readable = now - RETENTION + settings.interval
        unread = 0.0
        if since < oldest_readable:
            if horizon is not None:
                unread = oldest_readable - since
            since = oldest_readable

        steps: list[Window | Lookup] = [Window(since)]
        pending = self.ledger.pending_before(since)
        batch = min(LOOKUP_BATCH, settings.page_size)
        steps += [Lookup(pending[i : i + batch]) for i in range(0, len(pending), batch)]

        previous = self._plan
        if previous is None:
            return Plan(now, steps, unread=unread)
        # Resume: read what is new since the interrupted poll began, then finish its steps.
        # A window it never started reaches up to the newest record too, so it folds into
        # the fresh one: a long run of failed polls leaves one window, not one per poll.
        fresh = Window(max(previous.started - settings.overlap, since))
        kept: list[Window | Lookup] = []
        for step in previous.steps:
            if isinstance(step, Window):
                step.since = max(step.since, oldest_readable)
                if step.until is None:
                    fresh.since = min(fresh.since, step.since)
                else:
                    kept.append(step)
        return Plan(now, [fresh, *kept, *steps[1:]], previous.records, unread=unread)

    def _execute(self, plan: Plan) -> None:
        while plan.steps:
            step = plan.steps[0]
            if isinstance(step, Lookup):
                self._lookup(plan, step)
            else:
                self._read_window(plan, step)
            plan.steps.pop(0)

    def _read_window(self, plan: Plan, window: Window) -> None:
        limit = self.settings.page_size
        tie_at: float | None = None
        previous_oldest = float("inf")
        fruitless = 0
        while True:
            params = self._params(window.since, window.until, limit)
            records, size = self._fetch(plan, params)
            added = self._merge(plan, records)
            if size < limit:
                return
            oldest = min((r.sent_at for r in records if r.sent_at is not None), default=None)
            if oldest is None or oldest <= window.since:
                return
            stalled = not added and oldest >= previous_oldest
            fruitless = fruitless + 1 if stalled else 0
            previous_oldest = min(previous_oldest, oldest)
            if fruitless >= FRUITLESS_PAGES:
                # Even a tie read two ways brings nothing new: the API is not honouring
                # sentUntil.
                self._give_up_paging(limit)
                return
            if window.until is None or oldest + TICK < window.until - TICK / 2:
                # One tick past the oldest: whether the API's bound is inclusive or not, every
                # record of that millisecond comes back, and merging drops the repeats.
                window.until = oldest + TICK
            elif max(r.sent_at or oldest for r in records) - oldest > TICK * 1.5:
                # Not one millisecond, yet the page did not move back in time: the API is
                # not honouring sentUntil. Stop rather than spend the rate limit on repeats.
                self._give_up_paging(limit)
                return
            elif tie_at != oldest:
                # The page holds nothing but one millisecond, which no sentUntil can page
                # through: read it by status group, then step past it.
                self._read_tie(plan, oldest)
                tie_at = oldest
                window.until = oldest
            else:
                # The bound turned out to be inclusive: step one tick further.
                window.until = oldest - TICK

    def _give_up_paging(self, limit: int) -> None:
        log.warning(
            "the API answers the same records whatever sentUntil says; paging stopped page_size=%d",
            limit,
        )
        self.metrics.invalid_records.labels(reason="page_overflow").inc()

    def _read_tie(self, plan: Plan, moment: float) -> None:
        limit = self.settings.page_size
        overflow = "general_status" in self.settings.filters
        if not overflow:
            for status in STATUS_FILTERS:
                params = self._params(moment, moment + TICK, limit)
                params["generalStatus"] = status
                records, size = self._fetch(plan, params)
                self._merge(plan, records)
                overflow = overflow or size >= limit
        if overflow:
            log.warning(
                "more records in one millisecond than a page holds; some may be "
                "missed sent_at=%s page_size=%d",
                format_timestamp(moment),
                limit,
            )
            self.metrics.invalid_records.labels(reason="page_overflow").inc()

    def _lookup(self, plan: Plan, step: Lookup) -> None:
        params: dict[str, str | list[str]] = {
            "messageId": step.message_ids,
            "limit": str(max(len(step.message_ids), 1)),
        }
        records, _ = self._fetch(plan, params)
        self._merge(plan, records)

    def _params(self, since: float, until: float | None, limit: int) -> dict[str, str | list[str]]:
        params: dict[str, str | list[str]] = {
            FILTER_PARAMS[key]: value for key, value in self.settings.filters.items()
        }
        params["sentSince"] = format_timestamp(since)
        if until is not None:
            params["sentUntil"] = format_timestamp(until)
        params["limit"] = str(limit)
        return params

    def _fetch(self, plan: Plan, params: dict[str, str | list[str]]) -> tuple[list[VoiceLog], int]:
        """One page, waiting out the rate limit; raises ApiError when it cannot be had."""
        attempt = 0
        while True:
            self._wait(self.limiter.wait_time())
            self.limiter.record()
            plan.requests += 1
            try:
                body = self.client.fetch(params)
            except ApiError as exc:
                if exc.reason != "rate_limited" or attempt >= self.settings.rate_retries:
                    raise
                delay = self._retry_delay(exc.retry_after, attempt)
                level = logging.INFO if attempt == 0 else logging.DEBUG
                log.log(
                    level,
                    "throttled by the API, waiting seconds=%.1f attempt=%d",
                    delay,
                    attempt + 1,
                )
                self._wait(delay)
                attempt += 1
                continue
            try:
                page = parse_page(body)
            except BadResponseError as exc:
                raise ApiError("bad_response", str(exc)) from exc
            for reason, count in page.invalid.items():
                # Each poll returns the same bad record again: say so once, then quietly.
                self.metrics.invalid_records.labels(reason=reason).inc(count)
                level = logging.DEBUG if reason in self._warned else logging.WARNING
                self._warned.add(reason)
                log.log(level, "skipped unusable records reason=%s count=%d", reason, count)
            return page.records, page.size

    def _retry_delay(self, retry_after: float | None, attempt: int) -> float:
        cap = self.settings.max_retry_wait
        if retry_after is not None:
            return min(retry_after, cap)
        return min(2.0**attempt, cap) * random.uniform(0.5, 1.0)

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self.stop.wait(seconds):
            raise Stopped

    @staticmethod
    def _merge(plan: Plan, records: Iterable[VoiceLog]) -> int:
        """Add records by messageId, a final status beating a pending one; return how many
        messageIds were new to the plan."""
        seen = plan.records
        before = len(seen)
        for record in records:
            known = seen.get(record.message_id)
            if known is None or (record.status.final and not known.status.final):
                seen[record.message_id] = record
        return len(seen) - before

    def _commit(self, plan: Plan) -> None:
        now = self.clock()
        totals = self.metrics.totals
        fresh = self.ledger.admit(plan.records.values(), now)
        totals.count(fresh)
        lost = self.ledger.advance(plan.started - self.settings.overlap, now)
        if plan.unread:
            totals.add_gap(plan.unread)
            log.error(
                "records left the API's retention before they could be read seconds=%.0f",
                plan.unread,
            )
        if lost:
            totals.add_abandoned(lost)
            log.warning(
                "pending messages left the API's retention before turning final count=%d", lost
            )
        try:
            self.ledger.commit(totals.snapshot())
        except Exception:
            log.exception(
                "could not save state; counts since the last save may repeat after a restart"
            )
        log.debug(
            "poll ok requests=%d records=%d new_final=%d pending=%d tracked=%d",
            plan.requests,
            len(plan.records),
            len(fresh),
            len(self.ledger.pending),
            len(self.ledger),
        )

    def _succeeded(self, plan: Plan) -> None:
        if self.last_reason:
            log.info("polling recovered after_failures=%d", self.failures)
        self.failures = 0
        self.last_reason = None
        self.metrics.up.set(1)
        self.metrics.last_success.set(time.time())
        self._sync_gauges()

    def _failed(self, exc: ApiError) -> None:
        # The backoff counts a run of one reason: a long credential outage followed by one
        # 5xx must not wait as long as a long run of 5xx.
        self.failures = self.failures + 1 if exc.reason == self.last_reason else 1
        self.metrics.up.set(0)
        self.metrics.poll_errors.labels(reason=exc.reason).inc()
        if exc.reason != self.last_reason:
            log.error("poll failed reason=%s detail=%r", exc.reason, exc.detail)
        else:
            log.debug("poll failed again reason=%s failures=%d", exc.reason, self.failures)
        self.last_reason = exc.reason

    def _sync_gauges(self) -> None:
        self.metrics.pending.set(len(self.ledger.pending))
        self.metrics.tracked.set(len(self.ledger))
