"""The dashboard and the rules, run for real: demo exporter, real Prometheus, every query.

The exporter runs with its simulator; a Prometheus on loopback scrapes it every second and
evaluates the rules file every second. Each dashboard query, with Grafana's variables filled
in, must return data; each rule expression must parse; and every metric name any of them
mentions must be one the exporter serves, so a typo in a name fails here.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import need_tool
from tests.procs import ExporterProcess, running_exporter

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "infobip-voice-overview.json"
RULES = ROOT / "deploy" / "prometheus" / "infobip-voice-exporter.rules.yml"
GRAFANA_ALERTS = ROOT / "grafana" / "provisioning" / "alerting" / "infobip-voice-delivery.yaml"

JOB = "infobip-voice"

# Grafana's variables as a dashboard showing the last few minutes of all jobs fills them in.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "${job}": ".+",
    "$job": ".+",
}

STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][a-zA-Z0-9_:]*")
CHECKED_PREFIXES = ("infobip_", "process_")


def dashboard_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Every panel query, keyed by panel id, title and refId."""
    queries = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries[f"#{panel['id']} {panel['title']} [{target['refId']}]"] = target["expr"]
    return queries


def rule_expressions() -> dict[str, str]:
    """Every recording and alerting rule of the rules file, keyed by its name."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {
        rule.get("record") or rule["alert"]: rule["expr"]
        for group in groups
        for rule in group["rules"]
    }


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def grafana_alert_queries() -> dict[str, str]:
    """The PromQL of each Grafana-managed alert rule, keyed by rule uid and refId."""
    queries = {}
    for group in yaml.safe_load(GRAFANA_ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            for query in rule["data"]:
                if "expr" in query["model"]:
                    queries[f"{rule['uid']} [{query['refId']}]"] = query["model"]["expr"]
    return queries


def fill_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable is left in {expr!r}"
    return expr


def referenced_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: our own, process_*, and recorded ones."""
    without_strings = STRING_LITERAL.sub('""', expr)
    return {
        name
        for name in IDENTIFIER.findall(without_strings)
        if ":" in name or name.startswith(CHECKED_PREFIXES)
    }


def served_names(exposition: str) -> set[str]:
    """Every sample name in an exposition, so histograms count with _bucket, _sum and _count."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds; fail with `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def demo_exporter() -> Iterator[ExporterProcess]:
    with running_exporter(["--demo"]) as exporter:
        yield exporter


@pytest.fixture(scope="module")
def exposition(demo_exporter: ExporterProcess) -> str:
    """/metrics once the simulator's messages, errors and prices have been counted."""
    wanted = ("infobip_voice_errors_total", "infobip_voice_cost_total", "infobip_voice_price")
    text = ""

    def counted() -> bool:
        nonlocal text
        text = httpx.get(f"{demo_exporter.base_url}/metrics", timeout=5).text
        return all(f"\n{name}" in text for name in wanted)

    wait_for(counted, 30, "the demo exporter's first poll")
    return text


