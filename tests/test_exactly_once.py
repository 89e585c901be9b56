"""Exactly once under stress: every scenario ends with totals equal to the ground truth.

Each test runs the real poller against the simulator over HTTP on loopback, scripts a
fault, and compares what was counted with what the simulator knows it served.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import orjson
import pytest

from exporter.client import Credentials, LogsClient
from exporter.ledger import RETENTION, SqliteLedger, open_ledger
from exporter.metrics import MessageTotals, Metrics
from exporter.simulator import OUTCOMES, Fault, Simulator
from tests.conftest import API_KEY, PollerFactory
from tests.fakeapi import Answer, FakeApi
from tests.truth import counted, expected


def test_a_burst_of_5000_is_read_in_at_most_six_requests(
    simulator: Simulator, make_poller: PollerFactory
) -> None:
    """Pages of 1000 walk back through the burst: ceil(5000 / 1000) + 1 requests."""
    poller = make_poller(simulator.url, page_size=1000)
    poller.poll_once()
    simulator.add_burst(5000)
    before = len(simulator.requests)

    assert poller.poll_once() is True

    assert len(simulator.requests) - before <= math.ceil(5000 / 1000) + 1
    assert counted(poller.metrics.totals) == expected(simulator.truth())
    assert poller.metrics.totals.messages  # the burst is there
    assert expected(simulator.truth())["total"] == 5000


@pytest.mark.parametrize("count", [999, 1000, 1001, 2500])
def test_bursts_around_the_page_size_are_counted_exactly(
    simulator: Simulator, make_poller: PollerFactory, count: int
) -> None:
    """The edges: one short of a page, a full page, one more, and several pages."""
    poller = make_poller(simulator.url, page_size=1000)
    simulator.add_burst(count)

    poller.poll_once()

    assert counted(poller.metrics.totals)["total"] == count
    assert counted(poller.metrics.totals) == expected(simulator.truth())
    assert len(simulator.requests) <= math.ceil(count / 1000) + 1


@pytest.mark.parametrize("tie", [1, 300, 999])
def test_records_sharing_one_timestamp_across_a_page_boundary_neither_loop_nor_skip(
    simulator: Simulator, make_poller: PollerFactory, tie: int
) -> None:
    """A group of records with one sentAt straddles the first page's end."""
    poller = make_poller(simulator.url, page_size=1000)
    simulator.add_burst(500, age=2.0)
    simulator.add_burst(tie, same_timestamp=True, age=1.0)
    simulator.add_burst(900 - tie // 2)

    assert poller.poll_once() is True

    assert counted(poller.metrics.totals) == expected(simulator.truth())
    assert len(simulator.requests) <= 4


def test_a_millisecond_holding_more_than_a_page_is_read_by_status_group(
    simulator: Simulator, make_poller: PollerFactory
) -> None:
    """1200 records in one millisecond with pages of 1000: split by generalStatus, each
    part fits a page, so nothing is lost and the paging goes on past them."""
    poller = make_poller(simulator.url, page_size=1000)
    simulator.add_burst(300, age=3.0)
    simulator.add_burst(1200, same_timestamp=True, age=2.0)

    assert poller.poll_once() is True

    assert counted(poller.metrics.totals) == expected(simulator.truth())
    assert counted(poller.metrics.totals)["total"] == 1500
    overflow = poller.metrics.registry.get_sample_value(
        "infobip_exporter_invalid_records_total", {"reason": "page_overflow"}
    )
    assert overflow == 0


def test_a_millisecond_too_full_to_split_is_reported_and_does_not_loop(
    make_poller: PollerFactory,
) -> None:
    """2500 DELIVERED records in one millisecond cannot be read through pages of 1000: the
    poll finishes, counts what it could, and says so in a metric."""
    sim = Simulator(rate=0, api_key=API_KEY, seed=1)
    sim.start()
    try:
        poller = make_poller(sim.url, page_size=1000)
        sim.add_burst(100, age=3.0)
        sim.add_burst(2500, same_timestamp=True, age=2.0)
        for message in sim.messages[-2500:]:
            message.outcome = sim.messages[0].outcome = OUTCOMES[0]

        assert poller.poll_once() is True

        total = counted(poller.metrics.totals)["total"]
        assert total == 1100
        assert len(sim.requests) <= 12
        assert (
            poller.metrics.registry.get_sample_value(
                "infobip_exporter_invalid_records_total", {"reason": "page_overflow"}
            )
            == 1
        )
    finally:
        sim.stop()


def test_a_message_pending_across_polls_counts_once_when_final(
    make_poller: PollerFactory,
) -> None:
    """Calls stay PENDING for a while; they are counted when they turn final."""
    sim = Simulator(rate=20, api_key=API_KEY, seed=3, pending_seconds=(30.0, 60.0), backfill=120.0)
    sim.start()
    try:
        poller = make_poller(sim.url)
        poller.poll_once()
        pending_first = len(poller.ledger.pending)
        sim.pause()
        poller.poll_once()

        assert pending_first > 0
        assert len(poller.ledger.pending) == 0
        assert counted(poller.metrics.totals) == expected(sim.truth())
        assert poller.metrics.pending._value.get() == 0
    finally:
        sim.stop()


def test_pending_messages_older_than_the_window_are_looked_up_by_id(
    make_poller: PollerFactory,
) -> None:
    """A call pending for longer than the overlap is still seen turning final."""
    now = [1_900_000_000.0]
    sim = Simulator(
        rate=0, api_key=API_KEY, seed=5, pending_seconds=(600.0, 600.0), clock=lambda: now[0]
    )
    sim.start()
    try:
        poller = make_poller(sim.url, clock=lambda: now[0], overlap=60.0)
        sim.add_burst(3)
        for message in sim.messages:
            message.final_at = now[0] + 600
        poller.poll_once()
        now[0] += 300
        poller.poll_once()
        now[0] += 400
        before = len(sim.requests)
        poller.poll_once()

        lookups = [q for q in sim.requests[before:] if "messageId" in q]
        assert len(lookups) == 1
        assert sorted(lookups[0]["messageId"]) == sorted(m.message_id for m in sim.messages)
        assert counted(poller.metrics.totals) == expected(sim.truth())
        assert counted(poller.metrics.totals)["total"] == 3
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("fault", "throttled"),
    [
        (Fault("status", count=3, status=429, retry_after="1"), 3),
        (Fault("status", count=2, status=429), 2),
    ],
    ids=["with-retry-after", "without-retry-after"],
)
def test_a_burst_of_429s_is_waited_out_inside_the_poll(
    simulator: Simulator, make_poller: PollerFactory, fault: Fault, throttled: int
) -> None:
    """Throttled calls are retried after Retry-After or a jittered backoff; nothing is lost."""
    poller = make_poller(simulator.url)
    simulator.add_burst(1500)
    simulator.inject(fault)

    assert poller.poll_once() is True

    assert counted(poller.metrics.totals) == expected(simulator.truth())
    codes = poller.metrics.registry.get_sample_value
    assert codes("infobip_exporter_api_requests_total", {"code": "429"}) == throttled


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("status", status=500), "server_error"),
        (Fault("status", status=503), "server_error"),
        (Fault("html"), "bad_response"),
        (Fault("truncated"), "bad_response"),
        (Fault("slow", delay=1.5), "timeout"),
        (Fault("status", count=20, status=429), "rate_limited"),
    ],
    ids=["500", "503", "html", "truncated", "slow", "endless-429"],
)
def test_a_failed_poll_moves_no_message_metric_and_the_next_catches_up(
    simulator: Simulator, make_poller: PollerFactory, fault: Fault, reason: str
) -> None:
    """The poll fails cleanly with its reason counted; the next one counts everything."""
    poller = make_poller(simulator.url, timeout=0.5, rate_retries=2, max_retry_wait=0.2)
    simulator.add_burst(300)
    poller.poll_once()
    before = counted(poller.metrics.totals)
    simulator.add_burst(400)
    simulator.inject(fault)

    failed = poller.poll_once()
    during = counted(poller.metrics.totals)
    simulator.faults.clear()
    recovered = poller.poll_once()

    assert (failed, recovered) == (False, True)
    assert during == before
    assert (
        poller.metrics.registry.get_sample_value(
            "infobip_exporter_poll_errors_total", {"reason": reason}
        )
        == 1
    )
    assert counted(poller.metrics.totals) == expected(simulator.truth())
    assert counted(poller.metrics.totals)["total"] == 700


