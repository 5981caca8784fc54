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

An HTLC taken is an open call with the second and height it is answered by
(``open_calls.py``: its expiry less the claim margin; its set's MPP timeout
once the store has said it waits). A claim that raised a store error (the store gone, or a commit
whose outcome is unknown) keeps its call open and is decided again by the
MPP timer from the store as it is then; while the store cannot be read, a
call whose time came is failed, unless a preimage of its payment went out
in this process: then it is resolved from memory (the preimage was
committed before it went out, docs/security.md "When the store is gone").
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import OrderedDict

from pyln.client import RpcError

from ..actions import InjectOnion
from ..blinded_path import EncryptedData
from ..endpoint import Delivered
from ..open_calls import AnswerBy, OpenCall, OpenCalls
from ..recipient import KINDS, Claimer, Fail, Htlc, LspChannel, Recipient, RecipientConfig, Resolve, Snapshot, Wait
from ..recipient.claim import failure
from ..recipient.recipient import HELD
from ..storage.base import is_store_failure
from ..wire import WireError
from .convert import hop_payload, msat, parse_scid, path_key_of
from .role import STORE_WAIT, AnswerOnce, Host, Respond, Role, store_pass

# What a held_htlc_available is handled with (Recipient._release reads no snapshot).
RELEASE_SNAPSHOT = Snapshot(None, 0)

OFFER_KEY_LABEL = "asyncpay/recipient/offer-key/v1"
# Preimages handed out by this process, kept to resolve the rest of their
# payment without the store; one is needed only while a part of it is open.
PAID_KEPT = 10_000
RETRY_SECONDS = 5.0  # a claim the store failed is tried again this often
NO_SECONDS = 2**62  # an AnswerBy bounded by its height only


class StoreUnknown(Exception):
    """The store could not say whether an HTLC is ours."""