@pytest.fixture(scope="module")
def prometheus(
    demo_exporter: ExporterProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Prometheus on loopback scraping the demo exporter and evaluating the rules file."""
    binary = need_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    target = demo_exporter.base_url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = workdir / "prometheus.log"
    address = f"127.0.0.1:{free_port()}"
    url = f"http://{address}"

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited: {log.read_text()}")
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(ready, 30, "prometheus to be ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def instant_query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    return dict(response.json())


@pytest.fixture(scope="module")
def scraped(prometheus: str, exposition: str) -> str:
    """Prometheus, once every panel shows something or 45 seconds have passed.

    Running out of time is left to the tests, which then name the panels without data.
    """
    queries = [fill_variables(expr) for expr in dashboard_queries(load_dashboard()).values()]
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if all(instant_query(prometheus, expr)["data"]["result"] for expr in queries):
            break
        time.sleep(0.25)
    return prometheus


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def test_every_dashboard_query_returns_data_from_a_real_prometheus(scraped: str) -> None:
    """Each panel query parses and returns at least one series once the demo is scraped."""
    queries = dashboard_queries(load_dashboard())
    empty = []
    for title, expr in queries.items():
        answer = instant_query(scraped, fill_variables(expr))
        assert answer["status"] == "success", f"{title}: {answer}"
        if not answer["data"]["result"]:
            empty.append(title)

    assert len(queries) == 27
    assert empty == []


def test_every_rule_expression_parses_in_a_real_prometheus(scraped: str) -> None:
    """Recording, alerting and Grafana alert expressions are accepted by the query API."""
    expressions = {**rule_expressions(), **grafana_alert_queries()}
    failed = {}
    for name, expr in expressions.items():
        answer = instant_query(scraped, expr)
        if answer["status"] != "success":
            failed[name] = answer.get("error")

    assert len(expressions) == 21
    assert failed == {}


def test_prometheus_loads_and_evaluates_every_rule_without_error(scraped: str) -> None:
    """/api/v1/rules lists each rule of the file, all healthy after evaluation."""
    groups = httpx.get(f"{scraped}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}

    assert set(loaded) == set(rule_expressions())
    assert {name: rule["health"] for name, rule in loaded.items()} == dict.fromkeys(loaded, "ok")


def test_a_healthy_demo_raises_no_alert(scraped: str) -> None:
    """With the simulator answering normally, no alert is pending or firing."""
    alerts = httpx.get(f"{scraped}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    assert alerts == []


def test_the_job_variable_offers_the_scraped_job(scraped: str) -> None:
    """The dashboard's job variable query lists the job that scrapes the exporter."""
    variable = next(v for v in load_dashboard()["templating"]["list"] if v["name"] == "job")
    metric = re.fullmatch(r"label_values\((\w+), job\)", variable["definition"])
    assert metric is not None

    answer = httpx.get(
        f"{scraped}/api/v1/label/job/values", params={"match[]": metric.group(1)}, timeout=10
    ).json()

    assert answer["data"] == [JOB]


def test_every_metric_name_in_dashboard_and_rules_is_served_by_the_exporter(
    exposition: str,
) -> None:
    """A name in any query is a series of /metrics, or a rule the rules file records."""
    sources = {
        **{f"panel {k}": v for k, v in dashboard_queries(load_dashboard()).items()},
        **{f"rule {k}": v for k, v in rule_expressions().items()},
        **{f"grafana alert {k}": v for k, v in grafana_alert_queries().items()},
    }
    served = served_names(exposition)
    recorded = recorded_names()

    unknown = {
        f"{source}: {name}"
        for source, expr in sources.items()
        for name in referenced_metrics(expr)
        if name not in (recorded if ":" in name else served)
    }

    assert unknown == set()
    assert {name for expr in sources.values() for name in referenced_metrics(expr)} >= {
        "infobip_voice_messages_total",
        "infobip_voice_errors_total",
        "infobip_voice_call_duration_seconds_bucket",
        "infobip_voice_delivery_latency_seconds_bucket",
        "infobip_voice_cost_total",
        "infobip_voice_pending_messages",
        "infobip_exporter_up",
        "infobip_exporter_last_success_timestamp_seconds",
        "infobip_exporter_api_requests_total",
        "infobip_exporter_poll_errors_total",
        "infobip_exporter_build_info",
    }


def test_the_name_check_catches_a_misspelt_metric() -> None:
    """The extraction sees names inside functions and selectors, and skips label values."""
    expr = (
        'sum by (job) (rate(infobip_voice_mesages_total{status_group="infobip_x"}[5m]))'
        " / on (job) job:infobip_voice_messages:rate5m"
    )

    assert referenced_metrics(expr) == {
        "infobip_voice_mesages_total",
        "job:infobip_voice_messages:rate5m",
    }
