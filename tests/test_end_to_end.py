"""The whole exporter as an operator runs it: a real process, real sockets, real counts."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest

from exporter.simulator import Simulator
from tests.conftest import API_KEY, FIXTURES, PollerFactory, contract_check, need_tool
from tests.fakeapi import Answer, FakeApi
from tests.procs import ExporterProcess, running_exporter
from tests.truth import as_scraped, sample, scraped

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], object], timeout: float = 30.0, every: float = 0.1) -> None:
    """Poll a condition until it holds; fail the test when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(every)


def metrics_text(exporter: ExporterProcess) -> str:
    return httpx.get(f"{exporter.base_url}/metrics", timeout=5).text


def last_success(exporter: ExporterProcess) -> float:
    return sample(metrics_text(exporter), "infobip_exporter_last_success_timestamp_seconds") or 0


def config_for(tmp_path: Path, url: str, **collector: str) -> Path:
    lines = [
        "infobip:",
        f"  base_url: {url}",
        "  api_key: ${TEST_INFOBIP_KEY}",
        "collector:",
        "  interval: 1s",
    ]
    lines += [f"  {key}: {value}" for key, value in collector.items()]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def busy_simulator() -> Iterator[Simulator]:
    """Realistic traffic: 20 calls a second, each pending for one to three seconds."""
    sim = Simulator(rate=20, api_key=API_KEY, seed=21, pending_seconds=(1.0, 3.0), backfill=60)
    sim.start()
    yield sim
    sim.stop()


def settle(sim: Simulator, exporter: ExporterProcess) -> None:
    """Stop the traffic, then wait for two full polls that began after it stopped."""
    sim.pause()
    paused = time.time()
    wait_for(lambda: last_success(exporter) > paused)
    first = last_success(exporter)
    wait_for(lambda: last_success(exporter) > first)


def test_after_several_polls_every_total_equals_the_simulator_ground_truth(
    busy_simulator: Simulator, tmp_path: Path
) -> None:
    """Messages by status, errors by name and cost by currency, exactly, over HTTP."""
    config = config_for(tmp_path, busy_simulator.url)
    env = {"TEST_INFOBIP_KEY": API_KEY}

    with running_exporter(["--config", str(config)], env) as exporter:
        wait_for(lambda: len(busy_simulator.requests) >= 4)
        settle(busy_simulator, exporter)
        text = metrics_text(exporter)

    truth = busy_simulator.truth()
    assert truth["total"] > 1200
    assert scraped(text) == as_scraped(truth)
    assert sample(text, "infobip_voice_pending_messages") == 0
    assert sample(text, "infobip_exporter_up") == 1


def test_the_live_exposition_passes_the_contract_check_and_promtool(
    busy_simulator: Simulator, tmp_path: Path
) -> None:
    """The shared contract checker and `promtool check metrics`, on a running exporter."""
    promtool = need_tool("promtool")
    config = config_for(tmp_path, busy_simulator.url)

    with running_exporter(["--config", str(config)], {"TEST_INFOBIP_KEY": API_KEY}) as exporter:
        wait_for(lambda: last_success(exporter) > 0)
        verdict = contract_check(f"{exporter.base_url}/metrics")
        lint = subprocess.run(
            [promtool, "check", "metrics"],
            input=metrics_text(exporter).encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )

    assert verdict == "15 of 15 contract families present, 0 findings"
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b"")


def test_the_demo_serves_growing_counts_within_20_seconds() -> None:
    """`make run`: DELIVERED and a failing group above 0 quickly, and still growing."""
    started = time.monotonic()

    with running_exporter(["--demo"]) as exporter:
        wait_for(lambda: (sample(metrics_text(exporter), "infobip_exporter_up") or 0) == 1, 20)
        first = metrics_text(exporter)
        elapsed = time.monotonic() - started
        first_total = scraped(first)["total"]
        wait_for(lambda: scraped(metrics_text(exporter))["total"] > first_total, 20)

    groups = {group for group, _ in scraped(first)["messages"]}
    assert elapsed < 20
    assert "DELIVERED" in groups
    assert groups & {"UNDELIVERABLE", "EXPIRED", "REJECTED"}


