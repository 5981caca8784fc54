"""The Grafana dashboard (docs/grafana/asyncpay.json, issue 25): valid
dashboard JSON over the metrics the plugin exports, with the panels an
operator needs (docs/metrics.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from asyncpay.cln import metrics as cm
from test_hold import hook_params
from test_recipient_flow import Flow

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = json.loads((ROOT / "docs" / "grafana" / "asyncpay.json").read_text())
EXPRS = [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def exported(tmp_path) -> set[str]:
    """Sample names the plugin exports (a node holding an HTLC, with a static invoice stored)."""
    flow = Flow(tmp_path)
    flow.setserver()
    flow.offer()
    flow.lsp.hold.on_htlc(hook_params(flow), lambda answer: None)
    flow.lsp.books.bump("lsps5_sent_failed")  # counters exist once counted
    flow.lsp.books.bump("lsps5_given_up")
    flow.lsp.books.bump("invoices_served")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(cm.NodeCollector(flow.lsp))
    return {s.name for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}


def test_the_dashboard_is_grafana_dashboard_json_with_a_datasource_variable():
    assert isinstance(DASHBOARD["schemaVersion"], int) and DASHBOARD["schemaVersion"] >= 36
    assert DASHBOARD["title"] and DASHBOARD["uid"]
    [ds] = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource"]
    assert ds["query"] == "prometheus"
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for p in DASHBOARD["panels"]:
        assert p["type"] in ("timeseries", "stat") and p["title"], p
        gp = p["gridPos"]
        assert 0 <= gp["x"] and gp["x"] + gp["w"] <= 24 and gp["h"] > 0, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": f"${{{ds['name']}}}"}, p["title"]
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"]), p["title"]
    # No two panels overlap on the grid.
    cells = set()
    for p in DASHBOARD["panels"]:
        gp = p["gridPos"]
        mine = {(x, y) for x in range(gp["x"], gp["x"] + gp["w"]) for y in range(gp["y"], gp["y"] + gp["h"])}
        assert not cells & mine, p["title"]
        cells |= mine


def test_every_metric_the_dashboard_queries_is_exported(tmp_path):
    names = exported(tmp_path)
    used = {m for e in EXPRS for m in re.findall(r"\basyncpay_[a-z0-9_]+", e)}
    assert used
    assert sorted(m for m in used if m not in names) == []


def test_the_dashboard_shows_what_an_operator_watches():
    text = " ".join(EXPRS)
    titles = " ".join(p["title"].lower() for p in DASHBOARD["panels"])
    assert "rate(asyncpay_invoices_served_total" in text and "served per second" in titles
    assert "histogram_quantile(0.99" in text and 'reply="static_invoice"' in text  # latency percentiles
    assert "asyncpay_held_htlcs" in text and "asyncpay_held_htlcs_oldest_age_seconds" in text
    assert "asyncpay_mailbox_messages" in text and "asyncpay_mailbox_peer_messages_max" in text
    assert "asyncpay_webhook_calls_total" in text and "webhook" in titles
    assert "asyncpay_payment_state_changes_total" in text and "outcome" in titles
    assert all("$__rate_interval" in e or "increase(" in e for e in EXPRS if "rate(" in e)
