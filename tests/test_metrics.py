"""Message totals become the contract's metric families, exactly."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from freezegun import freeze_time

from exporter.metrics import Metrics
from exporter.parser import Error, Price, Status, VoiceLog
from exporter.server import App, Exposition, HttpServer
from tests.conftest import contract_check, need_tool


def call(
    message_id: str,
    group: str = "DELIVERED",
    duration: int | None = 7,
    price: str | None = "0.00787679",
    currency: str = "EUR",
    error: Error | None = None,
    latency: float | None = 20.0,
) -> VoiceLog:
    sent = 1_800_000_000.0
    return VoiceLog(
        message_id=message_id,
        sent_at=sent,
        done_at=None if latency is None else sent + latency,
        duration=duration,
        mcc_mnc="22801",
        price=None if price is None else Price(Decimal(price), currency),
        status=Status(group, f"{group}_STATUS"),
        error=error,
    )


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_thousand_calls_cost_exactly_what_they_cost() -> None:
    """1,000 calls of 7 s at 0.00787679 a second give 55.13753, without float drift."""
    metrics = Metrics()

    metrics.totals.count(call(f"m-{i}") for i in range(1000))

    assert value(metrics, "infobip_voice_cost_total", currency="EUR") == 55.13753
    assert metrics.totals.cost["EUR"] == Decimal("55.13753000")


def test_a_45_second_call_lands_in_the_45_second_bucket() -> None:
    """Buckets fit voice calls: 45 s is counted at le=45 and every bucket above it."""
    metrics = Metrics()

    metrics.totals.count([call("m-1", duration=45)])

    bucket = "infobip_voice_call_duration_seconds_bucket"
    assert value(metrics, bucket, status_group="DELIVERED", le="30.0") == 0
    assert value(metrics, bucket, status_group="DELIVERED", le="45.0") == 1
    assert value(metrics, bucket, status_group="DELIVERED", le="60.0") == 1
    assert value(metrics, "infobip_voice_call_duration_seconds_sum", status_group="DELIVERED") == 45


def test_every_final_status_group_is_exported_at_zero_from_the_start() -> None:
    """Ratios and alerts need each group's series before its first message."""
    metrics = Metrics()

    groups = {
        sample.labels["status_group"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "infobip_voice_messages"
        for sample in family.samples
    }

    assert groups == {"DELIVERED": 0, "UNDELIVERABLE": 0, "EXPIRED": 0, "REJECTED": 0}


def test_errors_count_only_when_the_error_id_is_not_zero() -> None:
    """NO_ERROR (id 0) and a null error are not errors; a 10xxx id is, with its flags."""
    metrics = Metrics()
    no_answer = Error("HANDSET_ERRORS", "NO_ANSWER", 10200, False)

    metrics.totals.count(
        [
            call("a", "UNDELIVERABLE", error=no_answer),
            call("b", "UNDELIVERABLE", error=no_answer),
            call("c", error=Error("OK", "NO_ERROR", 0, False)),
            call("d", error=None),
            call("e", "REJECTED", error=Error("USER_ERRORS", "INSUFFICIENT_FUNDS", 10301, None)),
        ]
    )

    errors = {
        tuple(s.labels.values()): s.value
        for f in metrics.registry.collect()
        if f.name == "infobip_voice_errors"
        for s in f.samples
    }
    assert errors == {
        ("HANDSET_ERRORS", "NO_ANSWER", "false"): 2,
        ("USER_ERRORS", "INSUFFICIENT_FUNDS", "unknown"): 1,
    }


def test_an_unknown_final_group_is_counted_under_its_own_name() -> None:
    """Never dropped: a new group shows up as its own series."""
    metrics = Metrics()

    metrics.totals.count([call("a", "CANCELLED")])

    assert (
        value(
            metrics,
            "infobip_voice_messages_total",
            status_group="CANCELLED",
            status="CANCELLED_STATUS",
        )
        == 1
    )


def test_missing_duration_price_or_times_leave_those_series_alone() -> None:
    """A record without a duration or price is still counted as a message."""
    metrics = Metrics()

    metrics.totals.count([call("a", duration=None, price=None, latency=None)])

    assert (
        value(
            metrics,
            "infobip_voice_messages_total",
            status_group="DELIVERED",
            status="DELIVERED_STATUS",
        )
        == 1
    )
    assert (
        value(metrics, "infobip_voice_call_duration_seconds_count", status_group="DELIVERED") == 0
    )
    assert (
        value(metrics, "infobip_voice_delivery_latency_seconds_count", status_group="DELIVERED")
        == 0
    )
    assert metrics.totals.cost == {}


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str]]:
    """Metrics with a realistic mix, served by the exporter's own HTTP server."""
    metrics = Metrics()
    metrics.totals.count(
        [
            call("a"),
            call("b", "UNDELIVERABLE", error=Error("HANDSET_ERRORS", "BUSY", 10201, False)),
            call("c", "EXPIRED", price="0.0105", currency="USD"),
            call("d", "REJECTED", error=Error("USER_ERRORS", "INSUFFICIENT_FUNDS", 10301, True)),
        ]
    )
    metrics.api_request("200")
    server = HttpServer(App(metrics.registry, lambda: True), "127.0.0.1", 0)
    server.start()
    yield metrics, f"http://{server.address}"
    server.stop()


