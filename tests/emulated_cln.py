"""A small in-process emulation of the CLN v26 behaviours asyncpay relies on
(design §5), so multi-node flows run without lightningd:

* connectd parses ``onionmsg_tlv`` at every hop knowing only types 2, 4, 64,
  66 and 68, so a final-hop message with any other even type is dropped
  (``common/onion_message_parse.c``);
* a per-peer token bucket on received onion messages: one per 250 ms,
  burst of 4, excess silently dropped (``connectd/onion_message.c``);
* a failed forward of a message received from a peer raises
  ``onionmessage_forward_fail`` (source, incoming, path_key, outgoing,
  next_node_id); a failed forward of an injected one is an RPC error only;
* ``injectonionmessage(path_key, message)`` processes the bare packet as if a
  peer had sent it, not rate limited;
* a hop named by short channel id: CLN reports a failed forward with
  ``next_short_channel_id_dir`` (direction always 0), never ``next_node_id``,
  even when it knows the channel's peer;
* ``sendcustommsg`` (the peer's ``custommsg`` hook sees it) and ``signmessage``;
* ``connect`` and ``disconnect`` notifications, ``makesecret``, ``getinfo``, ``listpeers``,
  ``listpeerchannels`` (with the channel's aliases and the peer's
  ``channel_update`` towards us), ``decryptencrypteddata``;
* payments: ``Network.pay`` injects a payment onion at a node (as
  ``injectpaymentonion``) and forwards it hop by hop, by short channel id or
  through a blinded path (BOLT 4 route blinding: ``payment_relay`` fees and
  CLTV delta), to the final node, whose ``htlc_accepted`` hooks see the raw
  payload (with its length prefix) and ``extra_tlvs`` with the path key as
  type 0, as lightningd shows them (design §8);
* ``htlc_accepted`` at forwarding nodes too, as lightningd v26.06 runs it
  (``peer_htlcs.c``): also for a payload it cannot parse (a blinded hop with
  an extra record), then without ``short_channel_id``; ``continue`` may
  replace the payload (parsed again with the incoming path key only) and set
  ``forward_to`` and ``extra_tlvs`` (type 0: the next path key);
  ``injectpaymentonion`` blocks (``inject_wait`` seconds) while a node holds
  the HTLC, which ``listpeerchannels`` then shows committed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyln.client import RpcError

from asyncpay.blinded_path import EncryptedData
from asyncpay.crypto import CryptoError, peel_packet, pubkey_of
from asyncpay.crypto.blinding import decrypt_hop_data, hop_key, next_path_key
from asyncpay.offers import Invoice
from asyncpay.onion_message import Forward, OnionMessage, Receive, peel_onion_message
from asyncpay.payment import HopPayload
from asyncpay.payment.route import RouteHop, blinded_payment_onion, to_introduction
from asyncpay.wire import WireError, read_tlv_stream
from asyncpay.wire.types import bigsize

CLN_ONIONMSG_TYPES = frozenset({2, 4, 64, 66, 68})
ONION_MSG_MSEC = 250
ONION_MSG_TOKENS_MAX = 4 * ONION_MSG_MSEC


def scid_str(scid: int) -> str:
    return f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}"


def channel_id_of(scid: int) -> str:
    """The emulation's channel_id of the channel with this scid."""
    return f"{scid:064x}"


@dataclass
class HtlcResult:
    """The verdict an HTLC got at its final node (None while it is held)."""

    answer: dict | None = None
    hops: list[str] = field(default_factory=list)  # node ids it passed, payer first
    done: threading.Event = field(default_factory=threading.Event)

    def respond(self, answer: dict) -> None:
        assert self.answer is None, "an HTLC answered twice"
        self.answer = answer
        self.done.set()


@dataclass(frozen=True)
class ChannelPolicy:
    """What a node charges to forward over its channels (its channel_update)."""

    fee_base_msat: int = 1000
    fee_proportional_millionths: int = 100
    cltv_expiry_delta: int = 40
    htlc_minimum_msat: int = 1
    htlc_maximum_msat: int = 10**10


