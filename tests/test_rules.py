"""The Prometheus rules file: promtool accepts it, and its unit tests pass and can fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.conftest import need_tool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "infobip-voice-exporter.rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))

ALERTS = {
    "InfobipVoiceDeliveryFailureRatioHigh": "critical",
    "InfobipVoiceNetworkErrorsJump": "warning",
    "InfobipVoiceCostSpike": "warning",
    "InfobipExporterAbsent": "critical",
    "InfobipExporterTargetDown": "critical",
    "InfobipExporterPollFailing": "warning",
    "InfobipExporterCredentialsRejected": "critical",
    "InfobipExporterNoRecentSuccess": "critical",
    "InfobipExporterRateLimited": "warning",
    "InfobipVoiceLogsLostUnread": "critical",
}


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_tool("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_accepts_the_rules_file() -> None:
    """`promtool check rules` finds all 18 rules valid."""
    result = _promtool("check", "rules", RULES)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 19 rules found" in result.stdout


def test_every_promtool_unit_test_passes() -> None:
    """`promtool test rules` passes every file under deploy/prometheus/tests."""
    result = _promtool("test", "rules", *RULE_TESTS)

    assert [path.name for path in RULE_TESTS] == ["delivery.yml", "exporter.yml"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


def test_promtool_rejects_a_rules_file_with_a_broken_expression(tmp_path: Path) -> None:
    """The check is able to fail: an unbalanced bracket makes promtool exit non-zero."""
    broken = tmp_path / "broken.rules.yml"
    text = RULES.read_text().replace("[5m]))", "[5m])", 1)
    broken.write_text(text)

    result = _promtool("check", "rules", broken)

    assert result.returncode == 1
    assert "FAILED" in result.stderr


def test_a_unit_test_expecting_a_silent_alert_to_fire_fails(tmp_path: Path) -> None:
    """The unit tests are able to fail: the night case cannot be made to page."""
    night = {
        "series": 'infobip_voice_messages_total{job="j", status_group="UNDELIVERABLE"}',
        "values": "0 1 2 3x60",
    }
    wrong_expectation = {
        "eval_time": "40m",
        "alertname": "InfobipVoiceDeliveryFailureRatioHigh",
        "exp_alerts": [{"exp_labels": {"severity": "critical", "job": "j"}}],
    }
    test_file = tmp_path / "wrong.yml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(RULES)],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [night],
                        "alert_rule_test": [wrong_expectation],
                    }
                ],
            }
        )
    )

    result = _promtool("test", "rules", test_file)

    assert result.returncode == 1
    assert "InfobipVoiceDeliveryFailureRatioHigh" in result.stdout + result.stderr


def test_the_rules_file_defines_exactly_the_documented_alerts_with_their_severities() -> None:
    """Every alert has its severity, a summary, and a description saying what to check first."""
    alerts = [rule for rule in _rules() if "alert" in rule]

    assert {rule["alert"]: rule["labels"]["severity"] for rule in alerts} == ALERTS
    for rule in alerts:
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert "check first" in rule["annotations"]["description"].lower(), rule["alert"]


def test_recorded_names_follow_level_metric_operations() -> None:
    """Each recorded name has three colon-separated parts, the middle one infobip_voice_*."""
    recorded = [rule["record"] for rule in _rules() if "record" in rule]

    assert len(recorded) == 9
    for name in recorded:
        level, metric, operations = name.split(":")
        assert level.startswith("job"), name
        assert metric.startswith("infobip_voice_"), name
        assert operations.startswith(("rate", "ratio_rate", "increase")), name


def test_every_alert_is_shown_both_firing_and_silent_in_the_unit_tests() -> None:
    """For each alert, some unit test expects it to fire and some expects it to stay quiet."""
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])

    assert firing == set(ALERTS)
    assert silent == set(ALERTS)
