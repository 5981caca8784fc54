"""The glue between lightningd and the sans-IO core, over any ``rpc`` object
with pyln's ``call`` (the real one, or the in-process emulation in tests).

It turns CLN events into core calls and carries out the core's actions with
RPC. Facts it relies on (CLN v26.06, design §5): ``injectonionmessage``
takes the bare onion packet and answers an RPC error, never a notification,
when the next peer is not connected; ``onionmessage_forward_fail`` names the
next hop by ``next_node_id`` or, for scid hops, ``next_short_channel_id_dir``.
"""

from __future__ import annotations

import os
import re
import threading
import time
import traceback
from collections.abc import Callable

from pyln.client import RpcError

from ..actions import InjectOnion
from ..blinded_path import IntroductionNode
from ..lsp import Endpoint, Flush, LspConfig, Mailbox, StaticInvoiceServer
from ..lsp.mailbox import Send, Wait
from ..onion_message import OnionMessage
from ..store import Store
from ..wire import WireError

ENDPOINT_SECRET_LABEL = "asyncpay/endpoint/v1"
_UNKNOWN_PEER = re.compile(r"unknown next peer ([0-9a-f]{66}|\d+x\d+x\d+)")


class Node:
    """Everything the plugin holds once ``init`` has run."""

    def __init__(self, rpc, log: Callable[..., None], db_path: str, config: LspConfig) -> None:
        self.rpc, self.log, self.config = rpc, log, config
        self.lock = threading.RLock()
        info = self.rpc.getinfo()
        self.node_id = bytes.fromhex(info["id"])
        secret = bytes.fromhex(self.rpc.call("makesecret", {"string": ENDPOINT_SECRET_LABEL})["secret"])
        self.store = Store(db_path)
        self.db_path = db_path
        self.endpoint = Endpoint(self.store, self.node_id, secret, os.urandom)
        self.server = StaticInvoiceServer(self.store, self.endpoint, config, self.resolve_intro)
        self.mailbox = Mailbox(self.store, config)
        self.flushing: dict[str, threading.Thread] = {}
        self.started_at = int(time.time())

    # -- lightningd lookups ------------------------------------------------

    def channel_peers(self) -> dict[str, set[str]]:
        """peer id -> its channels' scids (real and aliases), from listpeerchannels."""
        out: dict[str, set[str]] = {}
        for ch in self.rpc.call("listpeerchannels").get("channels", []):
            scids = out.setdefault(ch["peer_id"], set())
            for s in (ch.get("short_channel_id"), *(ch.get("alias") or {}).values()):
                if s:
                    scids.add(s)
        return out

    def peer_for_scid(self, scid_dir: str) -> str | None:
        scid = scid_dir.split("/")[0]
        for peer, scids in self.channel_peers().items():
            if scid in scids:
                return peer
        return None

    def resolve_intro(self, intro: IntroductionNode) -> bytes | None:
        """Node id behind a sciddir introduction node: our channels, then gossip."""
        if intro.node_id is not None:
            return intro.node_id
        peer = self.peer_for_scid(intro.describe())
        if peer is not None:
            return bytes.fromhex(peer)
        try:
            scid = intro.describe().split("/")[0]
            chans = self.rpc.call("listchannels", {"short_channel_id": scid}).get("channels", [])
        except RpcError:
            return None
        for ch in chans:
            if ch.get("direction") == intro.direction:
                return bytes.fromhex(ch["source"])
        return None

    # -- actions -----------------------------------------------------------

    def inject(self, action: InjectOnion) -> bool:
        try:
            self.rpc.call("injectonionmessage", {"path_key": action.path_key.hex(), "message": action.packet.hex()})
            with self.lock:
                self.store.bump(f"sent_{action.purpose}")
            return True
        except RpcError as e:
            self.log(f"injecting {action.purpose} failed: {e.error}", level="debug")
            peer = self.offline_next_peer(action, e.error)
        # Our own message whose next hop is an offline peer waits in the mailbox.
        if peer is not None:
            with self.lock:
                if self.mailbox.qualifies(peer, peer in self.channel_peers()):
                    self.mailbox.intake(peer, None, action.path_key, action.packet, int(time.time()))
        return False

    def offline_next_peer(self, action: InjectOnion, error) -> str | None:
        """The peer an injected onion could not reach. When the destination
        path starts at our node we cannot read our own hop, but connectd's
        error names it: "onion msg: unknown next peer <node id | scid/dir>"."""
        if action.first_hop is not None:
            return action.first_hop.hex()
        m = _UNKNOWN_PEER.search(str((error or {}).get("message", "")))
        if m is None:
            return None
        return m.group(1) if len(m.group(1)) == 66 else self.peer_for_scid(m.group(1))

    def perform(self, actions: list[InjectOnion]) -> None:
        for a in actions:
            self.inject(a)

    # -- events ------------------------------------------------------------

    def on_forward_fail(self, params: dict) -> None:
        now = int(time.time())
        next_node = params.get("next_node_id")
        if next_node is not None and bytes.fromhex(next_node) == self.endpoint.public_key:
            outgoing = params.get("outgoing")
            if not outgoing:
                return
            try:
                msg = OnionMessage.decode(bytes.fromhex(outgoing))
            except (WireError, ValueError) as e:
                self.log(f"unparseable onion for V: {e}", level="debug")
                return
            with self.lock:
                actions = self.server.handle(msg, now)
            self.perform(actions)
            return
        peer = next_node
        if peer is None and params.get("next_short_channel_id_dir"):
            peer = self.peer_for_scid(params["next_short_channel_id_dir"])
        if peer is None or not params.get("incoming") or not params.get("path_key"):
            return
        has_channel = peer in self.channel_peers()
        with self.lock:
            if not self.mailbox.qualifies(peer, has_channel):
                self.store.bump("mailbox_dropped_not_eligible")
                return
            refused = self.mailbox.intake(
                peer, params.get("source"), bytes.fromhex(params["path_key"]),
                bytes.fromhex(params["incoming"]), now,
            )
        if refused is None:
            # Logged after the commit: every such line is a message on disk.
            self.log(f"mailbox: queued a message for {peer}", level="debug")

    def on_connect(self, peer_id: str) -> bool:
        """A peer connected: deliver its mail, if any."""
        with self.lock:
            queued = self.store.mailbox_totals(peer_id)[0]
        return self.start_flush(peer_id) if queued else False

    def start_flush(self, peer_id: str) -> bool:
        with self.lock:
            if peer_id in self.flushing:
                return False
            t = threading.Thread(target=self._flush, args=(peer_id,), daemon=True, name=f"flush-{peer_id[:8]}")
            self.flushing[peer_id] = t
        t.start()
        return True

    def wait_flushes(self, timeout: float = 30.0) -> None:
        """Join running flushes (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                threads = list(self.flushing.values())
            if not threads:
                return
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    def _flush(self, peer_id: str) -> None:
        try:
            # Let connectd finish the handshake before the first message.
            time.sleep(self.config.mailbox_flush_interval_ms / 1000)
            with self.lock:
                flush = Flush(self.mailbox, peer_id, time.monotonic())
            while True:
                with self.lock:
                    step = flush.poll(time.monotonic())
                if step is None:
                    break
                if isinstance(step, Wait):
                    time.sleep(step.seconds)
                    continue
                assert isinstance(step, Send)
                ok = self._reinject(step.row.path_key, step.row.onion)
                with self.lock:
                    flush.result(step.row, ok, time.monotonic())
            if flush.sent or flush.failed:
                self.log(f"mailbox flush to {peer_id}: {flush.sent} delivered, {flush.failed} failed")
        except Exception:
            self.log(f"mailbox flush to {peer_id} crashed: {traceback.format_exc()}", level="warn")
        finally:
            with self.lock:
                self.flushing.pop(peer_id, None)

    def _reinject(self, path_key: bytes, onion: bytes) -> bool:
        try:
            self.rpc.call("injectonionmessage", {"path_key": path_key.hex(), "message": onion.hex()})
            return True
        except RpcError as e:
            self.log(f"mailbox re-injection failed: {e.error}", level="debug")
            return False

    def on_block(self) -> None:
        now = int(time.time())
        with self.lock:
            self.mailbox.expire(now)
            self.store.purge_contexts(now)
