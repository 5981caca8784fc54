"""The recipient role's adapter: lightningd lookups, timers and the claim.

What it reads from lightningd (v26.06): our channel from the LSP in
``listpeerchannels`` (the scid the LSP forwards by: ``alias.remote`` for an
unannounced channel, else the real one; the LSP's fees and limits towards us in
``updates.remote``), the block height from ``getinfo``, and, in
``htlc_accepted``, the raw ``onion.payload`` (with its BigSize length
prefix: ``common/sphinx.c``) and ``htlc.extra_tlvs`` (update_add_htlc's
TLVs, the path key among them as type 0). A blinded final hop carrying a
keysend preimage is not parsed by lightningd (5482373484 is even and unknown
to it), so we decrypt our ``encrypted_recipient_data`` with
``decryptencrypteddata`` (design §8).
"""

from __future__ import annotations

import threading
import time
import traceback

from pyln.client import RpcError

from ..actions import InjectOnion
from ..blinded_path import EncryptedData
from ..endpoint import Delivered
from ..recipient import KINDS, Claimer, Fail, Htlc, LspChannel, Recipient, RecipientConfig, Resolve, Snapshot, Wait
from ..recipient.claim import failure
from ..recipient.recipient import HELD, OFFER_PATHS, SERVERS_WAIT
from ..wire import WireError
from .convert import hop_payload, msat, parse_scid, path_key_of
from .role import AnswerOnce, Host, Respond, Role

# What a held_htlc_available is handled with (Recipient._release reads no snapshot).
RELEASE_SNAPSHOT = Snapshot(None, 0)

OFFER_KEY_LABEL = "asyncpay/recipient/offer-key/v1"