def test_the_documentation_example_served_twice_counts_once(
    fake_api: FakeApi, make_poller: PollerFactory
) -> None:
    """The endpoint page's first example response, polled twice."""
    fake_api.script(Answer(body=(FIXTURES / "doc_example_one_record.json").read_bytes()))
    poller = make_poller(fake_api.url)

    results = [poller.poll_once(), poller.poll_once()]
    text = generate_latest(poller.metrics.registry).decode()

    assert results == [True, True]
    assert len(fake_api.seen) == 2
    assert (
        'infobip_voice_messages_total{status="DELIVERED_TO_HANDSET",status_group="DELIVERED"} 1.0'
        in text
    )
    assert (
        'infobip_voice_errors_total{error="EC_VOICE_NO_ANSWER",error_group="OK",'
        'permanent="true"} 1.0' in text
    )
    assert 'infobip_voice_cost_total{currency="EUR"} 0.1' in text
    assert sample(text, "infobip_voice_call_duration_seconds_count", status_group="DELIVERED") == 1
    assert sample(text, "infobip_voice_call_duration_seconds_sum", status_group="DELIVERED") == 10
    assert (
        sample(
            text, "infobip_voice_call_duration_seconds_bucket", status_group="DELIVERED", le="10.0"
        )
        == 1
    )


def run_once(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    config = config_for(tmp_path, url)
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--once", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "TEST_INFOBIP_KEY": API_KEY},
    )


def test_once_prints_the_exposition_and_exits_0(fake_api: FakeApi, tmp_path: Path) -> None:
    """`--once`: one collection, exposition on stdout."""
    fake_api.script(Answer(body=(FIXTURES / "doc_example_two_records.json").read_bytes()))

    result = run_once(tmp_path, fake_api.url)

    assert result.returncode == 0
    assert (
        sample(
            result.stdout,
            "infobip_voice_messages_total",
            status_group="DELIVERED",
            status="DELIVERED_TO_HANDSET",
        )
        == 2
    )
    assert sample(result.stdout, "infobip_exporter_up") == 1


def test_once_exits_1_when_the_api_fails(fake_api: FakeApi, tmp_path: Path) -> None:
    """A failed collection still prints what it has, and says so in the exit code."""
    fake_api.script(Answer(503, b"<html>down</html>"))

    result = run_once(tmp_path, fake_api.url)

    assert result.returncode == 1
    assert sample(result.stdout, "infobip_exporter_up") == 0
    assert sample(result.stdout, "infobip_exporter_poll_errors_total", reason="server_error") == 1
    assert "poll failed reason=server_error detail='HTTP 503: an HTML page of 17 bytes'" in (
        result.stderr
    )


def test_bad_records_are_skipped_counted_and_the_rest_still_counts(
    fake_api: FakeApi, make_poller: PollerFactory
) -> None:
    """A page with records lacking messageId or status: the valid ones count."""
    body = (
        b'{"results": [{"messageId": null, "status": {"groupName": "DELIVERED"}},'
        b'{"messageId": "ok-1", "sentAt": "not a time", "status": {"groupName": "DELIVERED",'
        b'"name": "DELIVERED_TO_HANDSET"}, "duration": "long", "price": {"pricePerSecond":'
        b'"abc"}}, {"messageId": "ok-2", "status": null}, 42]}'
    )
    fake_api.script(Answer(body=body))
    poller = make_poller(fake_api.url)

    ok = poller.poll_once()
    text = generate_latest(poller.metrics.registry).decode()

    assert ok is True
    assert (
        sample(
            text,
            "infobip_voice_messages_total",
            status_group="DELIVERED",
            status="DELIVERED_TO_HANDSET",
        )
        == 1
    )
    assert sample(text, "infobip_exporter_invalid_records_total", reason="no_message_id") == 1
    assert sample(text, "infobip_exporter_invalid_records_total", reason="no_status") == 1
    assert sample(text, "infobip_exporter_invalid_records_total", reason="not_an_object") == 1
