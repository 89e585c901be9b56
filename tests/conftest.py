"""Shared fixtures: real servers on loopback, and the exporter's parts wired together."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exporter.client import Credentials, LogsClient, RateLimiter
from exporter.ledger import Ledger
from exporter.metrics import Metrics
from exporter.poller import Poller, PollSettings
from exporter.simulator import Simulator
from tests.fakeapi import FakeApi

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "test-key-3f9a"
CONTRACT_CHECK = Path(__file__).resolve().parents[2] / "shared" / "tools" / "contract_check.py"
"""The project's contract checker, in the shared folder beside the checkout."""


def contract_check(url: str) -> str:
    """Run the contract checker on a /metrics URL; return its verdict line."""
    assert CONTRACT_CHECK.is_file(), f"the contract checker is missing: {CONTRACT_CHECK}"
    result = subprocess.run(
        [sys.executable, str(CONTRACT_CHECK), url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = result.stdout.splitlines() or [f"no output; stderr: {result.stderr}"]
    return "\n".join(lines) if result.returncode else lines[-1]


def need_tool(name: str) -> str:
    """The path of a command-line tool; a missing one skips the test, or fails it in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A simulator with no background traffic, on a free port; tests add what they need."""
    sim = Simulator(rate=0, api_key=API_KEY, seed=7)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    yield api
    api.stop()


PollerFactory = Callable[..., Poller]


@pytest.fixture
def make_poller() -> Iterator[PollerFactory]:
    """Build a poller against a URL: in-memory ledger, fresh metrics, quick retries."""
    made: list[Poller] = []

    def build(
        base_url: str,
        ledger: Ledger | None = None,
        metrics: Metrics | None = None,
        credentials: Credentials | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] | None = None,
        **settings: object,
    ) -> Poller:
        metrics = metrics or Metrics()
        client = LogsClient(
            base_url, credentials or Credentials(api_key=API_KEY), timeout, metrics.api_request
        )
        options: dict[str, object] = {"interval": 1.0, "max_retry_wait": 2.0}
        options.update(settings)
        poller = Poller(
            client,
            ledger or Ledger(),
            metrics,
            PollSettings(**options),  # type: ignore[arg-type]
            RateLimiter(120),
            **({"clock": clock} if clock else {}),
        )
        made.append(poller)
        return poller

    yield build
    for poller in made:
        poller.client.close()
