"""The report as one self-contained HTML page: tables and inline SVG plots, no script, no CDN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from service.simulate.checker import KINDS, Violation

__all__ = ["render_html"]

_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_W, _H, _PAD = 720, 240, 40
_VIOLATION_HEAD = (
    "<table><tr><th>kind</th><th>source</th><th>at</th><th>loan</th><th>channel</th>"
    "<th>detail</th></tr>"
)


def _bars(
    name: str, title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]
) -> str:
    """Stacked vertical bars: one bar per label, one colour per series."""
    totals = [sum(s[i] for s in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    n = max(len(labels), 1)
    bw = (_W - 2 * _PAD) / n
    parts = [
        f'<svg class="plot" data-plot="{escape(name)}" width="{_W}" height="{_H + 40}" '
        f'viewBox="0 0 {_W} {_H + 40}" xmlns="http://www.w3.org/2000/svg" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_PAD}" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{_PAD}" y1="{_H}" x2="{_W - _PAD}" y2="{_H}" stroke="#333"/>',
        f'<text x="4" y="{_PAD}" font-size="10">{top:g}</text>',
    ]
    for i, label in enumerate(labels):
        y = float(_H)
        for k, (sname, values) in enumerate(series.items()):
            v = values[i]
            if not v:
                continue
            h = (_H - _PAD) * v / top
            y -= h
            parts.append(
                f'<rect class="bar" x="{_PAD + i * bw + 1:.1f}" y="{y:.1f}" '
                f'width="{max(bw - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{_COLOURS[k % len(_COLOURS)]}"><title>{escape(label)} '
                f"{escape(sname)}: {v:g}</title></rect>"
            )
        if n <= 31 or i % max(n // 15, 1) == 0:
            parts.append(
                f'<text x="{_PAD + i * bw + bw / 2:.1f}" y="{_H + 12}" font-size="9" '
                f'text-anchor="middle">{escape(label[-5:])}</text>'
            )
    for k, sname in enumerate(series):
        x = _PAD + k * 110
        parts.append(
            f'<rect x="{x}" y="{_H + 22}" width="10" height="10" '
            f'fill="{_COLOURS[k % len(_COLOURS)]}"/>'
            f'<text x="{x + 14}" y="{_H + 31}" font-size="10">{escape(sname)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _heatmap(name: str, title: str, rows: Mapping[str, Sequence[int]]) -> str:
    top = max((v for r in rows.values() for v in r), default=0) or 1
    left, cell = 150, 22
    height = 40 + cell * len(rows) + 20
    width = left + 24 * cell + 10
    parts = [
        f'<svg class="plot" data-plot="{escape(name)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="4" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for h in range(24):
        parts.append(
            f'<text x="{left + h * cell + cell / 2}" y="34" font-size="9" '
            f'text-anchor="middle">{h:02d}</text>'
        )
    for r, (zone, values) in enumerate(rows.items()):
        y = 40 + r * cell
        parts.append(f'<text x="4" y="{y + 15}" font-size="10">{escape(zone)}</text>')
        for h, v in enumerate(values):
            shade = 255 - int(200 * v / top)
            fill = f"rgb({shade},{shade},255)" if v else "#f4f4f4"
            parts.append(
                f'<rect class="cell" x="{left + h * cell}" y="{y}" '
                f'width="{cell - 1}" height="{cell - 1}" '
                f'fill="{fill}"><title>{escape(zone)} {h:02d}:00 local: {v}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: Mapping[str, Any], head: tuple[str, str] = ("", "count")) -> str:
    body = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in rows.items()
    )
    return f"<table><tr><th>{escape(head[0])}</th><th>{escape(head[1])}</th></tr>{body}</table>"


def _stacked_by_day(
    data: Mapping[str, Mapping[str, int]],
) -> tuple[list[str], dict[str, list[float]]]:
    days = list(data)
    keys = sorted({k for d in data.values() for k in d})
    return days, {k: [float(data[d].get(k, 0)) for d in days] for k in keys}


def render_html(summary: Mapping[str, Any], violations: Sequence[Violation]) -> str:
    s = summary
    p = s["plots"]
    v = s["violations"]
    c = s["contacts"]
    cost = s["cost"]
    plots = [
        _heatmap(
            "per_local_hour_by_zone",
            "Contacts per local hour, by zone",
            p["per_local_hour_by_zone"],
        ),
        _bars(
            "per_day_by_channel",
            "Contacts per day (UTC), by channel",
            *_stacked_by_day(p["per_day_by_channel"]),
        ),
        _bars(
            "per_day_by_stage",
            "Contacts per day (UTC), by stage",
            *_stacked_by_day(p["per_day_by_stage"]),
        ),
        _bars(
            "borrower_max_contacts_in_7_days",
            "Borrowers by their most contacts in any rolling 7 days",
            list(p["borrower_max_contacts_in_7_days"]),
            {"borrowers": [float(x) for x in p["borrower_max_contacts_in_7_days"].values()]},
        ),
        _bars(
            "release_lag_hours",
            "Deferred then sent: lag from deferral to send",
            list(p["release_lag_hours"]),
            {"notifications": [float(x) for x in p["release_lag_hours"].values()]},
        ),
        _bars(
            "parts_per_channel",
            "Messages per channel: SMS parts and pushes",
            ["sms parts", "push"],
            {"count": [float(c["sms_parts"]), float(c["channel"].get("push", 0))]},
        ),
        _bars(
            "cost_per_channel",
            f"Estimated cost per channel ({cost['currency']})",
            ["sms", "push"],
            {cost["currency"]: [float(cost["sms"]), float(cost["push"])]},
        ),
    ]
    verdict = "no violation" if v["total"] == 0 else f"{v['total']} VIOLATIONS"
    rows = "".join(
        f"<tr><td>{escape(x.kind)}</td><td>{escape(x.source)}</td><td>{x.at:%Y-%m-%d %H:%M}Z</td>"
        f"<td>{escape(x.loan_id)}</td><td>{escape(x.channel)}</td><td>{escape(x.detail)}</td></tr>"
        for x in violations[:200]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Simulation of {escape(s["policy"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
.bad {{ color: #b00; font-weight: bold; }} .good {{ color: #070; font-weight: bold; }}
svg.plot {{ display: block; margin: 1em 0; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 2em; }}
</style></head><body>
<h1>Simulation of {escape(s["policy"])}</h1>
<p>{s["loans"]} loans of {s["borrowers"]} borrowers over {s["days"]} days,
{s["events"]["total"]} events;
<span class="{"good" if v["total"] == 0 else "bad"}">{verdict}</span>.
Contacts {c["total"]}, SMS parts {c["sms_parts"]}, calls {c["calls"]},
estimated cost {cost["total"]} {escape(cost["currency"])}.</p>
<h2>Violations (each must be 0)</h2>
{_table({k: v[k] for k in KINDS}, ("rule", "violations"))}
{_VIOLATION_HEAD + rows + "</table>" if rows else ""}
<h2>Plots</h2>
{"".join(plots)}
<h2>Contacts</h2>
<div class="grid">
{_table(c["channel"], ("channel", "contacts"))}{_table(c["stage"], ("stage", "contacts"))}
{_table(c["risk"], ("risk", "contacts"))}{_table(c["zone"], ("zone", "contacts"))}
</div>
<h2>Deferrals and suppressions</h2>
<div class="grid">
{_table(s["deferrals"]["by_reason"], ("deferred because", "count"))}
{_table(s["deferrals"]["outcome"], ("deferred, then", "count"))}
{_table(s["suppressions"], ("suppressed because", "count"))}
{_table(s["events"]["dead_lettered"], ("dead-lettered", "count"))}
</div>
</body></html>
"""
