"""Draw docs/grafana/asyncpay.json as a PNG without Grafana: each panel's
PromQL goes through a Prometheus server's HTTP API (``/api/v1/query_range``,
the query Grafana sends) and matplotlib draws the answer where the panel's
``gridPos`` puts it, stat panels as their last value, time series as lines
(bars when the panel says so), legends from ``legendFormat``.

Used by bench/regtest_dashboard.py at the end of its run; by itself it
draws any time range a Prometheus still holds::

    python bench/dashboard_png.py --prometheus http://127.0.0.1:9090 --start T0 --end T1 --out docs/x.png

``$__rate_interval`` is replaced as Grafana does: max(4 x scrape interval,
step + scrape interval); ``$instance`` by ``.*`` (every node).
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "asyncpay.json"
# Grafana's dark theme.
BG, PANEL, GRID, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e8e"
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#fade2a", "#ff7383",
           "#96d98d"]
ROW_INCHES = 0.36  # one grid unit of height (30 px in Grafana)


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[tuple[dict, list]]:
    """[(labels, [(t, value)])] for one PromQL expression."""
    qs = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{qs}", timeout=60) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return [(s["metric"], [(float(t), float(v)) for t, v in s["values"]]) for s in body["data"]["result"]]


def expand(expr: str, step: float, scrape: float) -> str:
    rate = max(4 * scrape, step + scrape)
    return expr.replace("$__rate_interval", f"{int(rate)}s").replace("$instance", ".*")


def legend(fmt: str, labels: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "") or \
        ",".join(f"{k}={v}" for k, v in labels.items()) or "value"


def fmt_value(v: float, unit: str | None) -> str:
    if v != v:  # NaN
        return "–"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.1f} s"
    if unit == "reqps":
        return f"{v:.2f}/s"
    return f"{v:g}" if abs(v) < 1e6 else f"{v:.3g}"


def render(dashboard: dict, fetch, start: float, end: float, step: float, scrape: float, out: Path,
           subtitle: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig_h = rows * ROW_INCHES + 1.0
    fig = plt.figure(figsize=(18, fig_h), facecolor=BG)
    top = 1 - 0.8 / fig_h
    fig.text(0.01, 1 - 0.3 / fig_h, dashboard["title"], color=TEXT, fontsize=16, weight="bold", va="center")
    fig.text(0.99, 1 - 0.3 / fig_h, subtitle, color=MUTED, fontsize=9, va="center", ha="right")

    def box(gp):
        pad = 0.004
        x0, w = gp["x"] / 24 + pad, gp["w"] / 24 - 2 * pad
        y0 = top - (gp["y"] + gp["h"]) / rows * (top - 0.02)
        h = gp["h"] / rows * (top - 0.02)
        return x0, y0 + pad, w, h - 2 * pad

    for p in panels:
        x0, y0, w, h = box(p["gridPos"])
        frame = fig.add_axes((x0, y0, w, h), facecolor=PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for s in frame.spines.values():
            s.set_color(GRID)
        frame.text(0.01, 0.97, p["title"], transform=frame.transAxes, color=TEXT, fontsize=10, weight="bold",
                   va="top")
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit")
        series = []
        for t in p["targets"]:
            for labels, values in fetch(expand(t["expr"], step, scrape), start, end, step):
                series.append((legend(t.get("legendFormat", ""), labels), values))
        if p["type"] == "stat":
            last = sum(v[-1][1] for _, v in series if v) if series else float("nan")
            frame.text(0.5, 0.42, fmt_value(last, unit), transform=frame.transAxes, color="#73bf69",
                       fontsize=26, weight="bold", ha="center", va="center")
            if series and series[0][1]:
                spark = fig.add_axes((x0, y0, w, h * 0.35), facecolor="none")
                ts, vs = zip(*series[0][1])
                spark.fill_between(ts, vs, color="#73bf69", alpha=0.25, linewidth=0)
                spark.set_xlim(start, end)
                spark.axis("off")
            continue
        ax = fig.add_axes((x0 + w * 0.07, y0 + h * 0.2, w * 0.9, h * 0.66), facecolor=PANEL)
        ax.tick_params(colors=MUTED, labelsize=7)
        for s in ax.spines.values():
            s.set_visible(False)
        ax.grid(True, color=GRID, linewidth=0.5)
        ax.set_xlim(datetime.fromtimestamp(start, timezone.utc), datetime.fromtimestamp(end, timezone.utc))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=timezone.utc))
        if unit == "s":
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_value(v, "s")))
        elif unit == "reqps":
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}/s"))
        bars = defaults.get("custom", {}).get("drawStyle") == "bars"
        bottom: dict[float, float] = {}
        for i, (name, values) in enumerate(sorted(series, key=lambda s: s[0])):
            color = PALETTE[i % len(PALETTE)]
            values = [(t, v) for t, v in values if v == v]  # NaN: no sample (histogram_quantile of nothing)
            if not values:
                continue
            ts = [datetime.fromtimestamp(t, timezone.utc) for t, _ in values]
            vs = [v for _, v in values]
            if bars:
                base = [bottom.get(t, 0.0) for t, _ in values]
                ax.bar(ts, vs, bottom=base, width=step / 86400 * 0.9, color=color, label=name, alpha=0.85)
                for (t, v) in values:
                    bottom[t] = bottom.get(t, 0.0) + v
            else:
                ax.plot(ts, vs, color=color, linewidth=1.2, label=name)
                ax.fill_between(ts, vs, color=color, alpha=0.08, linewidth=0)
        ax.set_ylim(bottom=0)
        if series:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=7, frameon=False,
                      labelcolor=TEXT)
        else:
            ax.text(0.5, 0.5, "No data", transform=ax.transAxes, color=MUTED, ha="center")
    fig.savefig(out, dpi=80, facecolor=BG)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--start", type=float, required=True, help="unix time")
    ap.add_argument("--end", type=float, required=True, help="unix time")
    ap.add_argument("--step", type=float, default=4.0)
    ap.add_argument("--scrape-interval", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=Path("asyncpay-dashboard.png"))
    args = ap.parse_args()
    render(json.loads(DASHBOARD.read_text()), lambda e, s, t, st: query_range(args.prometheus, e, s, t, st),
           args.start, args.end, args.step, args.scrape_interval, args.out)


if __name__ == "__main__":
    main()
