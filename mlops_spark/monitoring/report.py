"""The monitoring report: one self-contained HTML file per run (plots are inline SVG
made with matplotlib; no external script, style sheet or image)."""

from __future__ import annotations

import datetime as dt
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlops_spark.monitoring.drift import FeatureDrift


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg") :]


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def distribution_svg(d: FeatureDrift) -> str:
    """Reference vs current share per bin (or category) of one feature."""
    fig, ax = _figure(6.5, 2.6)
    xs = range(len(d.labels))
    ax.bar([x - 0.2 for x in xs], d.reference_share, width=0.4, label="reference", color="#4C72B0")
    ax.bar([x + 0.2 for x in xs], d.current_share, width=0.4, label="current", color="#DD8452")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(d.labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")
    ax.set_title(f"{d.feature} ({d.kind})", fontsize=9)
    ax.legend(fontsize=7)
    return _svg(fig)


def psi_svg(drifts: Sequence[FeatureDrift], threshold: float | None) -> str:
    """PSI per feature as horizontal bars, with the threshold line."""
    fig, ax = _figure(6.5, 0.3 * max(len(drifts), 3) + 0.8)
    names = [d.feature for d in drifts]
    values = [d.metrics.get("psi", float("nan")) for d in drifts]
    colors = ["#C44E52" if threshold is not None and v > threshold else "#55A868" for v in values]
    ax.barh(names, values, color=colors)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.legend(fontsize=7)
    ax.set_xlabel("PSI")
    return _svg(fig)


def trend_svg(history: Sequence[Mapping[str, Any]], metric: str) -> str:
    """One line per feature of ``metric`` over run dates (rows with run_date, feature, value)."""
    fig, ax = _figure(6.5, 2.8)
    by_feature: dict[str, list[tuple[dt.date, float]]] = {}
    for r in history:
        if r["metric"] == metric and r["value"] is not None:
            by_feature.setdefault(r["feature"], []).append((r["run_date"], float(r["value"])))
    for feature, points in sorted(by_feature.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=feature)
    ax.set_title(f"{metric} over time", fontsize=9)
    if by_feature:
        ax.legend(fontsize=6, ncol=3)
    fig.autofmt_xdate()
    return _svg(fig)


def render(
    model: str,
    model_version: int | None,
    run_date: dt.date,
    drifts: Sequence[FeatureDrift],
    metric_rows: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    thresholds: Mapping[str, float],
) -> str:
    """The report's HTML text.

    Args:
        metric_rows: this run's rows of ``ml.monitoring_metrics`` (feature, metric, value, threshold, breached).
        history: earlier and current rows (run_date, feature, metric, value) for the trend plots.
    """
    esc = html.escape
    breached = [r for r in metric_rows if r["breached"]]
    rows_html = "".join(
        f"<tr class='{'breach' if r['breached'] else ''}'><td>{esc(str(r['feature']))}</td><td>{esc(str(r['metric']))}</td>"
        f"<td>{r['value']:.6g}</td><td>{'' if r['threshold'] is None else format(r['threshold'], 'g')}</td>"
        f"<td>{'yes' if r['breached'] else ''}</td></tr>"
        for r in metric_rows
    )
    trends = "".join(f"<h3>{esc(m)}</h3>{trend_svg(history, m)}" for m in ("psi", "ks_statistic") if any(r["metric"] == m for r in history))
    perf = sorted({r["metric"] for r in history if r["feature"] == "__model__"})
    trends += "".join(f"<h3>{esc(m)}</h3>{trend_svg(history, m)}" for m in perf)
    dists = "".join(f"<div class='plot'>{distribution_svg(d)}</div>" for d in drifts if d.labels)
    status = f"{len(breached)} threshold breach(es)" if breached else "no threshold breached"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Monitoring {esc(model)} {run_date.isoformat()}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
tr.breach td {{ background: #f8d7da; }}
.status {{ font-weight: bold; color: {"#a00" if breached else "#070"}; }}
.plot {{ display: inline-block; vertical-align: top; }}
</style></head><body>
<h1>Monitoring report: {esc(model)} version {model_version} on {run_date.isoformat()}</h1>
<p class="status">{status}</p>
<h2>PSI per feature</h2>
{psi_svg([d for d in drifts if "psi" in d.metrics], thresholds.get("psi"))}
<h2>Metric trends</h2>
{trends or "<p>no history yet</p>"}
<h2>Reference vs current distributions</h2>
{dists}
<h2>All metrics</h2>
<table><tr><th>feature</th><th>metric</th><th>value</th><th>threshold</th><th>breached</th></tr>{rows_html}</table>
</body></html>
"""


def write(reports_root: str, model: str, run_date: dt.date, text: str) -> Path:
    """``<reports_root>/monitoring/<model>/<run_date>.html`` (overwritten on re-runs)."""
    path = Path(reports_root) / "monitoring" / model / f"{run_date.isoformat()}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
