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
* ``connect`` notifications, ``makesecret``, ``getinfo``, ``listpeers``,
  ``listpeerchannels`` (with the channel's local alias).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from pyln.client import RpcError

from asyncpay.crypto import CryptoError, peel_packet, pubkey_of
from asyncpay.crypto.blinding import hop_key
from asyncpay.onion_message import Forward, OnionMessage, Receive, peel_onion_message
from asyncpay.wire import WireError, read_tlv_stream

CLN_ONIONMSG_TYPES = frozenset({2, 4, 64, 66, 68})
ONION_MSG_MSEC = 250
ONION_MSG_TOKENS_MAX = 4 * ONION_MSG_MSEC


def scid_str(scid: int) -> str:
    return f"{scid >> 40}x{(scid >> 16) & 0xFFFFFF}x{scid & 0xFFFF}"


class Network:
    def __init__(self) -> None:
        self.nodes: dict[str, EmulatedNode] = {}
        self.lock = threading.RLock()
        self.next_scid = 1

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
        self.rpc = EmulatedRpc(self)

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
        return {"id": self.node.id}

    def listpeers(self) -> dict:
        return {"peers": [{"id": p, "connected": True} for p in sorted(self.node.peers)]}

    def call(self, method: str, params: dict | None = None) -> dict:
        params = params or {}
        n = self.node
        if method == "injectonionmessage":
            n.handle_onion(None, bytes.fromhex(params["path_key"]), bytes.fromhex(params["message"]))
            return {}
        if method == "makesecret":
            return {"secret": hashlib.sha256(n.secret + params["string"].encode()).hexdigest()}
        if method == "listpeerchannels":
            chans = sorted(n.channels.items())
            return {"channels": [{"peer_id": p, "alias": {"local": scid_str(s)}} for p, s in chans]}
        if method == "listchannels":
            return {"channels": []}
        if method == "getinfo":
            return self.getinfo()
        raise RpcError(method, params, {"code": -32601, "message": f"emulation has no {method}"})
