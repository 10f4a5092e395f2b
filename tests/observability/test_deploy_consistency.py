"""The alerts and the dashboard only use metrics the service really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from service.observability import metrics

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "alerts" / "rules.yaml"
DASHBOARD = REPO / "deploy" / "components" / "grafana-dashboard" / "overdue-notifier-dashboard.json"
_METRIC = re.compile(r"\bnotifier_[a-z0-9_]+")
# Labels that would identify a person or grow without bound.
_FORBIDDEN_LABELS = {"borrower_id", "loan_id", "phone", "token", "name", "event_id"}


def _exported_sample_names() -> set[str]:
    assert metrics.EVENTS_RECEIVED is not None  # importing the module registers the metrics
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("notifier_"):
            continue
        names.add(family.name)
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "info": ("_info",),
        }.get(family.type, ())
        names.update(family.name + s for s in suffixes)
    return names


def _alert_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_every_alert_uses_exported_metrics() -> None:
    """A renamed metric breaks this test instead of silently muting an alert."""
    exported = _exported_sample_names()
    used = {m for expr in _alert_exprs() for m in _METRIC.findall(expr)}
    assert used, "no notifier_* metric found in the alert rules"
    assert used <= exported, f"alerts use unknown metrics: {sorted(used - exported)}"


def test_every_dashboard_panel_uses_exported_metrics() -> None:
    """Every panel's query names a metric the service exports, so no panel is empty by typo."""
    exported = _exported_sample_names()
    used = {m for expr in _dashboard_exprs() for m in _METRIC.findall(expr)}
    assert used <= exported, f"dashboard uses unknown metrics: {sorted(used - exported)}"


def test_no_metric_carries_personal_or_unbounded_labels() -> None:
    """No notifier_* metric has a borrower, loan, event or contact label."""
    for family in REGISTRY.collect():
        if family.name.startswith("notifier_"):
            for sample in family.samples:
                assert not (set(sample.labels) & _FORBIDDEN_LABELS), family.name
    for metric in vars(metrics).values():
        labels = set(getattr(metric, "_labelnames", ()))
        assert not (labels & _FORBIDDEN_LABELS), metric