class RecipientRole(Role):
    KINDS = KINDS

    def __init__(self, node: Host) -> None:
        super().__init__(node)
        self.config: RecipientConfig = node.config_for(RecipientConfig)
        self.core = Recipient(node.store, node.endpoint, self.config, node.secret(OFFER_KEY_LABEL),
                              node.resolve_intro, node.chain, books=node.books)
        self.claimer = Claimer(node.store, self.config, node.chain)
        self.changed = threading.Condition(node.lock)  # an offer's state changed
        # HTLCs taken and not answered yet (parts of multi-part payments): responder, payment hash.
        self.waiting: dict[tuple[str, int], tuple[AnswerOnce, bytes]] = {}
        self._stop = threading.Event()
        self._start_serve_due = True  # the re-serve of our start, sent once the LSP is connected
        self._wake = threading.Event()  # a multi-part payment started waiting: re-arm the MPP timer
        self.height = 0  # the last block height lightningd told us (block_added, htlc_accepted)

    # -- lightningd lookups ------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The height and our channel from each server's node (payment and
        held-HTLC paths go through every one of them)."""
        height = int(self.node.rpc.getinfo().get("blockheight", 0))
        channels = tuple(c for c in (self.lsp_channel(lsp) for lsp in self.core.lsp_ids()) if c is not None)
        return Snapshot(channels[0] if channels else None, height, channels)

    def lsp_channel(self, lsp: bytes) -> LspChannel | None:
        chans = self.node.rpc.call("listpeerchannels", {"id": lsp.hex()}).get("channels", [])
        for ch in chans:
            if ch.get("state") != "CHANNELD_NORMAL":
                continue
            # lightningd forwards over an unannounced channel only by the alias
            # it gave (our alias.remote): its real scid would leak (peer_htlcs.c).
            alias = (ch.get("alias") or {}).get("remote")
            scid = alias if ch.get("private") and alias else ch.get("short_channel_id") or alias
            remote = (ch.get("updates") or {}).get("remote")
            if not scid or not remote:
                continue
            return LspChannel(
                lsp_id=lsp, scid=parse_scid(scid),
                fee_base_msat=msat(remote.get("fee_base_msat")),
                fee_proportional_millionths=int(remote.get("fee_proportional_millionths", 0)),
                cltv_expiry_delta=int(remote.get("cltv_expiry_delta", 0)),
                htlc_minimum_msat=msat(remote.get("htlc_minimum_msat")),
                htlc_maximum_msat=msat(remote.get("htlc_maximum_msat")),
            )
        return None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._timer, daemon=True, name="recipient-refresh").start()
        threading.Thread(target=self._mpp_timer, daemon=True, name="recipient-mpp").start()

    def _mpp_timer(self) -> None:
        """Fail multi-part payments when ``recipient_mpp_timeout`` seconds are up,
        not at the next block (which may be an hour away)."""
        try:
            height = int(self.node.rpc.getinfo().get("blockheight", 0))
            with self.node.lock:
                self.height = max(self.height, height)
        except Exception:
            self.node.log(f"recipient: no block height yet: {traceback.format_exc()}", level="warn")
        while not self._stop.is_set():
            try:
                with self.node.lock:
                    deadline = self.claimer.next_deadline()
            except Exception:  # a store error: try again soon, the timer must not die
                self.node.log(f"recipient: MPP deadline unknown: {traceback.format_exc()}", level="warn")
                self._stop.wait(1.0)
                continue
            # At least half a second between two passes: a set that cannot be expired must not spin.
            delay = 3600.0 if deadline is None else max(0.5, deadline - time.time())
            self._wake.wait(min(delay, 3600.0))
            self._wake.clear()
            if deadline is not None and time.time() >= deadline:
                self.expire(int(time.time()))

    def _timer(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh_due()
            except Exception:
                self.node.log(f"recipient: refresh failed: {traceback.format_exc()}", level="warn")
            self._stop.wait(self.config.recipient_refresh_interval)

    def refresh_due(self) -> None:
        """One pass of the refresh timer. On start we re-serve whatever we publish,
        once the LSP is connected: our serve_static_invoice is not kept for an offline
        first hop, so sent before that it would be lost, and the reconnect's re-serve
        may be rate-limited (``recipient_reserve_interval``)."""
        with self.node.lock:
            force = self._start_serve_due and self._lsp_connected()
            if force:
                self._start_serve_due = False
        self.refresh(force)

    def _lsp_connected(self) -> bool:
        """Some server is connected (nothing to serve to yet counts: refresh says why)."""
        lsps = self.core.lsp_ids()
        try:
            return not lsps or any(self.node.is_connected(lsp.hex()) for lsp in lsps)
        except RpcError:
            return True

    def refresh(self, force: bool = False, reconnected: bool = False) -> None:
        try:
            snap = self.snapshot()
            with self.node.lock:
                actions = self.core.refresh(int(time.time()), snap, force, reconnected)
            self.node.perform(actions)
        except Exception:
            self.node.log(f"recipient refresh failed: {traceback.format_exc()}", level="warn")

    def on_connect(self, peer_id: str) -> None:
        if any(lsp.hex() == peer_id for lsp in self.core.lsp_ids()):
            # Back in touch with the server: re-serve, after connectd settles (the
            # start's re-serve if it is still due, else one the reserve interval limits).
            with self.node.lock:
                start, self._start_serve_due = self._start_serve_due, False
            threading.Timer(1.0, self.refresh, kwargs={"force": start, "reconnected": not start}).start()

    def on_channel_state(self, peer_id: str, old_state: str | None, new_state: str | None) -> None:
        """A channel with one of our servers became usable or stopped being
        so: refresh (the static invoices it serves get our current paths),
        after lightningd settled."""
        if "CHANNELD_NORMAL" not in (old_state, new_state) or old_state == new_state:
            return
        if any(lsp.hex() == peer_id for lsp in self.core.lsp_ids()):
            threading.Timer(1.0, self.refresh).start()

    # -- messages ----------------------------------------------------------------

    def on_message(self, d: Delivered, now: int) -> list[InjectOnion]:
        # A release needs neither the height nor the LSP channel: no RPC on its path.
        snap = RELEASE_SNAPSHOT if d.kind == HELD else self.snapshot()
        actions = self.core.handle(d, now, snap)
        self.changed.notify_all()
        if d.kind == OFFER_PATHS and not actions:
            # Another server's paths are still to come: the offer is built without them
            # after SERVERS_WAIT seconds, not at the next hourly refresh.
            threading.Timer(SERVERS_WAIT + 1, self.refresh).start()
        return actions

    def offer(self, slot: int, description: str | None, amount_msat: int | None, wait: float) -> dict:
        """``asyncpay-offer``: start the slot's handshake if needed and wait for it."""
        now = int(time.time())
        with self.node.lock:
            actions = self.core.request_offer(slot, description, amount_msat, now)
        self.node.perform(actions)
        deadline = time.monotonic() + wait
        with self.changed:
            while True:
                row = self.core.records.offer(slot)
                if row is not None and row.state == "ready" and row.bolt12:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(min(left, 0.5))
        return row

    # -- payments ----------------------------------------------------------------

    def on_htlc(self, params: dict, respond: Respond) -> bool:
        """Take an HTLC paying one of our paths. Once taken it is always answered
        once: an error after that fails it, unless its preimage is already out
        (then it, and every waiting part of its payment, is resolved)."""
        onion, h = params.get("onion") or {}, params.get("htlc") or {}
        if onion.get("short_channel_id") or onion.get("next_node_id"):
            return False  # lightningd parsed a hop it forwards: not a final hop of ours
        try:
            payload = hop_payload(onion.get("payload", ""))
        except (WireError, ValueError):
            return False
        if payload.encrypted_recipient_data is None:
            return False
        try:
            payment_hash = bytes.fromhex(h["payment_hash"])
            htlc_key = (str(h["short_channel_id"]), int(h["id"]))
        except (KeyError, TypeError, ValueError):
            return False
        if len(payment_hash) != 32:
            return False
        now = int(time.time())
        key = path_key_of(payload, h.get("extra_tlvs"))
        if key is None:
            # A replay after a restart: lightningd v26.06 does not keep an incoming HTLC's path key
            # (wallet/wallet.c: "FIXME: save path_key in db"), so our hop cannot be decrypted. It is
            # ours if it is a stored part, or pays a payment whose preimage we gave out.
            with self.node.lock:
                if not self.claimer.knows(htlc_key, payment_hash):
                    return False
            data = EncryptedData()
        else:
            try:
                out = self.node.rpc.call("decryptencrypteddata", {
                    "encrypted_data": payload.encrypted_recipient_data.hex(), "path_key": key.hex()})
                data = EncryptedData.decode(bytes.fromhex(out["decryptencrypteddata"]["decrypted"]))
            except (RpcError, KeyError, WireError, ValueError) as e:
                self.node.log(f"recipient: cannot decrypt a blinded final hop: {e}", level="debug")
                return False
            if data.next_node_id is not None or data.short_channel_id is not None:
                return False  # we forward this one: not a final hop
            with self.node.lock:
                if not self.claimer.is_ours(data, payment_hash, now):
                    return False
        # Ours from here on.
        once = AnswerOnce(respond)
        height = self.height
        try:
            height = int(h["cltv_expiry"]) - int(h["cltv_expiry_relative"])
            htlc = Htlc(htlc_key, payment_hash, msat(h.get("amount_msat")), int(h["cltv_expiry"]), payload, data)
            with self.node.lock:
                self.height = max(self.height, height)
                self.waiting[htlc_key] = (once, payment_hash)
                verdicts = self.claimer.decide(htlc, height, now)
            if any(isinstance(v, Wait) for _, v in verdicts):
                self._wake.set()  # the MPP timer re-reads the earliest deadline
            self._answer(verdicts)
        except Exception:
            self.node.log(f"recipient: claiming {payment_hash.hex()} failed: {traceback.format_exc()}", level="warn")
            self._answer_anyway(htlc_key, once, payment_hash, msat(h.get("amount_msat")), height)
        return True

    def _answer_anyway(self, key: tuple[str, int], once: AnswerOnce, payment_hash: bytes, amount_msat: int,
                       height: int) -> None:
        """The claim raised. With the preimage durable, resolve this HTLC and every waiting
        part of its payment; else fail this one and forget it as a part (it must not count)."""
        with self.node.lock:
            if key in self.waiting and self.waiting[key][0] is once:
                del self.waiting[key]
            if once.called:
                return  # it was answered before the error (e.g. in the notification)
            try:
                preimage = self.claimer.preimage_out(payment_hash)
                if preimage is None:
                    self.claimer.forget_part(key, payment_hash)
            except Exception:
                preimage = None
            siblings = [k for k, (_, ph) in self.waiting.items() if ph == payment_hash] if preimage else []
        if preimage is not None:
            self._answer([(k, Resolve(preimage)) for k in siblings])
            once({"result": "resolve", "payment_key": preimage.hex()})
            return
        self.node.store.bump("claim_failed_internal_error")
        once({"result": "fail", "failure_message": failure(amount_msat, max(height, 0)).hex()})

    def _answer(self, verdicts) -> None:
        resolved: set[bytes] = set()
        for key, verdict in verdicts:
            if not isinstance(verdict, (Resolve, Fail)):
                continue  # a part that waits for the rest keeps its responder
            with self.node.lock:
                once, payment_hash = self.waiting.pop(key, (None, b""))
            if once is None:
                continue  # not replayed since our restart yet: lightningd will ask again
            try:
                if isinstance(verdict, Resolve):
                    once({"result": "resolve", "payment_key": verdict.preimage.hex()})
                    resolved.add(payment_hash)
                else:
                    once({"result": "fail", "failure_message": verdict.failure_message.hex()})
            except Exception:
                self.node.log(f"recipient: answering an HTLC failed: {traceback.format_exc()}", level="warn")
        for payment_hash in resolved:
            with self.node.lock:
                row = self.core.records.payment(payment_hash)
            if row is not None:
                self.node.notify("asyncpay_payment_received", {
                    "payment_hash": payment_hash.hex(), "payment_preimage": row["payment_preimage"].hex(),
                    "amount_msat": row["amount_msat"], "slot": row["slot"], "kind": row["kind"],
                    "received_at": row["received_at"]})

    def on_block(self, height: int, now: int) -> None:
        with self.node.lock:
            self.height = max(self.height, height)
        self.expire(now)

    def expire(self, now: int) -> None:
        """Fail the multi-part payments whose wait is over or whose parts came within the margin."""
        try:
            with self.node.lock:
                verdicts = self.claimer.expire(self.height, now)
            self._answer(verdicts)
        except Exception:
            self.node.log(f"recipient: expiring multi-part payments failed: {traceback.format_exc()}", level="warn")

    def status(self) -> dict:
        c = self.node.store.counters()
        sets, parts = self.core.records.pending_counts()
        return {"recipient": {
            "offers": len(self.core.records.offers()),
            # Multi-part payments waiting for their other parts (bounded by recipient_max_pending_*).
            "pending_payments": sets, "pending_parts": parts,
            "expected_invoices": self.core.records.expected_count(),
            "releases": c.get("recipient_releases", 0),
            "payments_received": c.get("recipient_payments_received", 0),
            "claims_failed": {k[len("claim_failed_"):]: v for k, v in c.items() if k.startswith("claim_failed_")},
        }}

