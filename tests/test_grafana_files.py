"""The Grafana dashboard and provisioning files: importable, provisionable, with units.

These read the files only; tests/test_dashboards_e2e.py runs every query against Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "infobip-voice-overview.json"
PROVISIONING = ROOT / "grafana" / "provisioning"

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

UNITS = {
    "Delivery success (5m)": "percentunit",
    "Failure ratio (30m, alerting)": "percentunit",
    "Final messages": "short",
    "Pending now": "short",
    "Spend": "none",
    "Cost per delivered minute": "none",
    "Delivery success ratio": "percentunit",
    "Messages per second by status group": "count:msg/s",
    "Top errors": "short",
    "Errors per second by error group": "count:msg/s",
    "Call duration percentiles (DELIVERED)": "s",
    "Call duration distribution (DELIVERED)": "s",
    "Delivery latency p50 / p95 by status group": "s",
    "Cost per hour by currency": "none",
    "Cost per delivered minute, hourly": "none",
    "Average list price per minute": "none",
    "Last poll": "none",
    "Age of last successful poll": "s",
    "Poll duration p95": "s",
    "Tracked messages": "short",
    "Invalid records": "short",
    "Exporter version": "none",
    "API requests by code": "reqps",
    "Poll errors by reason": "count:polls/min",
}

MONEY_PANELS = {
    "Spend",
    "Cost per delivered minute",
    "Cost per hour by currency",
    "Cost per delivered minute, hourly",
    "Average list price per minute",
}


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _unit(panel: dict[str, Any]) -> str:
    if panel["type"] == "heatmap":
        return str(panel["options"]["yAxis"]["unit"])
    return str(panel["fieldConfig"]["defaults"]["unit"])


def test_the_dashboard_has_a_stable_uid_and_the_current_schema() -> None:
    """Links and provisioning rely on the uid; schemaVersion 39 is Grafana 10.4's model."""
    dashboard = _dashboard()

    assert dashboard["uid"] == "infobip-voice-overview"
    assert dashboard["title"] == "Infobip Voice Overview"
    assert dashboard["schemaVersion"] == 39
    assert dashboard["id"] is None


def test_the_import_screen_asks_for_one_prometheus_datasource() -> None:
    """`__inputs` names DS_PROMETHEUS, which seeds the dashboard's datasource variable."""
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}

    assert [(i["name"], i["type"], i["pluginId"]) for i in dashboard["__inputs"]] == [
        ("DS_PROMETHEUS", "datasource", "prometheus")
    ]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    assert "${DS_PROMETHEUS}" not in json.dumps(dashboard["panels"])


def test_every_panel_and_query_reads_the_datasource_variable() -> None:
    """No panel is tied to one Grafana's datasource uid, so provisioning works anywhere."""
    for panel in _panels():
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
    job = next(v for v in _dashboard()["templating"]["list"] if v["name"] == "job")
    assert job["datasource"] == DATASOURCE_REF


def test_every_panel_has_its_unit() -> None:
    """Each panel declares the unit of what it shows."""
    assert {panel["title"]: _unit(panel) for panel in _panels()} == UNITS


def test_money_panels_show_each_currency_in_its_own_unit() -> None:
    """Series named EUR or USD (the legend is the currency) get Grafana's currency units."""
    for panel in _panels():
        if panel["title"] not in MONEY_PANELS:
            continue
        overrides = {
            o["matcher"]["options"]: o["properties"][0]["value"]
            for o in panel["fieldConfig"]["overrides"]
        }
        assert panel["targets"][0]["legendFormat"] == "{{currency}}", panel["title"]
        assert overrides["EUR"] == "currencyEUR", panel["title"]
        assert overrides["USD"] == "currencyUSD", panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    """Grafana needs distinct ids; overlapping grid positions would hide panels."""
    panels = _dashboard()["panels"]
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells

    assert len({panel["id"] for panel in panels}) == len(panels)


def test_the_dashboard_lists_the_plugins_it_needs() -> None:
    """`__requires` names each panel type used, for the import screen's checks."""
    dashboard = _dashboard()
    required = {r["id"] for r in dashboard["__requires"] if r["type"] == "panel"}

    assert {panel["type"] for panel in _panels()} == required
    assert required == {"stat", "timeseries", "heatmap", "bargauge"}


def test_the_rows_cover_delivery_calls_cost_and_exporter_health() -> None:
    """The four rows of the wall screen, in order."""
    rows = [panel["title"] for panel in _dashboard()["panels"] if panel["type"] == "row"]

    assert rows == ["Delivery", "Calls", "Cost", "Exporter health"]


def test_the_heatmap_draws_prometheus_buckets_without_recalculating() -> None:
    """Buckets come from the histogram itself, one row per `le`."""
    heatmap = next(panel for panel in _panels() if panel["type"] == "heatmap")

    assert heatmap["options"]["calculate"] is False
    assert heatmap["targets"][0]["format"] == "heatmap"
    assert heatmap["targets"][0]["legendFormat"] == "{{le}}"


def test_the_dashboard_provider_reads_the_mounted_dashboards_folder() -> None:
    """The provider loads files from /var/lib/grafana/dashboards."""
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "provider.yaml").read_text())

    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards"


def test_grafana_alert_rules_query_the_provisioned_datasource() -> None:
    """Each alert rule queries the datasource uid that datasources/prometheus.yaml sets."""
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    alerting = yaml.safe_load(
        (PROVISIONING / "alerting" / "infobip-voice-delivery.yaml").read_text()
    )
    [datasource] = datasources["datasources"]
    rules = [rule for group in alerting["groups"] for rule in group["rules"]]

    assert datasource["uid"] == "prometheus"
    assert alerting["apiVersion"] == 1
    assert [rule["uid"] for rule in rules] == [
        "infobip-voice-failure-ratio",
        "infobip-voice-network-errors-jump",
    ]
    for rule in rules:
        sources = {query["refId"]: query["datasourceUid"] for query in rule["data"]}
        assert sources == {"A": "prometheus", "C": "__expr__"}, rule["uid"]
        assert rule["condition"] == "C", rule["uid"]
        assert rule["noDataState"] == "OK", rule["uid"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["uid"]
        assert "Check first" in rule["annotations"]["description"], rule["uid"]