class RecipientRole(Role):
    KINDS = KINDS

    def __init__(self, node: Host) -> None:
        super().__init__(node)
        self.config: RecipientConfig = node.config_for(RecipientConfig)
        self.core = Recipient(node.store, node.endpoint, self.config, node.secret(OFFER_KEY_LABEL),
                              node.resolve_intro, node.chain, books=node.books)
        self.claimer = Claimer(node.store, self.config, node.chain)
        self.changed = threading.Condition(node.lock)  # an offer's state changed
        # HTLCs taken and not answered yet (parts of multi-part payments); tag: (payment hash, amount).
        self.waiting: OpenCalls[tuple[str, int]] = OpenCalls()
        # Taken HTLCs whose claim the store failed (bool: known to be ours): decided again by the MPP timer.
        self.retry: dict[tuple[str, int], tuple[Htlc, bool]] = {}
        self.paid: OrderedDict[bytes, bytes] = OrderedDict()  # payment hash -> preimage handed out
        self.unsure: set[bytes] = set()  # payments whose claim raised: recorded or not, announce when known
        self._stop = threading.Event()
        self._start_serve_due = True  # the re-serve of our start, sent once the LSP is connected
        self._wake = threading.Event()  # a multi-part payment started waiting: re-arm the MPP timer

    # -- lightningd lookups ------------------------------------------------------

    def snapshot(self) -> Snapshot:
        height = int(self.node.rpc.getinfo().get("blockheight", 0))
        lsp = self.core.lsp_id()
        return Snapshot(self.lsp_channel(lsp) if lsp else None, height)

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
        not at the next block (which may be an hour away); claims the store
        failed are tried again, and with the store gone, calls whose time came
        are answered from memory."""
        try:
            self.node.current_height()
        except Exception:
            self.node.log(f"recipient: no block height yet: {traceback.format_exc()}", level="warn")
        while not self._stop.is_set():
            try:
                with self.node.lock:
                    deadline = self.claimer.next_deadline()
            except Exception as e:  # a store error: the timer must not die, and the open calls' times still count
                self.node.log(f"recipient: MPP deadline unknown: {type(e).__name__}: {e}", level="warn")
                deadline = None
            due = [d for d in (deadline, self.waiting.earliest()) if d is not None and d < NO_SECONDS]
            if self.retry:
                due.append(int(time.time() + RETRY_SECONDS))
            # At least half a second between two passes: a set that cannot be expired must not spin.
            delay = 3600.0 if not due else max(0.5, min(due) - time.time())
            self._wake.wait(min(delay, 3600.0))
            self._wake.clear()
            if due and time.time() >= min(due):
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
        lsp = self.core.lsp_id()
        if lsp is None:
            return True  # nothing to serve to yet; refresh says why
        try:
            return self.node.is_connected(lsp.hex())
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
        lsp = self.core.lsp_id()
        if lsp is not None and lsp.hex() == peer_id:
            # Back in touch with the server: re-serve, after connectd settles (the
            # start's re-serve if it is still due, else one the reserve interval limits).
            with self.node.lock:
                start, self._start_serve_due = self._start_serve_due, False
            threading.Timer(1.0, self.refresh, kwargs={"force": start, "reconnected": not start}).start()

    # -- messages ----------------------------------------------------------------

    def on_message(self, d: Delivered, now: int) -> list[InjectOnion]:
        # A release needs neither the height nor the LSP channel: no RPC on its path.
        snap = RELEASE_SNAPSHOT if d.kind == HELD else self.snapshot()
        actions = self.core.handle(d, now, snap)
        self.changed.notify_all()
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
        (then it, and every waiting part of its payment, is resolved); a store
        failure keeps it open until it can be decided, or until its time."""
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
        ours: bool | None = True
        if payment_hash not in self.paid:
            with self.node.lock:
                ours = self._ours(htlc_key, payment_hash, data, now)
            if ours is False:
                return False
        # Ours from here on (or, if the store cannot say, until it can).
        once = AnswerOnce(respond)
        amount = msat(h.get("amount_msat"))
        try:
            height = int(h["cltv_expiry"]) - int(h["cltv_expiry_relative"])
            self.node.saw_height(height)
            htlc = Htlc(htlc_key, payment_hash, amount, int(h["cltv_expiry"]), payload, data)
        except (KeyError, TypeError, ValueError):
            once({"result": "fail", "failure_message": failure(amount, self.node.height).hex()})
            return True
        # Until the store decides it, only its expiry bounds the wait: a part of a payment claimed
        # before our restart must not be failed early while the store cannot say so.
        by = AnswerBy(NO_SECONDS, htlc.cltv_expiry - self.claimer.margin - 1)
        self.waiting.open(htlc_key, once, by, (payment_hash, amount))
        if payment_hash in self.paid:  # its preimage went out: resolve, the store need not be asked
            self._answer([(htlc_key, Resolve(self.paid[payment_hash]))])
            return True
        self._decide(htlc, now, ours is not None)
        return True

    def _ours(self, key: tuple[str, int], payment_hash: bytes, data: EncryptedData, now: int) -> bool | None:
        """Is this HTLC ours (None: the store cannot say now)? Node lock held."""
        try:
            if data.path_id is None:  # a replay without its path key
                return self.claimer.knows(key, payment_hash)
            return self.claimer.is_ours(data, payment_hash, now)
        except Exception as e:
            if not is_store_failure(e):
                raise
            self.node.log(f"recipient: the store cannot say whether {payment_hash.hex()} is ours: {e}", level="warn")
            return None

    def _decide(self, htlc: Htlc, now: int, checked: bool) -> None:
        """Decide an HTLC whose call is open. A store failure (or a commit whose
        outcome is unknown) keeps the call open for the MPP timer to try again;
        any other error fails it (or resolves it, its preimage being out)."""
        try:
            with self.node.lock:
                ours = True if checked else self._ours(htlc.key, htlc.payment_hash, htlc.data, now)
                if ours is None:
                    raise StoreUnknown
                checked = True
                verdicts = None if not ours else self.claimer.decide(htlc, self.node.current_height(), now,
                                                                     self.waiting.keys())
        except Exception as e:
            if isinstance(e, StoreUnknown) or is_store_failure(e):
                if not isinstance(e, StoreUnknown):
                    self.node.log(f"recipient: claiming {htlc.payment_hash.hex()} failed on the store, tried "
                                  f"again: {e}", level="warn")
                    if checked:
                        self.unsure.add(htlc.payment_hash)
                self.retry[htlc.key] = (htlc, checked)
                self._wake.set()
                self._from_memory(self.node.height, now)  # one whose time came already is answered now
                return
            self.retry.pop(htlc.key, None)
            self.node.log(f"recipient: claiming {htlc.payment_hash.hex()} failed: {traceback.format_exc()}",
                          level="warn")
            self._answer_anyway(htlc.key, htlc.payment_hash, htlc.amount_msat, self.node.height)
            return
        self.retry.pop(htlc.key, None)
        if verdicts is None:
            once = self.waiting.pop(htlc.key)
            if once is not None:
                once({"result": "continue"})  # as the router answers an HTLC no role takes
            return
        for key, v in verdicts:
            if isinstance(v, Wait) and v.deadline:
                call = self.waiting.get(key)
                if call is not None:
                    self.waiting.set_by(key, AnswerBy(min(call.by.seconds, v.deadline), call.by.height))
        if any(isinstance(v, Wait) for _, v in verdicts):
            self._wake.set()  # the MPP timer re-reads the earliest deadline
        self._answer(verdicts)

    def _answer_anyway(self, key: tuple[str, int], payment_hash: bytes, amount_msat: int, height: int) -> None:
        """The claim raised. With the preimage out, resolve this HTLC and every waiting
        part of its payment; else fail this one and forget it as a part (it must not count)."""
        preimage = self.paid.get(payment_hash)
        if preimage is None:
            try:
                with self.node.lock:
                    preimage = self.claimer.preimage_out(payment_hash)
                    if preimage is None:
                        self.claimer.forget_part(key, payment_hash)
            except Exception:
                preimage = None
        if preimage is not None:
            siblings = [k for k, c in self.waiting.items() if c.tag[0] == payment_hash]
            self._answer([(k, Resolve(preimage)) for k in siblings])
            return
        once = self.waiting.pop(key)
        if once is None:
            return  # answered before the error
        try:
            self.node.store.bump("claim_failed_internal_error")
        except Exception:
            pass
        once({"result": "fail", "failure_message": failure(amount_msat, max(height, 0)).hex()})

    def _answer(self, verdicts) -> None:
        announce: set[bytes] = set()
        for key, verdict in verdicts:
            if not isinstance(verdict, (Resolve, Fail)):
                continue  # a part that waits for the rest keeps its responder
            call = self.waiting.take_one(key)
            if call is None:
                continue  # not replayed since our restart yet: lightningd will ask again
            try:
                self._give(call, verdict)
            except Exception:
                self.node.log(f"recipient: answering an HTLC failed: {traceback.format_exc()}", level="warn")
            payment_hash = call.tag[0]
            if isinstance(verdict, Resolve) and (verdict.recorded or payment_hash in self.unsure):
                announce.add(payment_hash)
        for payment_hash in announce:
            self.unsure.discard(payment_hash)
            try:
                with self.node.lock:
                    row = self.core.records.payment(payment_hash)
            except Exception:
                self.node.log(f"recipient: payment {payment_hash.hex()} not announced: {traceback.format_exc()}",
                              level="warn")
                continue
            if row is not None:  # once per payment: when it was recorded (docs/rpc.md)
                self.node.notify("asyncpay_payment_received", {
                    "payment_hash": payment_hash.hex(), "payment_preimage": row["payment_preimage"].hex(),
                    "amount_msat": row["amount_msat"], "slot": row["slot"], "kind": row["kind"],
                    "received_at": row["received_at"]})

    def _give(self, call: OpenCall, verdict: Resolve | Fail) -> None:
        if isinstance(verdict, Resolve):
            # Remembered before it goes out: the rest of the payment is resolved, never failed.
            self.paid[call.tag[0]] = verdict.preimage
            self.paid.move_to_end(call.tag[0])
            while len(self.paid) > PAID_KEPT:
                self.paid.popitem(last=False)
            call.respond({"result": "resolve", "payment_key": verdict.preimage.hex()})
        else:
            call.respond({"result": "fail", "failure_message": verdict.failure_message.hex()})

    def on_block(self, height: int, now: int) -> None:
        self.node.saw_height(height)
        self.expire(now)

    def expire(self, now: int) -> None:
        """Claims the store failed decided again; the multi-part payments whose wait
        is over or whose parts came within the margin failed; with the store gone,
        the calls whose time came answered from memory."""
        if self.retry and self.node.lock.acquire(timeout=STORE_WAIT):  # a store hanging under it: answer below
            try:
                for htlc, checked in list(self.retry.values()):
                    if htlc.key in self.waiting:
                        self._decide(htlc, now, checked)
                    else:
                        self.retry.pop(htlc.key, None)
            finally:
                self.node.lock.release()
        height = self.node.height
        verdicts = store_pass(self.node, lambda: self.claimer.expire(height, now), "recipient MPP expiry")
        if verdicts is not None:
            self._answer(verdicts)
            # A call the store said nothing of by its time: its set was dropped by a commit
            # whose answer was lost. Resolved if its preimage is out, else failed.
            self._from_memory(height, now, store_up=True)
            return
        self._from_memory(height, now)

    def _from_memory(self, height: int, now: int, store_up: bool = False) -> None:
        """The store cannot be used: each call whose time came is resolved if a preimage
        of its payment went out in this process (or, ``store_up``, is on disk), else failed."""
        for key, call in self.waiting.overdue(height, now):
            payment_hash, amount = call.tag
            preimage = self.paid.get(payment_hash)
            if preimage is None and store_up:
                try:
                    with self.node.lock:
                        preimage = self.claimer.preimage_out(payment_hash)
                except Exception:
                    preimage = None
            self.node.log(f"recipient: {'resolving' if preimage else 'failing'} HTLC {key} of {payment_hash.hex()} "
                          "from memory: the store cannot be used and its time came", level="warn")
            self.retry.pop(key, None)
            if not any(c.tag[0] == payment_hash for _, c in self.waiting.items()):
                self.unsure.discard(payment_hash)  # no part left to announce it with
            self._give(call, Resolve(preimage) if preimage else Fail("store_unavailable", failure(amount, height)))

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

