"""The ledger counts each message once, when it is first seen final, and forgets safely."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from freezegun import freeze_time

from exporter.ledger import RETENTION, Ledger, SqliteLedger, open_ledger
from exporter.metrics import MessageTotals
from exporter.parser import Status, VoiceLog

NOW = 1_800_000_000.0
DELIVERED = Status("DELIVERED", "DELIVERED_TO_HANDSET")
PENDING = Status("PENDING", "PENDING_ENROUTE")


def log_of(message_id: str, status: Status = DELIVERED, sent_at: float | None = NOW) -> VoiceLog:
    return VoiceLog(message_id, sent_at, None, 10, None, None, status, None)


def test_a_message_returned_by_ten_polls_counts_once() -> None:
    """Every call returns every matching record again; only the first sighting counts."""
    ledger = Ledger()

    counted = [ledger.admit([log_of("m-1")], NOW + i) for i in range(10)]

    assert [len(c) for c in counted] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_a_pending_message_counts_once_when_it_turns_final() -> None:
    """PENDING in one poll, DELIVERED in the next: one count, as DELIVERED."""
    ledger = Ledger()

    first = ledger.admit([log_of("m-1", PENDING)], NOW)
    second = ledger.admit([log_of("m-1", DELIVERED)], NOW + 60)
    third = ledger.admit([log_of("m-1", DELIVERED)], NOW + 120)

    assert first == []
    assert [r.status.group for r in second] == ["DELIVERED"]
    assert third == []
    assert ledger.pending == {}


def test_final_messages_behind_the_horizon_are_forgotten_and_not_counted_again() -> None:
    """Once the next window starts after a message, the ledger drops it; if the API still
    returns it, it is recognised as already counted by its age."""
    ledger = Ledger()
    ledger.admit([log_of("old", sent_at=NOW - 600), log_of("new", sent_at=NOW)], NOW)

    ledger.advance(NOW - 120, NOW)
    again = ledger.admit([log_of("old", sent_at=NOW - 600), log_of("new", sent_at=NOW)], NOW)

    assert sorted(ledger.final) == ["new"]
    assert again == []


def test_a_record_without_sent_at_is_kept_for_the_whole_retention() -> None:
    """Without sentAt no window keeps it out of an answer, so it stays known for 48 hours."""
    ledger = Ledger()
    ledger.admit([log_of("no-time", sent_at=None)], NOW)

    ledger.advance(NOW + RETENTION - 60, NOW + RETENTION - 60)
    kept = "no-time" in ledger.final
    ledger.advance(NOW + RETENTION + 60, NOW + RETENTION + 60)

    assert kept is True
    assert "no-time" not in ledger.final


def test_a_pending_message_that_leaves_the_retention_is_reported_lost() -> None:
    """Frozen clock: 48 hours and a minute after it was sent, the API forgets it too."""
    with freeze_time("2026-12-03 12:00:00") as clock:
        ledger = Ledger()
        sent = clock().timestamp()
        ledger.admit([log_of("stuck", PENDING, sent_at=sent)], sent)

        clock.tick(RETENTION - 60)
        lost_before = ledger.advance(clock().timestamp() - 120, clock().timestamp())
        clock.tick(120)
        lost_after = ledger.advance(clock().timestamp() - 120, clock().timestamp())

    assert (lost_before, lost_after) == (0, 1)
    assert len(ledger) == 0


def test_the_sqlite_ledger_restores_ids_horizon_and_totals(tmp_path: Path) -> None:
    """What one process commits, the next one reads back exactly."""
    path = tmp_path / "state.db"
    totals = MessageTotals()
    ledger = SqliteLedger(path)
    fresh = ledger.admit([log_of("a"), log_of("b", PENDING, NOW - 5)], NOW)
    totals.count(fresh)
    ledger.advance(NOW - 100, NOW)
    ledger.commit(totals.snapshot())
    ledger.close()

    restored = MessageTotals()
    again = open_ledger(path, restored.restore)

    assert again.final == {"a": NOW}
    assert again.pending == {"b": NOW - 5}
    assert again.horizon == NOW - 100
    assert restored.messages[("DELIVERED", "DELIVERED_TO_HANDSET")] == 1
    assert restored.snapshot() == totals.snapshot()


def test_uncommitted_changes_are_not_in_the_state_file(tmp_path: Path) -> None:
    """A crash between two commits leaves the state of the last commit."""
    path = tmp_path / "state.db"
    ledger = SqliteLedger(path)
    ledger.admit([log_of("a")], NOW)
    ledger.commit(b"{}")
    ledger.admit([log_of("b")], NOW)

    ids = sorted(row[0] for row in sqlite3.connect(path).execute("SELECT id FROM messages"))

    assert ids == ["a"]


@pytest.mark.parametrize("garbage", [b"this is not a database", b"SQLite format 3\x00" + b"x" * 90])
def test_a_corrupt_state_file_is_moved_aside_and_the_exporter_starts_fresh(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """One ERROR line names the problem; the damaged file is kept for a post-mortem."""
    path = tmp_path / "state.db"
    path.write_bytes(garbage)

    with caplog.at_level(logging.ERROR):
        ledger = open_ledger(path, MessageTotals().restore)

    assert len(ledger) == 0
    assert ledger.horizon is None
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("state unusable, starting fresh")
    assert [p.name.split("-")[0] for p in tmp_path.glob("state.db.unusable*")] == [
        "state.db.unusable"
    ]


def test_saved_totals_that_cannot_be_read_also_mean_a_fresh_start(tmp_path: Path) -> None:
    """A ledger without its totals would under-count, so both are dropped together."""
    path = tmp_path / "state.db"
    ledger = SqliteLedger(path)
    ledger.admit([log_of("a")], NOW)
    ledger.commit(b'{"messages": "broken"}')
    ledger.close()

    again = open_ledger(path, MessageTotals().restore)

    assert len(again) == 0