def test_the_exposition_holds_to_the_contract(served: tuple[Metrics, str]) -> None:
    """The project's contract checker finds nothing: names, types, labels, privacy."""
    _, url = served

    verdict = contract_check(f"{url}/metrics")

    assert verdict == "15 of 15 contract families present, 0 findings"


def test_promtool_finds_nothing_to_complain_about(served: tuple[Metrics, str]) -> None:
    """`promtool check metrics` lints names, units and help texts."""
    promtool = need_tool("promtool")
    _, url = served
    exposition = httpx.get(f"{url}/metrics").content

    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_openmetrics_is_served_when_the_scraper_asks_for_it(served: tuple[Metrics, str]) -> None:
    """Prometheus' Accept header for OpenMetrics gets OpenMetrics, ending in # EOF."""
    _, url = served

    response = httpx.get(
        f"{url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert 'infobip_voice_cost_total{currency="USD"} 0.0735' in response.text


def test_the_text_format_carries_the_exact_values(served: tuple[Metrics, str]) -> None:
    """Plain text format for a plain GET."""
    _, url = served

    text = httpx.get(f"{url}/metrics").text

    assert (
        'infobip_voice_messages_total{status="DELIVERED_STATUS",status_group="DELIVERED"} 1.0'
        in text
    )
    assert 'infobip_exporter_api_requests_total{code="200"} 1.0' in text
    assert 'infobip_exporter_build_info{version="0.1.0"} 1.0' in text


def test_health_readiness_and_landing_page_answer(served: tuple[Metrics, str]) -> None:
    """/healthz and /readyz answer 200; / links to /metrics; anything else is 404."""
    _, url = served

    answers = {path: httpx.get(f"{url}{path}") for path in ("/healthz", "/readyz", "/", "/x")}

    assert {p: r.status_code for p, r in answers.items()} == {
        "/healthz": 200,
        "/readyz": 200,
        "/": 200,
        "/x": 404,
    }
    assert 'href="metrics"' in answers["/"].text


def render(
    exposition: Exposition, accept: str = "", encoding: str = ""
) -> tuple[bytes, dict[str, str]]:
    """Call the exposition as a WSGI server would; return body and headers."""
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(headers, status=status)

    body = b"".join(
        exposition({"HTTP_ACCEPT": accept, "HTTP_ACCEPT_ENCODING": encoding}, start_response)
    )
    return body, seen


def test_scrapes_within_one_second_share_one_rendering() -> None:
    """Frozen clock: a change shows at the first scrape a second after the last rendering."""
    metrics = Metrics()
    exposition = Exposition(metrics.registry)

    with freeze_time("2026-12-03 12:00:00") as clock:
        first, _ = render(exposition)
        metrics.api_request("200")
        same_second, _ = render(exposition)
        clock.tick(1.01)
        next_second, _ = render(exposition)

    line = b'infobip_exporter_api_requests_total{code="200"} 1.0'
    assert same_second == first
    assert line not in first
    assert line in next_second.splitlines()


def test_gzip_and_openmetrics_are_rendered_as_asked() -> None:
    """Prometheus asks for gzip; each format and encoding is its own rendering."""
    exposition = Exposition(Metrics().registry)

    zipped, headers = render(exposition, "application/openmetrics-text; version=1.0.0", "gzip")

    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert gzip.decompress(zipped).endswith(b"# EOF\n")
    assert headers["status"] == "200 OK"
