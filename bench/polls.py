"""The real Poller against the simulator over HTTP on loopback: requests per poll, and the
time to catch up after an outage."""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.client import Credentials, LogsClient, RateLimiter
from exporter.ledger import Ledger
from exporter.metrics import Metrics
from exporter.poller import Poller, PollSettings
from exporter.simulator import Simulator

API_KEY = "bench-key"
PAGE_SIZE = 1000


def _poller(url: str, clock: Callable[[], float] | None = None) -> Poller:
    metrics = Metrics()
    client = LogsClient(url, Credentials(api_key=API_KEY), 30.0, metrics.api_request)
    settings = PollSettings(page_size=PAGE_SIZE)
    extra = {"clock": clock} if clock is not None else {}
    return Poller(client, Ledger(), metrics, settings, RateLimiter(120), **extra)


@dataclass
class BurstResult:
    burst: int
    requests: int
    counted: int

    @property
    def minimum(self) -> int:
        return math.ceil(self.burst / PAGE_SIZE)


def requests_for_burst(burst: int, seed: int = 11) -> BurstResult:
    """Requests the poll after a burst of `burst` new final records makes."""
    simulator = Simulator(rate=0, api_key=API_KEY, seed=seed)
    simulator.start()
    poller = _poller(simulator.url)
    try:
        if not poller.poll_once():
            raise RuntimeError("the first poll failed")
        simulator.add_burst(burst)
        before = len(simulator.requests)
        if not poller.poll_once():
            raise RuntimeError("the poll after the burst failed")
        requests = len(simulator.requests) - before
        counted = sum(poller.metrics.totals.messages.values())
    finally:
        poller.client.close()
        simulator.stop()
    return BurstResult(burst, requests, counted)


@dataclass
class CatchUp:
    wall: float
    poller_cpu: float
    process_cpu: float
    requests: int
    before: int
    counted: int


def catch_up(outage: float = 3600.0, rate: float = 10.0, backfill: float = 600.0) -> CatchUp:
    """Poll, let `outage` seconds of traffic at `rate` a second pass unread, poll again.

    The clock is the simulator's and the poller's own, so the hour passes at once. Before the
    timed poll the simulator generates the hour's messages and lets every pending one turn
    final (`pause`), so the poll reads what the API would hold and the count is exact: what
    was there at the first poll plus `outage * rate`.
    """
    now = [time.time()]
    simulator = Simulator(
        rate=rate, api_key=API_KEY, seed=5, backfill=backfill, clock=lambda: now[0]
    )
    simulator.start()
    poller = _poller(simulator.url, clock=lambda: now[0])
    try:
        truth = simulator.truth()
        before = truth["total"] + truth["pending"]
        if not poller.poll_once():
            raise RuntimeError("the first poll failed")
        now[0] += outage
        simulator.pause()
        requests_before = len(simulator.requests)

        wall, thread_cpu = time.perf_counter(), time.thread_time()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        ok = poller.poll_once()
        after = resource.getrusage(resource.RUSAGE_SELF)
        thread_cpu = time.thread_time() - thread_cpu
        wall = time.perf_counter() - wall
        if not ok:
            raise RuntimeError("the catch-up poll failed")
        process_cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
        counted = sum(poller.metrics.totals.messages.values())
        requests = len(simulator.requests) - requests_before
    finally:
        poller.client.close()
        simulator.stop()
    return CatchUp(wall, thread_cpu, process_cpu, requests, before, counted)
