"""Restarts, crashes and a damaged state file, with a real exporter process."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.simulator import Simulator
from tests.conftest import API_KEY
from tests.procs import running_exporter
from tests.test_end_to_end import config_for, last_success, metrics_text, settle, wait_for
from tests.truth import as_scraped, scraped

ENV = {"TEST_INFOBIP_KEY": API_KEY}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(
        rate=30, api_key=API_KEY, seed=31, pending_seconds=(1.0, 4.0), backfill=120
    )
    simulator.start()
    yield simulator
    simulator.stop()


def test_a_restart_keeps_the_counters_and_counts_nothing_twice(
    sim: Simulator, tmp_path: Path
) -> None:
    """SIGTERM saves; the next process starts from the saved totals, not from zero."""
    config = config_for(tmp_path, sim.url, state_path=str(tmp_path / "state.db"))

    with running_exporter(["--config", str(config)], ENV) as first:
        wait_for(lambda: last_success(first) > 0)
        wait_for(lambda: len(sim.requests) >= 4)
        before = scraped(metrics_text(first))["total"]
        code = first.terminate()
    with running_exporter(["--config", str(config)], ENV) as second:
        at_start = scraped(metrics_text(second))["total"]
        settle(sim, second)
        final = scraped(metrics_text(second))

    assert code == 0
    assert before > 2400
    assert at_start >= before
    assert final == as_scraped(sim.truth())
    assert "state restored" in second.log_text()


def test_kill_9_at_random_moments_never_counts_twice_or_loses_a_message(
    sim: Simulator, tmp_path: Path
) -> None:
    """Five crashes with SIGKILL at random points of the poll cycle, then the truth."""
    config = config_for(tmp_path, sim.url, state_path=str(tmp_path / "state.db"))
    chance = random.Random(5)
    totals_at_start = []

    for _ in range(5):
        with running_exporter(["--config", str(config)], ENV) as exporter:
            totals_at_start.append(scraped(metrics_text(exporter))["total"])
            target = len(sim.requests) + chance.randint(1, 4)
            wait_for(lambda goal=target: len(sim.requests) >= goal, every=0.01)
            # A random moment of the poll cycle, not a wait for something: that is the point.
            time.sleep(chance.uniform(0.0, 0.4))
            exporter.terminate(signal.SIGKILL)
    with running_exporter(["--config", str(config)], ENV) as exporter:
        settle(sim, exporter)
        final = scraped(metrics_text(exporter))

    assert totals_at_start == sorted(totals_at_start)
    assert final == as_scraped(sim.truth())


def test_a_damaged_state_file_is_reported_and_the_exporter_starts_fresh(
    sim: Simulator, tmp_path: Path
) -> None:
    """One ERROR line, no crash loop, and exact counts from the fresh start."""
    state = tmp_path / "state.db"
    state.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 4)
    config = config_for(tmp_path, sim.url, state_path=str(state))

    with running_exporter(["--config", str(config)], ENV) as exporter:
        settle(sim, exporter)
        final = scraped(metrics_text(exporter))
        log = exporter.log_text()

    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert "state unusable, starting fresh" in errors[0]
    assert final == as_scraped(sim.truth())
    assert len(list(tmp_path.glob("state.db.unusable-*"))) == 1
