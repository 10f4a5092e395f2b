#!/usr/bin/env python3
"""Generate the Grafana dashboard JSON for overdue-notifier from a short panel list.

    python deploy/tools/build_dashboard.py          # write the JSON
    python deploy/tools/build_dashboard.py --check  # exit 1 if the committed JSON differs

The dashboard shows the signals the alerts watch (deploy/alerts/rules.yaml), so an on-call
person lands on the graph that explains the page. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = (
    Path(__file__).resolve().parents[1]
    / "components"
    / "grafana-dashboard"
    / "overdue-notifier-dashboard.json"
)
NS = 'namespace="$namespace"'

# (title, unit, [(expr, legend)], kind, width); a row is a title with no targets.
Panel = tuple[str, str, list[tuple[str, str]], str, int]

PANELS: list[Panel] = [
    ("Flow", "", [], "row", 24),
    (
        "Replicas scraped",
        "none",
        [(f"count(notifier_build_info{{{NS}}})", "replicas")],
        "stat",
        4,
    ),
    (
        "Time since last send",
        "s",
        [
            (
                f"time() - max by (channel) "
                f"(notifier_last_successful_send_timestamp_seconds{{{NS}}})",
                "{{channel}}",
            )
        ],
        "stat",
        6,
    ),
    (
        "Oldest unfinished event",
        "s",
        [(f"max(notifier_oldest_unfinished_event_age_seconds{{{NS}}})", "age")],
        "stat",
        4,
    ),
    (
        "Total consumer lag",
        "none",
        [(f"sum(notifier_partition_lag{{{NS}}})", "lag")],
        "stat",
        5,
    ),
    (
        "Dead letters (1h)",
        "none",
        [(f"sum(increase(notifier_dlq_records_total{{{NS}}}[1h]))", "records")],
        "stat",
        5,
    ),
    (
        "Events in and out",
        "ops",
        [
            (f"sum(rate(notifier_events_received_total{{{NS}}}[5m]))", "received"),
            (
                f"sum by (outcome) (rate(notifier_events_consumed_total{{{NS}}}[5m]))",
                "{{outcome}}",
            ),
        ],
        "timeseries",
        12,
    ),
    (
        "Notification decisions by status",
        "ops",
        [
            (
                f"sum by (status) (rate(notifier_notifications_total{{{NS}}}[5m]))",
                "{{status}}",
            )
        ],
        "timeseries",
        12,
    ),
    (
        "Decisions by reason (top 10)",
        "ops",
        [
            (
                f"topk(10, sum by (reason) (rate(notifier_notifications_total{{{NS}}}[15m])))",
                "{{reason}}",
            )
        ],
        "timeseries",
        12,
    ),
    (
        "Sent by channel and provider",
        "ops",
        [
            (
                f"sum by (channel, provider) "
                f'(rate(notifier_notifications_total{{{NS},status="sent"}}[5m]))',
                "{{channel}} / {{provider}}",
            )
        ],
        "timeseries",
        12,
    ),
    ("Kafka", "", [], "row", 24),
    (
        "Consumer lag by partition",
        "none",
        [
            (
                f"sum by (topic, partition) (notifier_partition_lag{{{NS}}})",
                "{{topic}}[{{partition}}]",
            )
        ],
        "timeseries",
        12,
    ),
    (
        "In flight, paused partitions, oldest event",
        "none",
        [
            (f"sum(notifier_in_flight_events{{{NS}}})", "in flight"),
            (f"sum(notifier_partitions_paused{{{NS}}})", "paused partitions"),
            (f"max(notifier_oldest_unfinished_event_age_seconds{{{NS}}})", "oldest age (s)"),
        ],
        "timeseries",
        12,
    ),
    (
        "Results published and dead letters",
        "ops",
        [
            (f"sum(rate(notifier_results_published_total{{{NS}}}[5m]))", "results"),
            (
                f"sum by (error) (rate(notifier_dlq_records_total{{{NS}}}[5m]))",
                "dlq {{error}}",
            ),
        ],
        "timeseries",
        12,
    ),
    ("Providers", "", [], "row", 24),
    (
        "Attempts by provider and outcome",
        "ops",
        [
            (
                f"sum by (provider, outcome) (rate(notifier_provider_attempts_total{{{NS}}}[5m]))",
                "{{provider}} {{outcome}}",
            )
        ],
        "timeseries",
        12,
    ),
    (
        "Error ratio by provider",
        "percentunit",
        [
            (
                f'sum by (provider) (rate(notifier_provider_attempts_total{{{NS},outcome!="ok"}}'
                f"[10m])) / sum by (provider) "
                f"(rate(notifier_provider_attempts_total{{{NS}}}[10m]))",
                "{{provider}}",
            )
        ],
        "timeseries",
        12,
    ),
    (
        "Provider latency p50 / p95 / p99",
        "s",
        [
            (
                f"histogram_quantile({q}, sum by (provider, le) "
                f"(rate(notifier_provider_latency_seconds_bucket{{{NS}}}[5m])))",
                f"{{{{provider}}}} p{int(q * 100)}",
            )
            for q in (0.5, 0.95, 0.99)
        ],
        "timeseries",
        12,
    ),
    (
        "Retries and open circuits",
        "none",
        [
            (
                f"sum by (provider) (rate(notifier_retries_total{{{NS}}}[5m]))",
                "retries/s {{provider}}",
            ),
            (
                f"max by (provider) (notifier_circuit_open{{{NS}}})",
                "circuit open {{provider}}",
            ),
        ],
        "timeseries",
        12,
    ),
    ("Contact coverage and hand-off", "", [], "row", 24),
    (
        "Overdue loans not reached for N days, by stage and cause",
        "none",
        [
            (
                f"sum by (stage, cause) (max by (stage, cause, namespace) "
                f"(notifier_overdue_loans_unreached{{{NS}}}))",
                "{{stage}} / {{cause}}",
            )
        ],
        "timeseries",
        16,
    ),
    (
        "Collector tasks per hour, by reason",
        "none",
        [
            (
                f"sum by (reason) (increase(notifier_collector_tasks_total{{{NS}}}[1h]))",
                "{{reason}}",
            )
        ],
        "timeseries",
        8,
    ),
    ("Deferred and rendering", "", [], "row", 24),
    (
        "Deferred backlog",
        "none",
        [(f"max(notifier_deferred_backlog{{{NS}}})", "waiting")],
        "timeseries",
        8,
    ),
    (
        "Most overdue deferred notification",
        "s",
        [(f"max(notifier_deferred_oldest_overdue_seconds{{{NS}}})", "past due")],
        "timeseries",
        8,
    ),
    (
        "Render time p99",
        "s",
        [
            (
                f"histogram_quantile(0.99, sum by (le) "
                f"(rate(notifier_render_seconds_bucket{{{NS}}}[5m])))",
                "p99",
            )
        ],
        "timeseries",
        8,
    ),
    (
        "Event-loop lag p99 (CPU saturation or blocking code)",
        "s",
        [
            (
                f"histogram_quantile(0.99, sum by (pod, le) "
                f"(rate(notifier_event_loop_lag_seconds_bucket{{{NS}}}[5m])))",
                "{{pod}}",
            )
        ],
        "timeseries",
        8,
    ),
]


def _panel(pid: int, panel: Panel, x: int, y: int) -> dict[str, object]:
    title, unit, targets, kind, width = panel
    if kind == "row":
        return {
            "id": pid,
            "type": "row",
            "title": title,
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 4 if kind == "stat" else 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, object]:
    panels, x, y, row_h = [], 0, 0, 0
    for pid, panel in enumerate(PANELS, start=1):
        kind, width = panel[3], panel[4]
        height = 1 if kind == "row" else (4 if kind == "stat" else 8)
        if kind == "row" or x + width > 24:
            x, y = 0, y + row_h
            row_h = 0
        panels.append(_panel(pid, panel, x, y))
        x += width
        row_h = max(row_h, height)
        if kind == "row":
            x, y, row_h = 0, y + 1, 0
    return {
        "uid": "overdue-notifier",
        "title": "overdue-notifier",
        "description": "Loan reminders: events in, decisions, sends, Kafka lag, providers, "
        "deferred backlog. Same signals as the alerts in deploy/alerts/rules.yaml.",
        "tags": ["overdue-notifier", "collections"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                },
                {
                    "name": "namespace",
                    "type": "query",
                    "label": "Namespace",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(notifier_build_info, namespace)",
                    "refresh": 2,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUT.is_file() and OUT.read_text() == text:
            print("build_dashboard: dashboard JSON in sync")
            return 0
        print(f"out of date: {OUT}; run: python3 deploy/tools/build_dashboard.py")
        return 1
    OUT.write_text(text)
    print(f"build_dashboard: wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