class Network:
    def __init__(self) -> None:
        self.nodes: dict[str, EmulatedNode] = {}
        self.lock = threading.RLock()
        self.next_scid = 1
        self.height = 800_000
        self.next_htlc_id = 0

    def pay(self, sender: EmulatedNode, onion: bytes, payment_hash: bytes, amount_msat: int,
            cltv_expiry: int) -> HtlcResult:
        """``injectpaymentonion`` at ``sender``: its own hop, then the route."""
        result = HtlcResult()
        sender.receive_htlc(None, onion, payment_hash, amount_msat, cltv_expiry, None, result)
        return result

    def node(self, secret: bytes, name: str = "") -> EmulatedNode:
        n = EmulatedNode(self, secret, name)
        self.nodes[n.id] = n
        return n

    def connect(self, a: EmulatedNode, b: EmulatedNode, channel: bool = True) -> None:
        with self.lock:
            a.peers.add(b.id)
            b.peers.add(a.id)
            if channel and b.id not in a.channels:
                a.channels[b.id] = b.channels[a.id] = (100 << 40) | (self.next_scid << 16)
                self.next_scid += 1
            a.buckets.pop(b.id, None)
            b.buckets.pop(a.id, None)
        for x, y in ((a, b), (b, a)):
            x.notify("connect", {"connect": {"id": y.id, "direction": "out", "address": {}}})

    def disconnect(self, a: EmulatedNode, b: EmulatedNode) -> None:
        with self.lock:
            a.peers.discard(b.id)
            b.peers.discard(a.id)
        for x, y in ((a, b), (b, a)):
            x.notify("disconnect", {"disconnect": {"id": y.id}})


