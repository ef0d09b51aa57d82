"""A report as text, JSON or one self-contained HTML file (pygal SVG charts inlined, no scripts)."""

from __future__ import annotations

import html
import json
import sys
from types import ModuleType
from typing import Any

FORMATS = ("text", "json", "html")


def _pygal() -> ModuleType:
    """pygal, imported when a chart is drawn. Its import appends a legacy ``sys.meta_path``
    finder (for pygal.maps plugins, unused here) that makes every later import that reaches it
    warn (ImportWarning, find_module): take it out again."""
    import pygal  # noqa: F401  (the module object is taken from sys.modules, typed)

    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]
    module: ModuleType = sys.modules["pygal"]
    return module


def _num(value: Any, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _when(iso: str) -> str:
    return iso[:16].replace("T", " ") + " UTC"


def _change(trend: dict[str, Any]) -> str:
    pct = trend["change_pct"]
    if pct is None:
        return "n/a" if trend["previous"] in (None, 0) else "="
    return f"{pct:+.1f}%"


_ROWS = (
    ("requests", "total requests", lambda v: _num(v)),
    ("latency_mean_ms", "average response time", lambda v: _num(v, " ms")),
    ("latency_p95_ms", "p95 response time", lambda v: _num(v, " ms")),
    ("error_rate", "error rate", _pct),
    ("availability", "availability", _pct),
    ("cost_usd", "cost", lambda v: _num(v, " USD")),
    ("dead_letters", "dead letters", lambda v: _num(v)),
)


def text(report: dict[str, Any]) -> str:
    period = report["period"]
    lines = [f"Backbone report {_when(period['since'])} .. {_when(period['until'])}"]
    if report["service"]:
        lines[0] += f" (service {report['service']})"
    lines += ["", f"{'':<24}{'now':>16}{'previous':>16}{'change':>10}"]
    for key, label, fmt in _ROWS:
        trend = report["trends"][key]
        lines.append(
            f"{label:<24}{fmt(trend['current']):>16}{fmt(trend['previous']):>16}{_change(trend):>10}"
        )
    lines += ["", "per service:"]
    for row in report["services"]:
        lines.append(
            f"  {row['service']:<16} {row['requests']:>8} req  p95 {_num(row['latency_p95_ms'], ' ms'):>12}"
            f"  errors {_pct(row['error_rate']):>8}  avail {_pct(row['availability']):>8}"
            f"  cost {_num(row['cost_usd'], ' USD'):>12}"
        )
    lines += ["", "cost by model:"]
    lines += [f"  {m:<30} {_num(c, ' USD')}" for m, c in report["cost"]["by_model"].items()] or [
        "  (no model named by the providers)"
    ]
    lines += ["", "recommendations:"]
    lines += [f"  - {r['message']}" for r in report["recommendations"]] or ["  none"]
    return "\n".join(lines) + "\n"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def _chart(chart: Any) -> str:
    """The SVG, inline: no XML declaration, no pygal scripts (they would load from a CDN)."""
    svg: str = chart.render(is_unicode=True)
    return svg


def _config(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "js": [],  # pygal's tooltips are scripts from its CDN: none, so the file works offline
        "disable_xml_declaration": True,
        "width": 860,
        "height": 320,
        "explicit_size": True,
        "show_legend": True,
        "legend_at_bottom": True,
        "x_label_rotation": 30,
        "show_minor_x_labels": False,
        "style": _pygal().style.CleanStyle,
    }


def _charts(report: dict[str, Any]) -> list[str]:
    pygal = _pygal()
    series = report["series"]
    labels = [s["start"][11:16] for s in series]
    traffic = pygal.Bar(**_config("Requests and failures"))
    traffic.x_labels = labels
    traffic.x_labels_major_every = max(1, len(labels) // 12)
    traffic.add("requests", [s["requests"] for s in series])
    traffic.add("failures", [s["failures"] for s in series])
    latency = pygal.Line(**_config("p95 response time (ms)"))
    latency.x_labels = labels
    latency.x_labels_major_every = max(1, len(labels) // 12)
    latency.add("p95", [s["latency_p95_ms"] for s in series])
    cost = pygal.Pie(**{**_config("Cost by model (USD)"), "inner_radius": 0.4})
    for model, usd in report["cost"]["by_model"].items() or report["cost"]["by_service"].items():
        cost.add(model, round(usd, 6))
    return [_chart(traffic), _chart(latency), _chart(cost)]


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:920px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.up{color:#b00}.down{color:#070}
li{margin:4px 0}svg{max-width:100%;height:auto}
"""


def to_html(report: dict[str, Any]) -> str:
    e = html.escape
    period = report["period"]
    title = f"Backbone report {_when(period['since'])} .. {_when(period['until'])}"
    if report["service"]:
        title += f" - {report['service']}"
    rows = "".join(
        f"<tr><td>{e(label)}</td><td>{e(fmt(report['trends'][k]['current']))}</td>"
        f"<td>{e(fmt(report['trends'][k]['previous']))}</td><td>{e(_change(report['trends'][k]))}</td></tr>"
        for k, label, fmt in _ROWS
    )
    services = "".join(
        f"<tr><td>{e(r['service'])}</td><td>{r['requests']}</td><td>{e(_num(r['latency_mean_ms'], ' ms'))}</td>"
        f"<td>{e(_num(r['latency_p95_ms'], ' ms'))}</td><td>{e(_pct(r['error_rate']))}</td>"
        f"<td>{e(_pct(r['availability']))}</td><td>{e(_num(r['cost_usd'], ' USD'))}</td>"
        f"<td>{r['dead_letters']}</td></tr>"
        for r in report["services"]
    )
    recs = (
        "".join(f"<li>{e(r['message'])}</li>" for r in report["recommendations"]) or "<li>none</li>"
    )
    charts = "".join(f"<figure>{svg}</figure>" for svg in _charts(report))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{e(title)}</h1>
<p>Compared with {e(report["previous_period"]["since"])} .. {e(report["previous_period"]["until"])}.</p>
<h2>Summary</h2>
<table><tr><th></th><th>now</th><th>previous</th><th>change</th></tr>{rows}</table>
<h2>Recommendations</h2><ul>{recs}</ul>
<h2>Charts</h2>{charts}
<h2>Services</h2>
<table><tr><th>service</th><th>requests</th><th>mean</th><th>p95</th><th>errors</th><th>availability</th><th>cost</th><th>dead letters</th></tr>{services}</table>
<script type="application/json" id="report-data">{e(json.dumps(report))}</script>
</body></html>
"""


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    if fmt == "html":
        return to_html(report)
    return text(report)
