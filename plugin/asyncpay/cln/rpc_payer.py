"""RPC methods of the payer role (docs/rpc.md): ``asyncpay-pay``,
``asyncpay-listpays``."""

from __future__ import annotations

import threading
from collections.abc import Callable

from pyln.client import Plugin

from ..payer import PayError
from . import params
from .errors import NotFound, ParamError

MAX_TIMEOUT = 24 * 3600


def register(plugin: Plugin, get_node: Callable[[], object]) -> None:
    plugin.add_notification_topic("asyncpay_payment_sent")
    plugin.add_notification_topic("asyncpay_payment_failed")

    def pay(plugin, request, offer, amount_msat=None, payer_note=None, timeout=None):
        """Pay a BOLT 12 offer (static invoices included); waits up to timeout seconds, then answers pending."""
        node = get_node()
        offer = params.text("offer", offer, max_len=8192)
        if amount_msat is not None:
            amount_msat = params.integer("amount_msat", amount_msat, 1, 21_000_000 * 10**11)
        if payer_note is not None:
            payer_note = params.text("payer_note", payer_note, max_len=512, allow_empty=True)
        wait = node.payer.config.payer_timeout if timeout is None else params.integer("timeout", timeout, 0,
                                                                                       MAX_TIMEOUT)
        with node.lock:  # a bad offer or amount is a parameter error, answered now
            try:
                node.payer.core.check(offer, amount_msat)
            except PayError as e:
                raise ParamError(f"offer: {e}" if "amount" not in str(e) else f"amount_msat: {e}") from None

        def work():
            try:
                request.set_result(node.payer.pay(offer, amount_msat, payer_note, wait))
            except PayError as e:
                request.set_exception(ParamError(f"offer: {e}"))
            except Exception as e:  # answered briefly and logged by the dispatcher
                request.set_exception(e)

        threading.Thread(target=work, daemon=True, name="asyncpay-pay").start()

    def listpays(plugin, id=None):
        """Payments made with asyncpay-pay, or the one with this id."""
        node = get_node()
        if id is not None:
            id = params.text("id", id, max_len=64)
        with node.lock:
            if id is None:
                return {"pays": [r.view() for r in node.payer.core.records.all()]}
            row = node.payer.core.records.get(id)
        if row is None:
            raise NotFound(f"no payment {id}")
        return {"pays": [row.view()]}

    plugin.add_method("asyncpay-pay", pay, background=True)
    plugin.add_method("asyncpay-listpays", listpays)
