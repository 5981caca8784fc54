"""The holding LSP's adapter: ``htlc_accepted`` answered late.

lightningd (v26.06) lets a plugin keep an ``htlc_accepted`` call open and
answer ``continue`` later with a replacement ``payload`` (given without its
length prefix: ``peer_htlcs.c`` prepends it), and replays every HTLC that
had no verdict when it restarts. The hold request is an odd record in our
hop's payload, so lightningd itself parsed the rest of it and knows where
to forward; except when our hop is the introduction node of the
recipient's blinded path (we serve the recipient too): lightningd refuses
any extra record there, so we work out the forward ourselves
(``cln/blinded_forward.py``) and the ``continue`` carries it.

Every answer the core owes (``Step.answers``) goes through ``_run``, the
one place that pairs it with the open call; an answer without one (we
restarted and lightningd has not replayed the HTLC yet) is given from the
store on the replay. Any exception after the core took an HTLC fails it
(``Holder.abort``): a held HTLC is never continued without its release.

The store may be gone (lock lost, server unreachable) or a commit's outcome
unknown: a release whose commit raised is kept and tried again by the
timer, which answers every open call from its row as it is on disk; while
the store cannot be used, the timer fails each open call whose
``AnswerBy`` came from memory (``open_calls.py``, docs/security.md).

LDK's sender asks for a hold with ``update_add_htlc`` TLV 75537 and expects
its LSP's release paths in ``revoke_and_ack``, which a plugin cannot write:
such an HTLC is failed at once, with a log line saying why.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import TYPE_CHECKING

from pyln.client import RpcError

from ..endpoint import Delivered, Dropped
from ..hold import KINDS, Continue, FailBack, Forward, Hold, HoldConfig, Holder, HtlcToHold, Refuse, Step
from ..hold.records import HeldRow
from ..metrics import timed
from ..open_calls import OpenCalls
from ..payment import HopPayload
from ..payment.blinded_forward import BlindedForwardError
from ..payment.hold_request import HOLD_REQUEST, HoldRequest, hold_confirmed
from ..wire import WireError
from . import blinded_forward
from .convert import has_tlv, hop_payload, msat
from .role import Host, Respond, Role, store_pass

if TYPE_CHECKING:
    from ..actions import InjectOnion

LDK_HOLD_HTLC = 75537  # update_add_htlc TLV (LDK ln/msgs.rs)
# listpeerchannels states of a channel that is gone (it no longer makes a peer public or private).
CLOSED_STATES = frozenset({"ONCHAIN", "CLOSINGD_COMPLETE", "FUNDING_SPEND_SEEN", "AWAITING_UNILATERAL", "CLOSED"})


def asks_for_hold(params: dict) -> bool:
    """Does this HTLC ask us to hold it (our request, or LDK's)? Needs no
    state: the plugin's hook answers ``fail`` for one before ``init``."""
    if has_tlv((params.get("htlc") or {}).get("extra_tlvs"), LDK_HOLD_HTLC):
        return True
    try:
        return HOLD_REQUEST in hop_payload((params.get("onion") or {}).get("payload", "")).unknown
    except (WireError, ValueError):
        return False


class HoldRole(Role):
    KINDS = KINDS

    def __init__(self, node: Host) -> None:
        super().__init__(node)
        self.config: HoldConfig = node.config_for(HoldConfig)
        self.core = Holder(node.store, node.endpoint, self.config, node.resolve_intro, node.cltv_delta)
        self.waiting: OpenCalls[str] = OpenCalls()  # HTLC key -> its open htlc_accepted call
        # Releases whose commit raised (it may have landed): tried again by the timer.
        self.releases: dict[str, Delivered] = {}
        # A commit raised since the last pass that settled the open calls: the
        # next pass answers every open call from its row. Only then: reading
        # each open call's row on every pass would cost what is held, not
        # what is due (issue 24).
        self.unsure = False
        self.forward_fields: dict[str, dict] = {}  # HTLC key -> what its continue adds (a blinded hop)
        self._stop = threading.Event()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        # hold_until and the re-sends are in seconds: blocks alone are too coarse.
        threading.Thread(target=self._timer, daemon=True, name="hold-tick").start()

    def _timer(self) -> None:
        while not self._stop.wait(self.config.hold_check_seconds):
            try:
                self.tick(int(time.time()))
            except Exception:
                self.node.log(f"hold tick failed: {traceback.format_exc()}", level="warn")

    def tick(self, now: int) -> None:
        """Through the store if it can be used; else the calls whose time came fail from memory."""
        height = self.node.current_height()
        step = store_pass(self.node, lambda: self._store_tick(height, now), "hold tick")
        if step is None:  # its commit may have landed: the truth re-read once now
            step = store_pass(self.node, lambda: self._store_tick(height, now), "hold tick")
        if step is None:
            self.unsure = True
            self._fail_overdue(height, now)
            return
        self._run(step, now)

    def _store_tick(self, height: int, now: int) -> Step:
        step = Step()
        with self.node.store.tx():
            for key, d in sorted(self.releases.items()):
                if key in self.waiting:
                    try:
                        step += self.core.release(d, height, now, self.waiting.keys())
                    except Dropped:
                        pass
            answered = {a.key for a in step.answers}
            settle = self.unsure or bool(self.releases)
            step += self.core.tick(height, now, self.waiting.keys() - answered if settle else ())
            self._mark_forwarded(step, now)
        self.releases.clear()
        self.unsure = False  # committed: every open call was answered from its row, or is held
        return step

    def _fail_overdue(self, height: int, now: int) -> None:
        for key, call in self.waiting.overdue(height, now):
            self.node.log(f"failing held HTLC {key}: the store cannot be used and its deadline came", level="warn")
            self.forward_fields.pop(key, None)
            call.respond(FailBack(key, "store_unavailable").hook_answer())
            try:
                self.node.books.bump("hold_failed_store_unavailable")
            except Exception:
                pass  # counted when the store is back, or not at all: the answer went

    def on_block(self, height: int, now: int) -> None:
        self.node.saw_height(height)
        self.tick(now)

    # -- htlc_accepted -----------------------------------------------------

    def on_htlc(self, params: dict, respond: Respond) -> bool:
        onion, h = params.get("onion") or {}, params.get("htlc") or {}
        if has_tlv(h.get("extra_tlvs"), LDK_HOLD_HTLC):
            self.node.log("failing an HTLC with LDK's hold_htlc (update_add_htlc TLV 75537): CLN cannot send the "
                          "release paths it needs in revoke_and_ack; asyncpay senders put a hold request in the "
                          "onion instead (docs/compatibility.md)", level="info")
            self.node.store.bump("hold_refused_ldk_hold_htlc")
            respond({"result": "fail", "failure_message": Refuse("ldk_hold_htlc").failure_message.hex()})
            return True
        try:
            payload = hop_payload(onion.get("payload", ""))
        except (WireError, ValueError):
            return False
        raw = payload.unknown.get(HOLD_REQUEST)
        if raw is None:
            return False
        # From here on the HTLC is ours: every path answers it.
        try:
            request = HoldRequest.decode(raw)
        except WireError as e:
            self.node.log(f"failing HTLC with a bad hold request: {e}", level="info")
            self.node.store.bump("hold_refused_bad_request")
            respond({"result": "fail", "failure_message": Refuse("bad_request").failure_message.hex()})
            return True
        key = f"{h.get('short_channel_id')}/{h.get('id')}"
        now = int(time.time())
        try:
            self._take(key, params, payload, request, respond, now)
        except Exception:
            # The row may exist (and be held): fail it, so a release cannot
            # continue an HTLC whose call the router answers ``fail``.
            try:
                with self.node.lock:
                    step = self.core.abort(key, now)
            except Exception:  # the store is gone too: the open call, if any, fails from memory
                step = Step([FailBack(key, "internal_error")])
            self._run(step, now)
            raise
        return True

    @timed("hold_decision")
    def _take(self, key: str, params: dict, payload: HopPayload, request: HoldRequest, respond: Respond,
              now: int) -> None:
        onion, h = params.get("onion") or {}, params["htlc"]
        rest = HopPayload.decode(payload.encode())
        del rest.unknown[HOLD_REQUEST]
        outgoing_cltv = int(onion.get("outgoing_cltv_value") or payload.outgoing_cltv_value or 0)
        if payload.encrypted_recipient_data is not None:  # our hop is the recipient's blinded introduction
            try:
                fwd, channel_id = blinded_forward.resolve(self.node.rpc, payload, msat(h.get("amount_msat")),
                                                          int(h["cltv_expiry"]))
            except BlindedForwardError as e:
                self.node.log(f"failing a held HTLC whose blinded hop we cannot forward: {e}", level="info")
                self.node.store.bump("hold_refused_blinded_hop")
                respond({"result": "fail", "failure_message": Refuse("blinded_hop").failure_message.hex()})
                return
            outgoing_cltv = fwd.outgoing_cltv
            self.forward_fields[key] = fwd.hook_fields(channel_id)
        height = int(h["cltv_expiry"]) - int(h["cltv_expiry_relative"])
        self.node.saw_height(height)
        peer_id = str(params.get("peer_id") or self.node.peer_for_scid(str(h.get("short_channel_id"))) or "")
        htlc = HtlcToHold(
            key=key, payment_hash=bytes.fromhex(h["payment_hash"]), amount_msat=msat(h.get("amount_msat")),
            cltv_expiry=int(h["cltv_expiry"]),
            outgoing_cltv=outgoing_cltv,
            peer_id=peer_id, payload=rest.encode(), request=request,
            peer_channels_private=self._channels_private(peer_id))
        with self.node.lock:
            verdict = self.core.accept(htlc, height, now)
            if isinstance(verdict, Hold):
                self.waiting.open(key, respond, verdict.answer_by)
            elif isinstance(verdict, Forward):
                self.core.forwarded(key, now)  # recorded with the answer, before it
        if isinstance(verdict, Hold):
            self.node.perform(verdict.actions)
            self._confirm(peer_id, htlc.payment_hash)
        elif isinstance(verdict, Forward):
            respond({"result": "continue", "payload": verdict.payload.hex(), **self.forward_fields.pop(key, {})})
        else:
            self.forward_fields.pop(key, None)
            respond({"result": "fail", "failure_message": verdict.failure_message.hex()})

    def _confirm(self, peer_id: str, payment_hash: bytes) -> None:
        """Tell the sender we hold its HTLC (``hold_request.HOLD_CONFIRMED``):
        only then does it report ``held``. Lost if it went offline already,
        which only leaves its payment ``pending`` until the outcome."""
        try:
            self.node.rpc.call("sendcustommsg", {"node_id": peer_id, "msg": hold_confirmed(payment_hash).hex()})
        except RpcError as e:
            self.node.log(f"hold confirmation to {peer_id} not sent: {e.error}", level="debug")

    def _channels_private(self, peer_id: str) -> tuple[bool, ...]:
        """The private flag of each open channel with the peer (asked only
        when hold-clients is a policy, not a list of ids)."""
        if not peer_id or self.config.client_ids() is not None:
            return ()
        try:
            chans = self.node.rpc.call("listpeerchannels", {"id": peer_id}).get("channels", [])
        except RpcError:
            return ()
        return tuple(bool(c.get("private")) for c in chans if c.get("state") not in CLOSED_STATES)

    # -- answers -----------------------------------------------------------

    def _mark_forwarded(self, step: Step, now: int) -> None:
        """Inside the transaction that decided them: a ``continue`` is given only
        for a row that says so on disk (a replay after a crash continues a
        released or forwarded HTLC alike)."""
        for a in step.answers:
            if isinstance(a, Continue) and a.key in self.waiting:
                self.core.forwarded(a.key, now)

    def _run(self, step: Step, now: int) -> None:
        """Give every answer to its open call (taken out once: a racing pass
        finds it gone), then send the onions."""
        for a in step.answers:
            respond = self.waiting.pop(a.key)
            fields = self.forward_fields.pop(a.key, {})
            if respond is not None:  # else lightningd replays it after its restart; the store answers then
                respond({**a.hook_answer(), **fields} if isinstance(a, Continue) else a.hook_answer())
        if step.sends:
            self.node.perform(step.sends)

    @timed("release_forward")
    def on_message(self, d: Delivered, now: int) -> list[InjectOnion]:
        """A release: the released and forwarded marks (and their counter) go
        in one commit, on disk before lightningd gets ``continue``. A commit
        that raises may have landed: the call stays open and the timer tries
        the release again at once, answering from the row as it is then."""
        height = self.node.current_height()
        try:
            with self.node.lock:
                with self.node.store.tx():
                    step = self.core.release(d, height, now, self.waiting.keys())
                    self._mark_forwarded(step, now)
        except Dropped:
            raise
        except Exception:
            self.node.log(f"hold: release of {d.owner} not recorded, tried again: {traceback.format_exc()}",
                          level="warn")
            if d.owner in self.waiting:
                with self.node.lock:
                    self.releases[d.owner] = d
                    self.unsure = True
                self.tick(now)  # the truth re-read now; if the store is still gone, at every tick
            return []
        self._run(step, now)  # after the commit: a failed one leaves the calls open
        return []

    def fail(self, payment_hash: bytes) -> list[HeldRow]:
        now = int(time.time())
        try:
            with self.node.lock:
                step = self.core.fail(payment_hash, now)
                rows = [self.core.records.get(a.key) for a in step.answers]
        except Exception:
            self.unsure = True  # the failure may have landed: the open calls are answered from the rows
            self.tick(now)
            raise
        self._run(step, now)
        return [r for r in rows if r is not None]

    def status(self) -> dict:
        c = self.node.store.counters()
        return {"hold": {
            "held": self.core.records.count_held(), "released": c.get("hold_released", 0),
            "resent": c.get("hold_resent", 0), "release_too_late": c.get("hold_release_too_late", 0),
            "refused": {k[len("hold_refused_"):]: v for k, v in c.items() if k.startswith("hold_refused_")},
            "failed": {k[len("hold_failed_"):]: v for k, v in c.items() if k.startswith("hold_failed_")},
        }}
