"""RPC methods of the holding LSP (docs/rpc.md): ``asyncpay-listheld``,
``asyncpay-failheld``."""

from __future__ import annotations

from collections.abc import Callable

from pyln.client import Plugin

from . import params
from .errors import NotFound


def register(plugin: Plugin, get_node: Callable[[], object]) -> None:
    def listheld(plugin):
        """HTLCs this node holds (or held) for senders until their recipients release them."""
        node = get_node()
        with node.lock:
            return {"held": [r.view() for r in node.hold.core.records.all()]}

    def failheld(plugin, payment_hash):
        """Fail back every held HTLC of this payment_hash now."""
        node = get_node()
        ph = params.hexbytes("payment_hash", payment_hash, 32)
        failed = node.hold.fail(ph)
        if not failed:
            raise NotFound(f"no held HTLC for payment_hash {ph.hex()}")
        return {"failed": [r.view() for r in failed]}

    plugin.add_method("asyncpay-listheld", listheld)
    plugin.add_method("asyncpay-failheld", failheld)
