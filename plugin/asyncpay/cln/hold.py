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

from ..endpoint import Delivered
from ..hold import KINDS, Continue, Forward, Hold, HoldConfig, Holder, HtlcToHold, Refuse, Step
from ..hold.records import HeldRow
from ..metrics import timed
from ..payment import HopPayload
from ..payment.blinded_forward import BlindedForwardError
from ..payment.hold_request import HOLD_REQUEST, HoldRequest, hold_confirmed
from ..wire import WireError
from . import blinded_forward
from .convert import has_tlv, hop_payload, msat
from .role import Host, Respond, Role

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
        self.waiting: dict[str, Respond] = {}  # HTLC key -> its open htlc_accepted call
        self.forward_fields: dict[str, dict] = {}  # HTLC key -> what its continue adds (a blinded hop)
        self.height = 0
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
        with self.node.lock:
            step = self.core.tick(self.current_height(), now)
        self._run(step, now)

    def on_block(self, height: int, now: int) -> None:
        self.height = max(self.height, height)
        self.tick(now)

    def current_height(self) -> int:
        if not self.height:
            self.height = int(self.node.rpc.getinfo().get("blockheight", 0))
        return self.height

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
            with self.node.lock:
                step = self.core.abort(key, now)
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
        self.height = max(self.height, height)
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
                self.waiting[key] = respond
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

    def _run(self, step: Step, now: int) -> None:
        """Give every answer to its open call, then send the onions."""
        with self.node.lock:
            ready = self._take_calls(step, now)
        self._answer(ready, step)

    def _take_calls(self, step: Step, now: int) -> list[tuple[Respond, dict]]:
        """The open calls ``step`` answers, each with its answer (node lock held)."""
        ready = []
        for a in step.answers:
            respond = self.waiting.pop(a.key, None)
            if respond is None:
                continue  # lightningd replays it after its restart; the store answers then
            fields = self.forward_fields.pop(a.key, {})
            if isinstance(a, Continue):
                self.core.forwarded(a.key, now)
            ready.append((respond, {**a.hook_answer(), **fields} if isinstance(a, Continue) else a.hook_answer()))
        return ready

    def _answer(self, ready: list[tuple[Respond, dict]], step: Step) -> None:
        for respond, answer in ready:
            respond(answer)
        if step.sends:
            self.node.perform(step.sends)

    @timed("release_forward")
    def on_message(self, d: Delivered, now: int) -> list[InjectOnion]:
        """A release: the released and forwarded marks (and their counter) go
        in one commit, on disk before lightningd gets ``continue`` (a replay
        after a crash continues a released or forwarded HTLC alike)."""
        height = self.current_height()
        with self.node.lock:
            with self.node.store.tx():
                step = self.core.release(d, height, now)
                for a in step.answers:
                    if isinstance(a, Continue) and a.key in self.waiting:
                        self.core.forwarded(a.key, now)
            ready = self._take_calls(step, now)  # after the commit: a failed one leaves the calls open
        self._answer(ready, step)
        return []

    def fail(self, payment_hash: bytes) -> list[HeldRow]:
        now = int(time.time())
        with self.node.lock:
            step = self.core.fail(payment_hash, now)
            rows = [self.core.records.get(a.key) for a in step.answers]
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
