"""Compare what the exporter counted with the simulator's ground truth."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.metrics import MessageTotals


def counted(totals: MessageTotals) -> dict[str, Any]:
    """The totals in the shape of `Simulator.truth()`, without the zero-valued series."""
    errors: Counter[tuple[str, str]] = Counter()
    for (group, name, _), value in totals.errors.items():
        errors[(group, name)] += value
    return {
        "messages": {k: v for k, v in totals.messages.items() if v},
        "errors": dict(errors),
        "cost": {k: v for k, v in totals.cost.items()},
        "total": sum(totals.messages.values()),
    }


def expected(truth: dict[str, Any]) -> dict[str, Any]:
    return {k: truth[k] for k in ("messages", "errors", "cost", "total")}


def scraped(text: str) -> dict[str, Any]:
    """The same shape from a /metrics exposition: what Prometheus would see."""
    messages: dict[tuple[str, str], int] = {}
    errors: Counter[tuple[str, str]] = Counter()
    cost: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "infobip_voice_messages_total" and sample.value:
                messages[(labels["status_group"], labels["status"])] = int(sample.value)
            elif sample.name == "infobip_voice_errors_total":
                errors[(labels["error_group"], labels["error"])] += int(sample.value)
            elif sample.name == "infobip_voice_cost_total":
                cost[labels["currency"]] = sample.value
    return {
        "messages": messages,
        "errors": dict(errors),
        "cost": cost,
        "total": sum(messages.values()),
    }


def as_scraped(truth: dict[str, Any]) -> dict[str, Any]:
    """Truth with its exact costs turned into the floats an exposition carries."""
    cost: dict[str, Decimal] = truth["cost"]
    return {**expected(truth), "cost": {k: float(v) for k, v in cost.items()}}


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None
