"""The payer role's adapter: makes the payments the core asks for.

* a BOLT 12 invoice (TLV 66): CLN's own ``xpay`` pays it;
* a static-invoice payment: a route to the blinded path's introduction node
  from askrene's ``getroutes`` (our channels included), the onion built by
  ``payment/route.py``, sent with ``injectpaymentonion`` (design §8), which
  blocks until the payment settles; the next payment path on failure.
  askrene's route, then the built onion, are checked against the payment's
  ``Budget`` (``payer/budget.py``) before anything is injected.

On start, payments that were paying when we stopped are looked up in
``listsendpays``: a completed one is recorded, a pending one waited for,
one never sent is sent again (with the same preimage: it is on disk).
"""

from __future__ import annotations

import os
import threading
import time
import traceback

from pyln.client import RpcError

from ..actions import InjectOnion
from ..crypto import CryptoError
from ..endpoint import Delivered, Dropped
from ..payer import KINDS, Action, Payer, PayerConfig, PayInvoice, PaymentRow, PayStatic
from ..payer.budget import OverBudget, check_route, check_sent, screen
from ..payment.hold_request import HOLD_REQUEST, read_hold_confirmed
from ..payment.route import RouteHop, blinded_payment_onion
from .convert import msat, parse_scid
from .role import Host, Role

PAYER_KEY_LABEL = "asyncpay/payer/payer-key/v1"
TICK = 0.5  # seconds between two looks at unanswered requests and grace periods
# lightningd records a payment part before its HTLC is committed; killed in
# between, it comes back with the part "pending" in listsendpays and no HTLC
# in any channel, and nothing ever resolves it (CLN v26.06; the chaos run,
# docs/chaos.md). After a restart every committed HTLC is restored before
# plugins start, so a part still pending with no HTLC of its payment on
# several looks in a row is lost: no HTLC, no money can move.
ORPHAN_LOOKS = 3


