"""JSON shapes returned by the RPC methods (documented in docs/rpc.md)."""

from __future__ import annotations

from ..blinded_path import BlindedPath
from ..offers import StaticInvoice
from ..storage import shown
from ..wire import WireError


def recipient_paths(recipient_id: str, paths: list[BlindedPath], expires_at: int) -> dict:
    return {
        "recipient_id": recipient_id,
        "expires_at": expires_at,
        "paths": [{"hex": p.encode().hex(), "decoded": p.to_json()} for p in paths],
    }


def invoice_row(row: dict, now: int) -> dict:
    out = {
        "recipient_id": row["recipient_id"],
        "invoice_slot": row["invoice_slot"],
        "offer_id": row["offer_id"].hex(),
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "expired": now >= row["expires_at"],
        "updated_at": row["updated_at"],
        "served": row["served"],
        "invoice": row["invoice"].hex(),
    }
    try:
        inv = StaticInvoice.decode(row["invoice"])
        out["offer_description"] = inv.offer_description
        out["offer_amount_msat"] = inv.offer_amount
        out["node_id"] = inv.invoice_node_id.hex()
    except WireError:
        out["offer_description"] = None
    return out


def status(node, now: int) -> dict:
    node.books.flush()  # counters are written off the answers' path: bring them in first
    counters = node.store.counters()
    dropped = {k[len("dropped_"):]: v for k, v in counters.items() if k.startswith("dropped_")}
    mdropped = {k[len("mailbox_dropped_"):]: v for k, v in counters.items() if k.startswith("mailbox_dropped_")}
    messages, size = node.lsp.mailbox.total  # kept by the mailbox: no count of its rows under the node lock
    return {
        "endpoint_id": node.endpoint.public_key.hex(),
        "database": shown(node.db_path),  # no password in an RPC answer either
        "uptime": now - node.started_at,
        "server": {
            "recipients": node.store.row_count("recipients"),
            "invoices": node.store.row_count("invoices"),
            "offer_paths_sent": counters.get("offer_paths_sent", 0),
            "invoices_stored": counters.get("invoices_stored", 0),
            "invoices_served": counters.get("invoices_served", 0),
            "rate_limited": dropped.get("rate_limited_persist", 0) + dropped.get("rate_limited_serve", 0),
            "dropped": dropped,
        },
        "mailbox": {
            "messages": messages,
            "bytes": size,
            "buffered": counters.get("mailbox_buffered", 0),
            "flushed": counters.get("mailbox_flushed", 0),
            "expired": counters.get("mailbox_expired", 0),
            "flush_failed": counters.get("mailbox_flush_failed", 0),
            "duplicates": counters.get("mailbox_duplicate", 0),
            "rate_limited": mdropped.get("rate_limited", 0),
            "dropped": mdropped,
            "flushing": sorted(node.lsp.flushing),
        },
        "sent": {k[len("sent_"):]: v for k, v in counters.items() if k.startswith("sent_")},
        **node.status(),  # each other role's own part
    }
