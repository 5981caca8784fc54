"""The holding LSP's adapter: ``htlc_accepted`` answered late.

lightningd (v26.06) lets a plugin keep an ``htlc_accepted`` call open and
answer ``continue`` later with a replacement ``payload`` (given without its
length prefix: ``peer_htlcs.c`` prepends it), and replays every HTLC that
had no verdict when it restarts. The hold request is an odd record in our
hop's payload, so lightningd itself parsed the rest of it and knows where
to forward.

LDK's sender asks for a hold with ``update_add_htlc`` TLV 75537 and expects
its LSP's release paths in ``revoke_and_ack``, which a plugin cannot write:
such an HTLC is failed at once, with a log line saying why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..endpoint import Delivered
from ..hold import KINDS, Forward, Hold, HoldConfig, Holder, HtlcToHold, Refuse
from ..payment import HopPayload
from ..payment.hold_request import HOLD_REQUEST, HoldRequest
from ..wire import WireError, read_tlv_stream
from .recipient import hop_payload, msat
from .role import Respond, Role

if TYPE_CHECKING:
    from ..actions import InjectOnion
    from .node import Node

LDK_HOLD_HTLC = 75537  # update_add_htlc TLV (LDK ln/msgs.rs)


def has_tlv(extra_tlvs: str | None, t: int) -> bool:
    if not extra_tlvs:
        return False
    try:
        return any(k == t for k, _ in read_tlv_stream(bytes.fromhex(extra_tlvs), lambda _: True, "extra_tlvs"))
    except (WireError, ValueError):
        return False


class HoldRole(Role):
    KINDS = KINDS

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.config: HoldConfig = node.config_for(HoldConfig)
        self.core = Holder(node.store, node.endpoint, self.config, node.resolve_intro)
        self.waiting: dict[str, Respond] = {}  # HTLC key -> its open htlc_accepted call
        self.height = 0

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
        try:
            request = HoldRequest.decode(raw)
        except WireError as e:
            self.node.log(f"failing HTLC with a bad hold request: {e}", level="info")
            self.node.store.bump("hold_refused_bad_request")
            respond({"result": "fail", "failure_message": Refuse("bad_request").failure_message.hex()})
            return True
        rest = HopPayload.decode(payload.encode())
        del rest.unknown[HOLD_REQUEST]
        height = int(h["cltv_expiry"]) - int(h["cltv_expiry_relative"])
        self.height = max(self.height, height)
        htlc = HtlcToHold(
            key=f"{h.get('short_channel_id')}/{h.get('id')}", payment_hash=bytes.fromhex(h["payment_hash"]),
            amount_msat=msat(h.get("amount_msat")), cltv_expiry=int(h["cltv_expiry"]),
            outgoing_cltv=int(onion.get("outgoing_cltv_value") or payload.outgoing_cltv_value or 0),
            peer_id=str(params.get("peer_id") or ""), payload=rest.encode(), request=request)
        now = int(time.time())
        with self.node.lock:
            verdict = self.core.accept(htlc, height, now)
            if isinstance(verdict, Hold):
                self.waiting[htlc.key] = respond
        if isinstance(verdict, Hold):
            self.node.perform(verdict.actions)
        elif isinstance(verdict, Forward):
            self._forward(htlc.key, verdict.payload, respond)
        else:
            respond({"result": "fail", "failure_message": verdict.failure_message.hex()})
        return True

    def _forward(self, key: str, payload: bytes, respond: Respond) -> None:
        respond({"result": "continue", "payload": payload.hex()})
        with self.node.lock:
            self.core.forwarded(key, int(time.time()))

    def on_message(self, d: Delivered, now: int) -> list[InjectOnion]:
        row = self.core.release(d, self.current_height(), now)
        respond = self.waiting.pop(row.key, None)
        if respond is not None:  # else lightningd's replay after a restart forwards it
            self._forward(row.key, row.payload, respond)
        return []

    def current_height(self) -> int:
        if not self.height:
            self.height = int(self.node.rpc.getinfo().get("blockheight", 0))
        return self.height

    def on_block(self, height: int, now: int) -> None:
        self.height = max(self.height, height)
        with self.node.lock:
            failed = self.core.expire(self.current_height(), now)
        self._fail_back(failed)

    def fail(self, payment_hash: bytes) -> list:
        with self.node.lock:
            failed = self.core.fail(payment_hash, int(time.time()))
        self._fail_back(failed)
        return failed

    def _fail_back(self, rows) -> None:
        for row in rows:
            with self.node.lock:
                respond = self.waiting.pop(row.key, None)
            if respond is not None:
                respond({"result": "fail", "failure_message": Refuse(row.reason).failure_message.hex()})

    def status(self) -> dict:
        c = self.node.store.counters()
        return {"hold": {
            "held": self.core.records.count_held(), "released": c.get("hold_released", 0),
            "refused": {k[len("hold_refused_"):]: v for k, v in c.items() if k.startswith("hold_refused_")},
            "failed": {k[len("hold_failed_"):]: v for k, v in c.items() if k.startswith("hold_failed_")},
        }}