class PayerRole(Role):
    KINDS = KINDS

    def __init__(self, node: Host) -> None:
        super().__init__(node)
        self.config: PayerConfig = node.config_for(PayerConfig)
        self.core = Payer(node.store, node.endpoint, self.config, node.secret(PAYER_KEY_LABEL),
                          node.resolve_intro, node.chain)
        self.changed = threading.Condition(node.lock)  # a payment's state changed
        self._stop = threading.Event()
        self._groupid = int(time.time())  # injectpaymentonion's groupid: unique per attempt

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self.resume()
        threading.Thread(target=self._ticker, daemon=True, name="payer-tick").start()

    def _ticker(self) -> None:
        # A failed pass (a store or RPC error) is logged and the next one runs:
        # without the ticker no request is re-sent and no payment times out.
        while not self._stop.wait(TICK):
            try:
                self.tick(int(time.time()))
            except Exception:
                self.node.log(f"payer tick failed: {traceback.format_exc()}", level="warn")

    def tick(self, now: int) -> None:
        with self.node.lock:
            actions, failed = self.core.tick(now)
        for row in failed:
            self._notify_failed(row)
        self.run(actions)

    def resume(self) -> None:
        """Payments that were paying when we stopped (their HTLCs may be out),
        and those waiting for a release (the held_htlc_available sent before
        may be lost: it goes once more)."""
        with self.node.lock:
            rows = self.core.paying()
            onions = self.core.resume_holds(int(time.time()))
        self.run(onions)
        for row in rows:
            assert row.payment_hash is not None
            try:
                pays = self.node.rpc.call("listsendpays", {"payment_hash": row.payment_hash.hex()})["payments"]
            except RpcError:
                pays = []
            done = [p for p in pays if p.get("status") == "complete"]
            if done:
                self._paid(row.id, bytes.fromhex(done[0]["payment_preimage"]))
            elif any(p.get("status") == "pending" for p in pays):
                threading.Thread(target=self._wait_pending, args=(row,), daemon=True).start()
            else:
                with self.node.lock:
                    action = self.core.retry(row)
                self.run([action])

    def _wait_pending(self, row: PaymentRow) -> None:
        """Follow HTLCs sent before a restart (ours, or xpay's parts) until
        one completes, none is left pending, or the pending ones have no HTLC
        (ORPHAN_LOOKS)."""
        assert row.payment_hash is not None
        orphan = 0
        while not self._stop.wait(2 * TICK):
            try:
                pays = self.node.rpc.call("listsendpays", {"payment_hash": row.payment_hash.hex()})["payments"]
            except RpcError:
                continue
            done = [p for p in pays if p.get("status") == "complete"]
            if done:
                self._paid(row.id, bytes.fromhex(done[0]["payment_preimage"]))
                return
            if not any(p.get("status") == "pending" for p in pays):
                self._failed(row.id, "the payment failed while we were stopped")
                return
            orphan = 0 if self._htlc_out(row.payment_hash.hex()) else orphan + 1
            if orphan >= ORPHAN_LOOKS:
                self._failed(row.id, "its HTLC was lost when lightningd stopped before committing it")
                return

    def _htlc_out(self, payment_hash: str) -> bool:
        """An HTLC of this payment leaves us in some channel (or we cannot tell)."""
        try:
            channels = self.node.rpc.call("listpeerchannels")["channels"]
        except RpcError:
            return True
        return any(h.get("payment_hash") == payment_hash and h.get("direction") == "out"
                   for c in channels for h in c.get("htlcs") or [])

    # -- messages and actions ------------------------------------------------------

    def on_message(self, d: Delivered, now: int) -> list[InjectOnion]:
        before = self.core.records.get(d.owner)
        actions = self.core.handle(d, now)
        self.changed.notify_all()
        after = self.core.records.get(d.owner)
        if after is not None and after.state == "failed" and (before is None or before.state != "failed"):
            # e.g. no path within our limits; notified outside the node lock, as the others
            threading.Thread(target=self._notify_failed, args=(after,), daemon=True).start()
        onions = [a for a in actions if isinstance(a, InjectOnion)]
        self.run([a for a in actions if not isinstance(a, InjectOnion)])
        return onions

    def run(self, actions: list[Action]) -> None:
        onions = [a for a in actions if isinstance(a, InjectOnion)]
        if onions:
            self.node.perform(onions)
        for a in actions:
            if isinstance(a, PayInvoice):
                threading.Thread(target=self._xpay, args=(a,), daemon=True, name="asyncpay-xpay").start()
            elif isinstance(a, PayStatic):
                threading.Thread(target=self._pay_static, args=(a,), daemon=True, name="asyncpay-pay").start()

    def _xpay(self, a: PayInvoice) -> None:
        try:
            # xpay keeps to the same caps as our own static-invoice payments.
            res = self.node.rpc.call("xpay", {"invstring": a.invoice, "maxfee": a.max_fee_msat,
                                              "maxdelay": a.max_delay})
            self._paid(a.payment_id, bytes.fromhex(res["payment_preimage"]))
        except (RpcError, KeyError) as e:
            self._failed(a.payment_id, f"xpay: {_message(e)}")

    def _pay_static(self, a: PayStatic) -> None:
        """Each payment path in turn until one settles (those over our
        limits were left out by the core, with their reasons)."""
        reasons = list(a.skipped)
        for path in a.paths:
            try:
                preimage = self._inject(a, path)
            except OverBudget as e:
                self.node.store.bump("payer_paths_over_budget")
                reasons.append(str(e))
                continue
            except (RpcError, KeyError, ValueError, Dropped, CryptoError) as e:
                reasons.append(_message(e))
                continue
            if preimage is not None:
                self._paid(a.payment_id, preimage)
                return
        self._failed(a.payment_id, "every payment path failed: " + "; ".join(reasons))

    def _inject(self, a: PayStatic, path) -> bytes | None:
        node = self.node
        intro = node.resolve_intro(path.path.introduction)
        if intro is None:
            raise Dropped("unresolvable_path", path.path.introduction.describe())
        budget = a.budget
        limits = screen(path, a.amount_msat, budget)  # never asks askrene for a path over the cap
        height = int(node.rpc.getinfo()["blockheight"])
        # As xpay: the next block's height; a held payment carries the hold's budget on top.
        final_cltv = budget.final_cltv(height)
        routes = node.rpc.call("getroutes", {
            "source": node.node_id.hex(), "destination": intro.hex(), "amount_msat": limits.amount_msat,
            "layers": ["auto.localchans", "auto.sourcefree"], "maxfee_msat": limits.maxfee_msat,
            "final_cltv": limits.final_cltv, "maxdelay": limits.maxdelay})["routes"]
        # v26.06 names (askrene child.c). The node that forwards over a channel
        # is told what leaves it (amount_out, cltv_out: what xpay puts in
        # each payload); our own first channel is free (auto.sourcefree), so
        # what we inject equals what leaves us. CLTVs are relative to the
        # final one.
        route = [RouteHop(parse_scid(h["short_channel_id_dir"].split("/")[0]), bytes.fromhex(h["node_id_out"]),
                          msat(h["amount_out_msat"]), int(h["cltv_out"]) + final_cltv) for h in routes[0]["path"]]
        check_route(path, a.amount_msat, budget, route, height)  # askrene's route is within the budget
        extra = None
        if a.hold is not None and a.lsp is not None:
            if route[0].next_node_id != a.lsp:
                raise Dropped("no_route_via_lsp", "the route does not start at our LSP")
            extra = {a.lsp: {HOLD_REQUEST: a.hold.encode()}}
        built = blinded_payment_onion(os.urandom(32), node.node_id, route, path, a.amount_msat, final_cltv,
                                      a.payment_hash, keysend_preimage=a.preimage, invoice_request=a.invoice_request,
                                      extra=extra)
        # The last guard, on what we hand to lightningd: amount over the payment's is all fee.
        check_sent(built.amount_msat, built.cltv_expiry, a.amount_msat, budget, height)
        self._groupid += 1
        res = node.rpc.call("injectpaymentonion", {
            "onion": built.onion.hex(), "payment_hash": a.payment_hash.hex(), "amount_msat": built.amount_msat,
            "cltv_expiry": built.cltv_expiry, "partid": 0, "groupid": self._groupid})
        return bytes.fromhex(res["payment_preimage"])

    def on_custommsg(self, peer_id: str, payload_hex: str) -> None:
        """``held`` only on our LSP's word (``hold_request.HOLD_CONFIRMED``),
        never on our HTLC's lock-in alone: an LSP that refuses the hold fails
        a locked-in HTLC a moment later. From then on we may go offline."""
        if not self.config.payer_lsp or peer_id != self.config.payer_lsp:
            return
        try:
            payment_hash = read_hold_confirmed(bytes.fromhex(payload_hex))
        except ValueError:
            return
        if payment_hash is None:
            return
        with self.node.lock:
            self.core.hold_confirmed(payment_hash, int(time.time()))
            self.changed.notify_all()

    # -- outcomes ------------------------------------------------------------------

    def _paid(self, payment_id: str, preimage: bytes) -> None:
        with self.node.lock:
            row = self.core.paid(payment_id, preimage, int(time.time()))
            self.changed.notify_all()
        if row is not None:
            self.node.notify("asyncpay_payment_sent", row.view())

    def _failed(self, payment_id: str, reason: str) -> None:
        with self.node.lock:
            row = self.core.pay_failed(payment_id, reason, int(time.time()))
            self.changed.notify_all()
        if row is not None:
            self._notify_failed(row)

    def _notify_failed(self, row: PaymentRow) -> None:
        self.node.notify("asyncpay_payment_failed", row.view())

    # -- the RPC -----------------------------------------------------------------

    def pay(self, offer: str, amount_msat: int | None, payer_note: str | None, timeout: float) -> dict:
        """``asyncpay-pay``: start, then wait until done or ``timeout``."""
        with self.node.lock:
            row, actions = self.core.start(offer, amount_msat, payer_note, int(time.time()))
        self.run(actions)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                row = self.core.records.get(row.id) or row
                left = deadline - time.monotonic()
                if row.status != "pending" or left <= 0:
                    return row.view()
                self.changed.wait(min(left, TICK))

    def status(self) -> dict:
        c = self.node.store.counters()
        return {"payer": {
            "sent": c.get("payer_payments_sent", 0), "failed": c.get("payer_payments_failed", 0),
            "paths_over_budget": c.get("payer_paths_over_budget", 0), "held_resent": c.get("payer_held_resent", 0),
            "dropped": {k[len("payer_dropped_"):]: v for k, v in c.items() if k.startswith("payer_dropped_")},
        }}


def _message(e: Exception) -> str:
    if isinstance(e, RpcError):
        return str((e.error or {}).get("message", e))
    return str(e)