class EmulatedNode:
    def __init__(self, net: Network, secret: bytes, name: str) -> None:
        self.net, self.secret, self.name = net, secret, name
        self.node_id = pubkey_of(secret)
        self.id = self.node_id.hex()
        self.peers: set[str] = set()
        self.channels: dict[str, int] = {}  # peer id -> the channel's scid
        self.buckets: dict[str, tuple[float, float]] = {}
        self.listeners: list[Callable[[str, dict], None]] = []
        self.hook_deliveries: list[Receive] = []  # what onion_message_recv* hooks would see
        self.dropped: dict[str, int] = {}
        self.policy = ChannelPolicy()
        self.htlc_hooks: list[Callable[[dict, Callable[[dict], None]], None]] = []
        self.forward_hook_calls: list[dict] = []  # htlc_accepted calls for HTLCs we forward
        self.htlcs_out: dict[str, tuple[str, HtlcResult]] = {}  # payment hash -> (peer, its result): our own
        self.inject_wait = 0.0  # how long injectpaymentonion waits for a held HTLC's outcome
        self.sendpays: dict[str, dict] = {}  # payment hash -> listsendpays entry
        self.rpc = EmulatedRpc(self)

    def peer_by_scid(self, scid: int) -> str | None:
        return next((p for p, s in self.channels.items() if s == scid), None)

    def run_hooks(self, params: dict, i: int, result: HtlcResult) -> None:
        """htlc_accepted is chained: ``continue`` goes on to the next plugin;
        a plugin may answer later (a held HTLC)."""
        if i == len(self.htlc_hooks):
            result.respond({"result": "fail", "reason": f"{self.name}: no plugin claimed the HTLC"})
            return

        def respond(answer: dict) -> None:
            if answer.get("result") == "continue":
                self.run_hooks(params, i + 1, result)
            else:
                result.respond(answer)

        self.htlc_hooks[i](params, respond)

    def receive_htlc(self, source: str | None, onion: bytes, payment_hash: bytes, amount_msat: int,
                     cltv_expiry: int, path_key: bytes | None, result: HtlcResult) -> None:
        """An HTLC offered by ``source`` (None: injected here). A hop we
        cannot handle fails the HTLC with ``"fail"`` and the reason."""
        result.hops.append(self.id)
        try:
            key = hop_key(self.secret, path_key).blinded_privkey if path_key else self.secret
            layer = peel_packet(key, onion, payment_hash)
        except CryptoError as e:
            result.respond({"result": "fail", "reason": f"{self.name}: {e}"})
            return
        if layer.is_final:
            incoming = self.channels.get(source, 0) if source else 0
            extra = (bigsize(0) + bigsize(33) + path_key).hex() if path_key else ""
            params = {
                "onion": {"payload": (bigsize(len(layer.payload)) + layer.payload).hex(),
                          "shared_secret": layer.shared_secret.hex()},
                "htlc": {"short_channel_id": scid_str(incoming), "id": self.net.next_htlc_id,
                         "amount_msat": amount_msat, "cltv_expiry": cltv_expiry,
                         "cltv_expiry_relative": cltv_expiry - self.net.height,
                         "payment_hash": payment_hash.hex(), "extra_tlvs": extra},
                "peer_id": source,
            }
            self.net.next_htlc_id += 1
            self.run_hooks(params, 0, result)
            return
        decoded = self._decode_forward(layer.payload, path_key, amount_msat, cltv_expiry)
        if self.htlc_hooks and source is not None:
            self._forward_hooks(source, layer, payment_hash, amount_msat, cltv_expiry, path_key, decoded, result)
            return
        self._forward(source, layer.next_packet, payment_hash, amount_msat, cltv_expiry, decoded, result)

    def _decode_forward(self, raw: bytes, path_key: bytes | None, amount_msat: int,
                        cltv_expiry: int) -> tuple[int, int, int, bytes | None] | str:
        """lightningd's ``onion_decode`` of a hop we forward: (amount out, CLTV
        out, scid, next path key), or why it does not decode. A blinded hop
        may carry nothing but ``encrypted_recipient_data`` and
        ``current_path_key`` (``check_nonfinal_tlv``)."""
        try:
            payload = HopPayload.decode(raw)
        except WireError as e:
            return f"invalid payload: {e}"
        pk = path_key or payload.current_path_key
        if payload.encrypted_recipient_data is None or pk is None:
            if payload.amt_to_forward is None or payload.outgoing_cltv_value is None:
                return "missing amt_to_forward or outgoing_cltv_value"
            return payload.amt_to_forward, payload.outgoing_cltv_value, payload.short_channel_id, None
        others = {t for t, _ in read_tlv_stream(raw, lambda t: True, "payload")} - {10, 12}
        if others:
            return f"unexpected tlv type {min(others)}"
        hk = hop_key(self.secret, pk)
        data = EncryptedData.decode(decrypt_hop_data(hk.shared_secret, payload.encrypted_recipient_data))
        relay = data.payment_relay
        if data.short_channel_id is None or relay is None:
            return "not a forwarding blinded hop"
        c = data.payment_constraints
        if c is not None and (cltv_expiry > c.max_cltv_expiry or amount_msat < c.htlc_minimum_msat):
            return "payment_constraints"
        out_amount = -(-(amount_msat - relay.fee_base_msat) * 1_000_000
                       // (1_000_000 + relay.fee_proportional_millionths))
        return (out_amount, cltv_expiry - relay.cltv_expiry_delta, data.short_channel_id,
                next_path_key(pk, hk.shared_secret))

    def _forward_hooks(self, source: str, layer, payment_hash: bytes, amount_msat: int, cltv_expiry: int,
                       path_key: bytes | None, decoded, result: HtlcResult) -> None:
        """``htlc_accepted`` at a forwarding node, as lightningd v26.06 runs it
        (``peer_htlcs.c``): called even when the payload does not decode (then
        without ``short_channel_id``); a ``continue`` may replace the payload
        (decoded again, with the incoming path key only), set ``forward_to``
        and ``extra_tlvs`` (type 0 replaces the next path key, which is
        otherwise the one computed before the hook, none if the payload did
        not decode)."""
        onion: dict = {"payload": (bigsize(len(layer.payload)) + layer.payload).hex(),
                       "shared_secret": layer.shared_secret.hex()}
        forward_to = None
        if not isinstance(decoded, str):
            onion.update(type="tlv", short_channel_id=scid_str(decoded[2]), forward_msat=decoded[0],
                         outgoing_cltv_value=decoded[1])
            nxt = self.peer_by_scid(decoded[2])
            forward_to = None if nxt is None else channel_id_of(decoded[2])
        params = {"onion": onion, **({"forward_to": forward_to} if forward_to else {}),
                  "htlc": {"short_channel_id": scid_str(self.channels.get(source, 0)), "id": self.net.next_htlc_id,
                           "amount_msat": amount_msat, "cltv_expiry": cltv_expiry,
                           "cltv_expiry_relative": cltv_expiry - self.net.height,
                           "payment_hash": payment_hash.hex(),
                           **({"extra_tlvs": (bigsize(0) + bigsize(33) + path_key).hex()} if path_key else {})},
                  "peer_id": source}
        self.net.next_htlc_id += 1
        self.forward_hook_calls.append(params)

        def done(answer: dict, i: int = 0) -> None:
            if answer.get("result") != "continue":
                result.respond(answer)
                return
            out = decoded
            if "payload" in answer:
                out = self._decode_forward(bytes.fromhex(answer["payload"]), path_key, amount_msat, cltv_expiry)
            if isinstance(out, str):
                result.respond({"result": "fail", "reason": f"{self.name}: invalid_onion_payload: {out}"})
                return
            next_key = None if isinstance(decoded, str) else decoded[3]
            extra = dict(read_tlv_stream(bytes.fromhex(answer.get("extra_tlvs", "")), lambda t: True, "extra_tlvs"))
            next_key = extra.get(0, next_key)
            to = answer.get("forward_to", forward_to)
            if to is None:
                result.respond({"result": "fail", "reason": f"{self.name}: unknown_next_peer"})
                return
            self._forward(source, layer.next_packet, payment_hash, amount_msat, cltv_expiry,
                          (out[0], out[1], int(to, 16), next_key), result)

        def chain(i: int) -> None:
            if i == len(self.htlc_hooks):
                done({"result": "continue"})
                return
            self.htlc_hooks[i](params, lambda a: chain(i + 1) if a == {"result": "continue"} else done(a))

        chain(0)

    def _forward(self, source: str | None, packet: bytes, payment_hash: bytes, amount_msat: int, cltv_expiry: int,
                 decoded, result: HtlcResult) -> None:
        if isinstance(decoded, str):
            result.respond({"result": "fail", "reason": f"{self.name}: {decoded}"})
            return
        out_amount, out_cltv, scid, nxt_key = decoded
        if nxt_key is None:  # an unblinded hop: our channel's fee and CLTV delta
            fee = self.policy.fee_base_msat + out_amount * self.policy.fee_proportional_millionths // 1_000_000
            if source is not None and (amount_msat < out_amount + fee
                                       or cltv_expiry < out_cltv + self.policy.cltv_expiry_delta):
                result.respond({"result": "fail", "reason": f"{self.name}: fee or cltv too low"})
                return
        nxt = self.peer_by_scid(scid) if scid is not None else None
        if nxt is None or nxt not in self.peers:
            result.respond({"result": "fail", "reason": f"{self.name}: unknown next channel"})
            return
        if source is None:  # our own HTLC, committed on our channel until it is answered
            self.htlcs_out[payment_hash.hex()] = (nxt, result)
        self.net.nodes[nxt].receive_htlc(self.id, packet, payment_hash, out_amount, out_cltv, nxt_key, result)

    def notify(self, topic: str, params: dict) -> None:
        for listener in list(self.listeners):
            listener(topic, params)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def _rate_ok(self, source: str) -> bool:
        now = time.monotonic() * 1000
        tokens, last = self.buckets.get(source, (float(ONION_MSG_TOKENS_MAX), now))
        tokens = min(float(ONION_MSG_TOKENS_MAX), tokens + (now - last))
        if tokens < ONION_MSG_MSEC:
            self.buckets[source] = (tokens, now)
            return False
        self.buckets[source] = (tokens - ONION_MSG_MSEC, now)
        return True

    def handle_onion(self, source: str | None, path_key: bytes, packet: bytes) -> None:
        """connectd's handle_onion: ``source`` None means injected."""
        if source is not None and not self._rate_ok(source):
            self._drop("ratelimited")
            return
        msg = OnionMessage(path_key, packet)
        try:
            key = hop_key(self.secret, path_key)
            layer = peel_packet(key.blinded_privkey, packet, b"")
            read_tlv_stream(layer.payload, CLN_ONIONMSG_TYPES, "onionmsg_tlv")
            out = peel_onion_message(self.secret, msg)
        except (WireError, CryptoError) as e:
            self._drop("parse")
            if source is None:
                raise RpcError("injectonionmessage", {}, {"code": -1, "message": f"onion_message_parse: {e}"}) from e
            self.notify("onionmessage_forward_fail", {"onionmessage_forward_fail": {
                "source": source, "incoming": packet.hex(), "path_key": path_key.hex()}})
            return
        if isinstance(out, Receive):
            self.hook_deliveries.append(out)
            return
        assert isinstance(out, Forward)
        if out.next_node_id is not None:
            nxt, named = out.next_node_id.hex(), {"next_node_id": out.next_node_id.hex()}
        else:
            nxt = next((p for p, s in self.channels.items() if s == out.next_short_channel_id), None)
            named = {"next_short_channel_id_dir": f"{scid_str(out.next_short_channel_id)}/0"}
        with self.net.lock:
            connected = nxt in self.peers
        if connected:
            self.net.nodes[nxt].handle_onion(self.id, out.message.path_key, out.message.packet)
            return
        if source is None:
            raise RpcError("injectonionmessage", {}, {"code": -1, "message": f"onion msg: unknown next peer {nxt}"})
        self.notify("onionmessage_forward_fail", {"onionmessage_forward_fail": {
            "source": source, "incoming": packet.hex(), "path_key": path_key.hex(),
            "outgoing": out.message.encode().hex(), **named}})


class EmulatedRpc:
    def __init__(self, node: EmulatedNode) -> None:
        self.node = node

    def getinfo(self) -> dict:
        return {"id": self.node.id, "blockheight": self.node.net.height, "network": "bitcoin"}

    def listpeers(self, id: str | None = None) -> dict:
        return {"peers": [{"id": p, "connected": True} for p in sorted(self.node.peers) if id in (None, p)]}

    def call(self, method: str, params: dict | None = None) -> dict:
        params = params or {}
        n = self.node
        if method == "injectonionmessage":
            n.handle_onion(None, bytes.fromhex(params["path_key"]), bytes.fromhex(params["message"]))
            return {}
        if method == "makesecret":
            return {"secret": hashlib.sha256(n.secret + params["string"].encode()).hexdigest()}
        if method == "listpeerchannels":
            chans = [(p, s) for p, s in sorted(n.channels.items()) if params.get("id") in (None, p)]
            return {"channels": [self._channel(p, s) for p, s in chans]}
        if method == "decryptencrypteddata":
            k = hop_key(n.secret, bytes.fromhex(params["path_key"]))
            try:
                plain = decrypt_hop_data(k.shared_secret, bytes.fromhex(params["encrypted_data"]))
            except CryptoError as e:
                raise RpcError(method, params, {"code": -1, "message": f"Decryption failed: {e}"}) from e
            return {"decryptencrypteddata": {"decrypted": plain.hex(), "next_path_key": next_path_key(
                bytes.fromhex(params["path_key"]), k.shared_secret).hex()}}
        if method == "listchannels":
            # Gossip: every channel of the emulated network is known to all.
            src = n.net.nodes.get(params.get("source", ""))
            return {"channels": [] if src is None else [
                {"source": src.id, "destination": p, "short_channel_id": scid_str(s)}
                for p, s in sorted(src.channels.items())]}
        if method == "getinfo":
            return self.getinfo()
        if method == "listconfigs" and params.get("config") == "cltv-delta":
            return {"configs": {"cltv-delta": {"value_int": n.policy.cltv_expiry_delta, "source": "default"}}}
        if method == "listpeers":
            return self.listpeers(params.get("id"))
        if method == "getroutes":
            return self._getroutes(params)
        if method == "injectpaymentonion":
            return self._inject_payment(params)
        if method == "xpay":
            return self._xpay(params)
        if method == "sendcustommsg":
            # connectd hands it to the peer, whose lightningd runs its custommsg hooks.
            if params["node_id"] not in n.peers:
                raise RpcError(method, params, {"code": -1, "message": "peer is not connected"})
            n.net.nodes[params["node_id"]].notify("custommsg", {"peer_id": n.id, "payload": params["msg"]})
            return {"status": "Message sent to connectd for delivery"}
        if method == "signmessage":
            from ln_message import sign  # LSPS0 ln_signature, as lightningd's hsmd makes it
            return {"zbase": sign(n.secret, params["message"])}
        if method == "listsendpays":
            ph = params.get("payment_hash")
            return {"payments": [v for k, v in n.sendpays.items() if ph in (None, k)]}
        raise RpcError(method, params, {"code": -32601, "message": f"emulation has no {method}"})

    def _getroutes(self, params: dict) -> dict:
        """A route over our own channel when the destination is a peer (the
        case the payer meets here); no fee on it (auto.sourcefree)."""
        n, dest = self.node, params["destination"]
        if dest not in n.channels:
            raise RpcError("getroutes", params, {"code": 205, "message": "We could not find a usable set of paths"})
        return {"routes": [{"path": [{"short_channel_id_dir": f"{scid_str(n.channels[dest])}/0",
                                      "node_id_in": n.id, "node_id_out": dest,
                                      "amount_in_msat": params["amount_msat"], "amount_out_msat": params["amount_msat"],
                                      "cltv_in": params["final_cltv"], "cltv_out": params["final_cltv"]}]}]}

    def _inject_payment(self, params: dict) -> dict:
        n = self.node
        ph = params["payment_hash"]
        n.sendpays[ph] = {"payment_hash": ph, "status": "pending", "partid": params.get("partid", 0),
                          "groupid": params.get("groupid", 0)}
        result = n.net.pay(n, bytes.fromhex(params["onion"]), bytes.fromhex(ph), params["amount_msat"],
                           params["cltv_expiry"])
        result.done.wait(n.inject_wait)  # as lightningd: blocks while a node down the route holds it
        answer = result.answer or {"result": "fail", "reason": "held past the emulation"}
        if answer["result"] != "resolve":
            n.sendpays[ph]["status"] = "failed"
            raise RpcError("injectpaymentonion", params, {"code": 204, "message": str(answer)})
        n.sendpays[ph].update(status="complete", payment_preimage=answer["payment_key"])
        return {"payment_preimage": answer["payment_key"], "created_index": 1, "completed_at": 0}

    def _xpay(self, params: dict) -> dict:
        """CLN's payment engine, in miniature: the invoice's first path, one part."""
        n = self.node
        inv = Invoice.from_string(params["invstring"])
        [path, *_] = inv.payment_paths()
        intro = path.path.introduction.node_id
        final = n.net.height + 1
        amount, cltv = to_introduction(path, inv.invoice_amount, final)
        route = [RouteHop(n.channels[intro.hex()], intro, amount, cltv)]
        built = blinded_payment_onion(os.urandom(32), n.node_id, route, path, inv.invoice_amount, final,
                                      inv.invoice_payment_hash)
        return self._inject_payment({"onion": built.onion.hex(), "payment_hash": inv.invoice_payment_hash.hex(),
                                     "amount_msat": built.amount_msat, "cltv_expiry": built.cltv_expiry})

    def _channel(self, peer: str, scid: int) -> dict:
        """A channel as listpeerchannels shows it; one alias for both sides."""
        pol = self.node.net.nodes[peer].policy
        htlcs = [{"direction": "out", "payment_hash": ph, "state": "SENT_ADD_ACK_REVOCATION"}
                 for ph, (p, r) in self.node.htlcs_out.items() if p == peer and r.answer is None]
        return {"peer_id": peer, "state": "CHANNELD_NORMAL", "short_channel_id": scid_str(scid), "private": True,
                "channel_id": channel_id_of(scid), "htlcs": htlcs,
                "alias": {"local": scid_str(scid), "remote": scid_str(scid)},
                "updates": {"remote": {"fee_base_msat": pol.fee_base_msat,
                                       "fee_proportional_millionths": pol.fee_proportional_millionths,
                                       "cltv_expiry_delta": pol.cltv_expiry_delta,
                                       "htlc_minimum_msat": pol.htlc_minimum_msat,
                                       "htlc_maximum_msat": pol.htlc_maximum_msat}}}