def test_a_poll_interrupted_after_some_pages_resumes_without_rereading_them(
    simulator: Simulator, make_poller: PollerFactory
) -> None:
    """Two pages read, the third fails: the next poll reads only what is left and new."""
    poller = make_poller(simulator.url, page_size=1000)
    simulator.add_burst(4500, age=600)
    simulator.inject(Fault("status", status=502, skip=2))

    first = poller.poll_once()
    up = poller.metrics.up._value.get()
    after_first = len(simulator.requests)
    second = poller.poll_once()

    assert (first, up, second) == (False, 0, True)
    assert after_first == 3
    assert len(simulator.requests) - after_first == 4
    assert counted(poller.metrics.totals) == expected(simulator.truth())
    assert counted(poller.metrics.totals)["total"] == 4500


def test_records_that_appear_late_within_the_overlap_are_counted(
    simulator: Simulator, make_poller: PollerFactory
) -> None:
    """A record sent 90 s ago that only now shows up is inside a 120 s overlap."""
    poller = make_poller(simulator.url, overlap=120.0)
    simulator.add_burst(50)
    poller.poll_once()
    simulator.add_late(25, age=90)

    poller.poll_once()

    assert counted(poller.metrics.totals) == expected(simulator.truth())
    assert counted(poller.metrics.totals)["total"] == 75


