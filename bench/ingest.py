"""Ingest throughput: raw answer bytes to updated metrics, beside a bare `json.loads`.

Each page goes through what a poll does with it: `parse_page`, `Ledger.admit`,
`MessageTotals.count`, then `Ledger.advance` to the horizon the poller would set (the poll's
start less the default two-minute overlap). `json.loads` of the same page is timed right next
to it, alternating which goes first, so both see the same machine at the same moment.
Times are CPU seconds of this one-threaded process, so other load on the machine counts less.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from exporter.ledger import Ledger
from exporter.metrics import MessageTotals
from exporter.parser import parse_page

OVERLAP = 120.0
"""The poller's default overlap: each horizon is the poll's start less this."""


@dataclass
class IngestResult:
    records: int
    ingest_cpu: float
    ingest_wall: float
    json_cpu: float
    counted: int

    @property
    def rate(self) -> float:
        return self.records / self.ingest_cpu

    @property
    def json_rate(self) -> float:
        return self.records / self.json_cpu

    @property
    def ratio(self) -> float:
        return self.ingest_cpu / self.json_cpu


def measure(pages: list[tuple[bytes, float]]) -> IngestResult:
    """Run every page through the exporter's ingest path and through json.loads."""
    ledger = Ledger()
    totals = MessageTotals()
    clock = time.process_time
    wall = time.perf_counter
    ingest_cpu = ingest_wall = json_cpu = 0.0
    records = 0

    for number, (body, now) in enumerate(pages):
        if number % 2:
            json_cpu += _json_time(body)
        started, started_wall = clock(), wall()
        page = parse_page(body)
        fresh = ledger.admit(page.records, now)
        totals.count(fresh)
        ledger.advance(now - OVERLAP, now)
        ingest_cpu += clock() - started
        ingest_wall += wall() - started_wall
        if not number % 2:
            json_cpu += _json_time(body)
        records += page.size

    counted = sum(totals.messages.values())
    return IngestResult(records, ingest_cpu, ingest_wall, json_cpu, counted)


def _json_time(body: bytes) -> float:
    started = time.process_time()
    json.loads(body)
    return time.process_time() - started
