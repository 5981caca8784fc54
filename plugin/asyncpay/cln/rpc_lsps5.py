"""RPC methods of the LSPS5 webhook service (docs/rpc.md):
``asyncpay-listwebhooks``, ``asyncpay-delwebhook``."""

from __future__ import annotations

from collections.abc import Callable

from pyln.client import Plugin

from . import params
from .errors import NotFound


def register(plugin: Plugin, get_node: Callable[[], object]) -> None:
    def listwebhooks(plugin, peer_id=None):
        """Webhooks registered with lsps5.set_webhook, optionally for one peer."""
        node = get_node()
        peer = None if peer_id is None else params.node_id("peer_id", peer_id)
        with node.lock:
            rows = node.lsps5.service.all() if peer is None else node.lsps5.service.of(peer)
        return {"webhooks": [r.view() for r in rows]}

    def delwebhook(plugin, peer_id, app_name):
        """Remove the webhook a peer registered under app_name (its waiting calls too)."""
        node = get_node()
        peer = params.node_id("peer_id", peer_id)
        name = params.text("app_name", app_name, max_len=256, allow_empty=True)
        if not node.lsps5.forget_webhook(peer, name):
            raise NotFound(f"no webhook {name!r} for {peer}")
        return {"deleted": {"peer_id": peer, "app_name": name}}

    plugin.add_method("asyncpay-listwebhooks", listwebhooks)
    plugin.add_method("asyncpay-delwebhook", delwebhook)