def test_an_outage_of_hours_is_caught_up_exactly(make_poller: PollerFactory) -> None:
    """Ten hours of 5xx at 1 message a minute; afterwards the totals equal the truth."""
    now = [1_900_000_000.0]
    sim = Simulator(rate=1 / 60, api_key=API_KEY, seed=11, clock=lambda: now[0])
    sim.start()
    try:
        poller = make_poller(sim.url, clock=lambda: now[0])
        poller.poll_once()
        for _ in range(10):
            now[0] += 3600
            sim.inject(Fault("status", status=503))
            assert poller.poll_once() is False
        sim.pause()
        now[0] += 60

        assert poller.poll_once() is True
        assert counted(poller.metrics.totals) == expected(sim.truth())
        assert counted(poller.metrics.totals)["total"] == 600
        assert poller.metrics.totals.gap_seconds == 0
    finally:
        sim.stop()


def test_an_outage_longer_than_the_retention_is_reported_not_hidden(
    make_poller: PollerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """After 50 hours away, the 2 hours that left the API are counted as unread seconds,
    and the calls pending at the start are counted as abandoned."""
    now = [1_900_000_000.0]
    sim = Simulator(
        rate=0, api_key=API_KEY, seed=13, clock=lambda: now[0], pending_seconds=(10**6, 10**6)
    )
    sim.start()
    try:
        poller = make_poller(sim.url, clock=lambda: now[0], overlap=60.0, interval=60.0)
        sim.add_burst(4)
        for message in sim.messages:
            message.final_at = now[0] + 10**6
        poller.poll_once()
        now[0] += 50 * 3600

        with caplog.at_level(logging.WARNING):
            poller.poll_once()

        # From the horizon (first poll less the overlap) to the oldest readable moment
        # (48 hours ago, plus one interval of margin).
        assert poller.metrics.totals.gap_seconds == 50 * 3600 - RETENTION + 60 + 60
        assert poller.metrics.totals.pending_abandoned == 4
        assert any("left the API's retention" in r.getMessage() for r in caplog.records)
    finally:
        sim.stop()


def test_rejected_credentials_log_one_error_and_recover_from_a_new_key_file(
    simulator: Simulator,
    make_poller: PollerFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """401 sets up to 0 and logs once, quoting the API and never the key; a new key in the
    file is used at the next poll."""
    key_file = tmp_path / "key"
    key_file.write_text("wrong-key-77\n")
    poller = make_poller(simulator.url, credentials=Credentials(api_key_file=key_file))
    simulator.add_burst(10)

    with caplog.at_level(logging.DEBUG, logger="exporter"):
        results = [poller.poll_once() for _ in range(3)]
        up_while_rejected = poller.metrics.up._value.get()
        key_file.write_text(API_KEY)
        os.utime(key_file, (1, 2))
        results.append(poller.poll_once())

    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert results == [False, False, False, True]
    assert up_while_rejected == 0
    assert errors == [
        "poll failed reason=unauthorized detail='HTTP 401: UNAUTHORIZED: Invalid login details'"
    ]
    assert "wrong-key-77" not in caplog.text
    assert API_KEY not in caplog.text
    assert poller.next_delay() == 1.0
    assert counted(poller.metrics.totals) == expected(simulator.truth())


def test_a_restart_with_a_state_file_neither_double_counts_nor_resets(
    simulator: Simulator, make_poller: PollerFactory, tmp_path: Path
) -> None:
    """Totals and ledger come back from SQLite; the same records are not counted again."""
    path = tmp_path / "state.db"
    simulator.add_burst(300)
    first = make_poller(simulator.url, ledger=SqliteLedger(path))
    first.poll_once()
    first.ledger.close()
    simulator.add_burst(200)

    totals = MessageTotals()
    second = make_poller(
        simulator.url, ledger=open_ledger(path, totals.restore), metrics=Metrics(totals)
    )
    second.poll_once()

    assert counted(second.metrics.totals) == expected(simulator.truth())
    assert counted(second.metrics.totals)["total"] == 500


class ExplodingClient(LogsClient):
    """A client with a defect: every fetch raises something no one planned for."""

    def fetch(self, params: Mapping[str, str | Sequence[str]]) -> bytes:
        raise ZeroDivisionError("a defect")


def test_an_unexpected_error_costs_one_poll_not_the_poll_loop(
    simulator: Simulator, make_poller: PollerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The defect is logged with its traceback and counted; the next poll works."""
    poller = make_poller(simulator.url)
    working = poller.client
    poller.client = ExplodingClient(simulator.url, Credentials(api_key=API_KEY), 1.0)
    simulator.add_burst(20)

    with caplog.at_level(logging.ERROR):
        failed = poller.poll_once()
    poller.client.close()
    poller.client = working
    recovered = poller.poll_once()

    assert (failed, recovered) == (False, True)
    assert (
        poller.metrics.registry.get_sample_value(
            "infobip_exporter_poll_errors_total", {"reason": "bad_response"}
        )
        == 1
    )
    assert "ZeroDivisionError: a defect" in caplog.text
    assert counted(poller.metrics.totals) == expected(simulator.truth())


@pytest.mark.parametrize(
    ("second", "requests", "overflows"),
    [
        # Five timestamps: the repeat shows at once that sentUntil was ignored.
        (lambda i: i, 2, 1),
        # One timestamp: it looks like a tie first (read six ways by status group, each
        # full), then two more repeats end it.
        (lambda i: 1, 10, 2),
    ],
    ids=["five-timestamps", "one-timestamp"],
)
def test_an_api_that_ignores_sent_until_does_not_make_paging_loop(
    fake_api: FakeApi,
    make_poller: PollerFactory,
    caplog: pytest.LogCaptureFixture,
    second: Callable[[int], int],
    requests: int,
    overflows: int,
) -> None:
    """The same full page whatever is asked: paging stops after a bounded number of
    requests, says why, and what it read still counts."""
    page = {
        "results": [
            {
                "messageId": f"m-{i}",
                "sentAt": f"2026-12-03T10:00:0{second(i)}.000+0000",
                "status": {"groupName": "DELIVERED", "name": "DELIVERED_TO_HANDSET"},
            }
            for i in range(5, 0, -1)
        ]
    }
    fake_api.script(Answer(body=orjson.dumps(page)))
    poller = make_poller(fake_api.url, page_size=5, initial_lookback=48 * 3600 - 60)

    with caplog.at_level(logging.WARNING):
        ok = poller.poll_once()

    assert ok is True
    assert len(fake_api.seen) == requests
    assert counted(poller.metrics.totals)["total"] == 5
    overflow = poller.metrics.registry.get_sample_value(
        "infobip_exporter_invalid_records_total", {"reason": "page_overflow"}
    )
    assert overflow == overflows
    assert "the API answers the same records whatever sentUntil says" in caplog.text


def test_recovery_after_a_long_run_of_failed_polls_costs_one_request(
    fake_api: FakeApi, make_poller: PollerFactory
) -> None:
    """Forty rejected polls leave one window to read, not forty."""
    fake_api.script(*[Answer(401, b"{}")] * 40, Answer(body=b'{"results": []}'))
    poller = make_poller(fake_api.url)
    for _ in range(40):
        poller.poll_once()
    before = len(fake_api.seen)

    assert poller.poll_once() is True
    assert len(fake_api.seen) - before == 1


def test_the_backoff_counts_a_run_of_one_reason_only(
    fake_api: FakeApi, make_poller: PollerFactory
) -> None:
    """Six rejected polls, then one 5xx: the 5xx waits one interval, not 2**6."""
    fake_api.script(
        *[Answer(401, b"{}")] * 6, Answer(500, b"{}"), Answer(500, b"{}"), Answer(500, b"{}")
    )
    poller = make_poller(fake_api.url, interval=10.0)

    delays = []
    for _ in range(9):
        poller.poll_once()
        delays.append(round(poller.next_delay() / 10.0))

    assert delays == [1, 1, 1, 1, 1, 1, 1, 2, 4]
