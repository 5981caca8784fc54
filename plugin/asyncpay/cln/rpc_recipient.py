"""RPC methods of the recipient role (docs/rpc.md): ``asyncpay-setserver``,
``asyncpay-offer``, ``asyncpay-listoffers``, ``asyncpay-listreceived``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pyln.client import Plugin

from ..blinded_path import BlindedPath
from ..endpoint import Dropped
from ..recipient.records import OfferRow, OfferServer
from ..wire import WireError
from . import params
from .errors import NotReady, ParamError


def servers_view(rows: list[OfferServer]) -> list[dict]:
    """Each server's part in an offer: has it confirmed our static invoice?"""
    return [{"id": r.server or None, "confirmed": r.persisted_at is not None, "persisted_at": r.persisted_at}
            for r in rows]


def offer_view(row: OfferRow | None, slot: int) -> dict:
    if row is None:
        return {"bolt12": None, "slot": slot, "status": "pending", "invoice_expires_at": None}
    return {
        "bolt12": row.bolt12,
        "slot": row.slot,
        "status": "ready" if row.state == "ready" else "pending",
        "invoice_expires_at": row.invoice_expires_at,
    }


def register(plugin: Plugin, get_node: Callable[[], object]) -> None:
    plugin.add_notification_topic("asyncpay_payment_received")

    def setserver(plugin, paths):
        """Use the static invoice servers whose asyncpay-recipientpaths printed these paths (paths[].hex); a
        server's paths replace its earlier ones only (at most 3 servers)."""
        node = get_node()
        blobs = params.hexlist("paths", paths, max_items=16)
        try:
            decoded = [BlindedPath.decode(b) for b in blobs]
        except WireError as e:
            raise ParamError(f"paths: not a blinded path: {e}") from None
        try:
            with node.lock:
                servers = node.recipient.core.set_server(decoded, int(time.time()))
                count = len(node.recipient.core.server_paths())
        except ValueError as e:
            raise ParamError(f"paths: {e}") from None
        return {"paths": count, "servers": [s.hex() for s in servers]}

    def offer(plugin, request, description=None, amount_msat=None, slot=0):
        """Get this node's async offer for slot (default 0), waiting a few seconds for the server."""
        node = get_node()
        if description is not None:
            description = params.text("description", description, max_len=640, allow_empty=True)
        if amount_msat is not None:
            amount_msat = params.integer("amount_msat", amount_msat, 1, 21_000_000 * 10**11)
        slot = params.integer("slot", slot, 0, 0xFFFF)
        if amount_msat is not None and description is None:
            raise ParamError("description is required when amount_msat is given (BOLT 12)")
        if not node.recipient.core.server_paths():
            raise NotReady("no static invoice server: call asyncpay-setserver first")

        def work():
            try:
                row = node.recipient.offer(slot, description, amount_msat, node.recipient.config.recipient_offer_wait)
                request.set_result(offer_view(row, slot))
            except Dropped as e:
                request.set_exception(NotReady(f"cannot ask the server for offer paths: {e}"))
            except Exception as e:  # answered briefly and logged by the dispatcher
                request.set_exception(e)

        threading.Thread(target=work, daemon=True, name="asyncpay-offer").start()

    def listoffers(plugin):
        """The async offers of this node, one per slot."""
        node = get_node()
        with node.lock:
            rows = [(r, node.recipient.core.records.servers_of(r.slot)) for r in node.recipient.core.records.offers()]
        return {"offers": [{**offer_view(r, r.slot), "description": r.description, "amount_msat": r.amount_msat,
                            "persisted_at": r.persisted_at, "paths_expires_at": r.paths_expires_at,
                            "servers": servers_view(servers)}
                           for r, servers in rows]}

    def listreceived(plugin):
        """Payments received over our async offers."""
        node = get_node()
        with node.lock:
            return {"payments": node.recipient.core.records.payments()}

    plugin.add_method("asyncpay-setserver", setserver)
    plugin.add_method("asyncpay-offer", offer, background=True)
    plugin.add_method("asyncpay-listoffers", listoffers)
    plugin.add_method("asyncpay-listreceived", listreceived)
