"""Decide which records are new final messages, and remember enough to never count twice.

The ledger holds only messageIds that the API can still return to a poll:

- final messages sent at or after the *horizon*, the earliest time the next poll reads;
- pending messages, until they turn final or leave the API's 48-hour retention.

A final record sent before the horizon that the ledger does not know was counted by an
earlier poll and forgotten since, so it is ignored. With a state path, the ledger, the
horizon and the message totals are written to SQLite in one transaction per poll: after a
crash at any moment the next start sees either all of a poll or none of it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from exporter.parser import VoiceLog

log = logging.getLogger(__name__)

RETENTION = 48 * 3600.0
"""How long the API keeps a log, in seconds."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    anchor REAL NOT NULL,
    pending INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
"""


class StateError(Exception):
    """The state file cannot be used."""


class Ledger:
    """messageIds that may still come back, and which of them are still pending.

    A final id maps to the moment it may be forgotten once the horizon passes it: its
    `sentAt`, or for a record without one, 48 hours after it was first seen (no window
    keeps it out of a later answer). A pending id maps to its `sentAt`, or to when it was
    first seen.
    """

    def __init__(self) -> None:
        self.final: dict[str, float] = {}
        self.pending: dict[str, float] = {}
        self.horizon: float | None = None

    def __len__(self) -> int:
        return len(self.final) + len(self.pending)

    def admit(self, records: Iterable[VoiceLog], now: float) -> list[VoiceLog]:
        """Take one poll's records; return those that reached a final status just now."""
        final, pending, horizon = self.final, self.pending, self.horizon
        fresh: list[VoiceLog] = []
        for record in records:
            message_id = record.message_id
            if message_id in final:
                continue
            sent_at = record.sent_at
            if record.status.final:
                if message_id in pending:
                    del pending[message_id]
                    self._changed(message_id)
                elif horizon is not None and sent_at is not None and sent_at < horizon:
                    continue
                final[message_id] = sent_at if sent_at is not None else now + RETENTION
                self._changed(message_id)
                fresh.append(record)
            elif message_id not in pending:
                pending[message_id] = sent_at if sent_at is not None else now
                self._changed(message_id)
        return fresh

    def advance(self, horizon: float, now: float) -> int:
        """Move the horizon and forget what can no longer return; return pending ones lost.

        A pending message whose anchor has left the API's retention will never be seen
        final: it is dropped here and the caller counts it.
        """
        self.horizon = horizon
        oldest_kept = now - RETENTION
        stale = [message_id for message_id, anchor in self.final.items() if anchor < horizon]
        for message_id in stale:
            del self.final[message_id]
            self._changed(message_id)
        lost = [mid for mid, anchor in self.pending.items() if anchor < oldest_kept]
        for message_id in lost:
            del self.pending[message_id]
            self._changed(message_id)
        return len(lost)

    def pending_before(self, moment: float) -> list[str]:
        """Pending messageIds sent before `moment`, oldest first."""
        older = [(anchor, mid) for mid, anchor in self.pending.items() if anchor < moment]
        return [mid for _, mid in sorted(older)]

    def _changed(self, message_id: str) -> None:
        """Hook for the persistent ledger; the in-memory one has nothing to record."""

    def commit(self, totals: bytes) -> None:
        """Make this poll's changes durable; nothing to do in memory."""

    def close(self) -> None:
        """Release the state file, if any."""


class SqliteLedger(Ledger):
    """A ledger whose every commit is one SQLite transaction, with the totals beside it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._dirty: set[str] = set()
        self.saved_totals: bytes | None = None
        try:
            self._db = self._open(path)
            self._load()
        except sqlite3.Error as exc:
            raise StateError(f"state file {path} unusable: {exc}") from exc

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # A read-only root file system leaves SQLite no place for temporary files.
        db.execute("PRAGMA temp_store=MEMORY")
        db.executescript(_SCHEMA)
        return db

    def _load(self) -> None:
        rows = self._db.execute("SELECT id, anchor, pending FROM messages")
        for message_id, anchor, pending in rows:
            (self.pending if pending else self.final)[message_id] = float(anchor)
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        horizon = meta.get("horizon")
        self.horizon = float(horizon) if horizon is not None else None
        self.saved_totals = meta.get("totals")

    def _changed(self, message_id: str) -> None:
        self._dirty.add(message_id)

    def commit(self, totals: bytes) -> None:
        upserts = []
        deletes = []
        for message_id in self._dirty:
            if message_id in self.final:
                upserts.append((message_id, self.final[message_id], 0))
            elif message_id in self.pending:
                upserts.append((message_id, self.pending[message_id], 1))
            else:
                deletes.append((message_id,))
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO messages VALUES (?, ?, ?)", upserts)
            db.executemany("DELETE FROM messages WHERE id = ?", deletes)
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [("horizon", self.horizon), ("totals", totals), ("saved_at", time.time())],
            )
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise
        self._dirty.clear()

    def close(self) -> None:
        self._db.close()


def open_ledger(path: Path | None, restore: Callable[[bytes], None]) -> Ledger:
    """The ledger for a state path: in memory when None, else in SQLite.

    `restore` receives the saved totals and raises ValueError when they are unusable. A
    state file that cannot be read is moved aside and a fresh one started, with one ERROR
    line, so that a damaged file never keeps the exporter from starting.
    """
    if path is None:
        return Ledger()
    try:
        ledger = SqliteLedger(path)
        if ledger.saved_totals is not None:
            try:
                restore(ledger.saved_totals)
            except ValueError as exc:
                ledger.close()
                raise StateError(f"state file {path} unusable: {exc}") from exc
        if ledger.horizon is not None:
            log.info("state restored path=%s tracked=%d", path, len(ledger))
        return ledger
    except StateError as exc:
        if not path.is_file():
            raise  # a folder or a device is the operator's to sort out, never moved
        aside = path.with_name(f"{path.name}.unusable-{int(time.time())}")
        log.error("state unusable, starting fresh error=%r moved_to=%s", str(exc), aside)
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{path}{suffix}")
            if part.is_file():
                part.rename(Path(f"{aside}{suffix}"))
        return SqliteLedger(path)
