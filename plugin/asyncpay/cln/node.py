"""The one place that routes lightningd's events to the role adapters.

``Node`` holds what every role shares (the RPC, the store, the endpoint V,
one lock) and the role adapters (``cln/lsp.py`` and its siblings), and
routes to them:

* an ``onionmessage_forward_fail`` for V: peeled once, then handed to the
  role whose context kind the path carries; any other failed forward: the
  roles in turn (the LSP's mailbox takes it);
* ``connect``, ``block_added``: every role;
* ``htlc_accepted``: the roles in turn until one takes the HTLC, else
  ``continue``.

It works over any ``rpc`` object with pyln's ``call`` (the real one, or the
in-process emulation in tests). Facts it relies on (CLN v26.06, design §5):
``injectonionmessage`` takes the bare onion packet and answers an RPC error,
never a notification, when the next peer is not connected.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pyln.client import RpcError

from ..actions import InjectOnion
from ..blinded_path import IntroductionNode
from ..endpoint import Dropped, Endpoint
from ..lsp import LspConfig
from ..offers import CHAINS
from ..onion_message import OnionMessage
from ..store import Store
from ..wire import WireError
from .hold import HoldRole
from .lsp import LspRole
from .payer import PayerRole
from .recipient import RecipientRole
from .role import Respond, Role

ENDPOINT_SECRET_LABEL = "asyncpay/endpoint/v1"
ROUTE_MAX_VIA, ROUTE_MAX_FANOUT = 2, 32  # bounds on the walk of route_to
_UNKNOWN_PEER = re.compile(r"unknown next peer ([0-9a-f]{66}|\d+x\d+x\d+)")
C = TypeVar("C")


class Node:
    """Everything the plugin holds once ``init`` has run."""

    def __init__(self, rpc, log: Callable[..., None], db_path: str, *configs: object,
                 notify: Callable[[str, dict], None] | None = None) -> None:
        self.rpc, self.log = rpc, log
        self.configs = {type(c): c for c in configs}
        self.notify = notify or (lambda topic, params: None)
        self.lock = threading.RLock()
        info = self.rpc.getinfo()
        self.node_id = bytes.fromhex(info["id"])
        network = info.get("network", "bitcoin")
        if network not in CHAINS:
            raise ValueError(f"unknown network {network!r}")
        self.chain = CHAINS[network]  # BOLT 12 chain hash of our offers
        self.store = Store(db_path)
        self.db_path = db_path
        self.endpoint = Endpoint(self.store, self.node_id, self.secret(ENDPOINT_SECRET_LABEL), os.urandom,
                                 self.route_to)
        self.started_at = int(time.time())
        self._channel_peers: dict[str, set[str]] | None = None
        self.lsp = LspRole(self)
        self.hold = HoldRole(self)
        self.recipient = RecipientRole(self)
        self.payer = PayerRole(self)
        # htlc_accepted asks them in this order: a hold request first.
        self.roles: list[Role] = [self.lsp, self.hold, self.recipient, self.payer]
        self._by_kind = {kind: role for role in self.roles for kind in role.KINDS}

    @property
    def config(self) -> LspConfig:
        return self.config_for(LspConfig)

    def config_for(self, cls: type[C]) -> C:
        """The configuration of one role: as given, or its defaults."""
        return self.configs.setdefault(cls, cls())  # type: ignore[return-value]

    def secret(self, label: str) -> bytes:
        """A 32-byte secret derived by the node's HSM (never stored by us)."""
        return bytes.fromhex(self.rpc.call("makesecret", {"string": label})["secret"])

    def start(self) -> None:
        for role in self.roles:
            role.start()

    # -- lightningd lookups ------------------------------------------------

    def channel_peers(self) -> dict[str, set[str]]:
        """peer id -> its channels' scids (real and aliases), from listpeerchannels.

        Cached: mailbox intake asks on every message. ``channels_changed``
        (channel_opened, channel_state_changed, connect, disconnect) drops it.
        """
        cached = self._channel_peers
        if cached is not None:
            return cached
        out: dict[str, set[str]] = {}
        for ch in self.rpc.call("listpeerchannels").get("channels", []):
            scids = out.setdefault(ch["peer_id"], set())
            for s in (ch.get("short_channel_id"), *(ch.get("alias") or {}).values()):
                if s:
                    scids.add(s)
        self._channel_peers = out
        return out

    def channels_changed(self) -> None:
        self._channel_peers = None

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

    def route_to(self, target: bytes) -> list[bytes]:
        """The nodes between us and ``target`` for an onion message: none when
        it is a connected peer, else up to two nodes found in gossip, breadth
        first from ``target`` back to one of our connected peers (a wallet's
        reply to a payer goes through its LSP). Messages need no liquidity, so
        this is a walk over the channel graph, not a payment route."""
        try:
            if any(p.get("connected") for p in self.rpc.call("listpeers", {"id": target.hex()}).get("peers", [])):
                return []  # the common case, one cheap lookup
            peers = {p["id"] for p in self.rpc.call("listpeers").get("peers", []) if p.get("connected")}
            paths = {target.hex(): []}  # node -> the nodes after it on the way to target
            frontier = [target.hex()]
            for _ in range(ROUTE_MAX_VIA):
                nxt = []
                for node in frontier[:ROUTE_MAX_FANOUT]:
                    for ch in self.rpc.call("listchannels", {"source": node}).get("channels", []):
                        n = ch["destination"]
                        if n in paths:
                            continue
                        paths[n] = [node, *paths[node]]
                        if n in peers:
                            return [bytes.fromhex(x) for x in [n, *paths[n]][:-1]]
                        nxt.append(n)
                frontier = nxt
        except (RpcError, KeyError) as e:
            self.log(f"no route to {target.hex()} for an onion message: {e}", level="debug")
        return []  # try directly; a failure is logged when it is sent

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
        if peer is not None:
            self.lsp.queue_own(peer, action, int(time.time()))
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
            self._for_endpoint(params.get("outgoing"), now)
            return
        for role in self.roles:
            if role.on_forward_fail(params, now):
                return

    def _for_endpoint(self, outgoing: str | None, now: int) -> None:
        if not outgoing:
            return
        try:
            msg = OnionMessage.decode(bytes.fromhex(outgoing))
        except (WireError, ValueError) as e:
            self.log(f"unparseable onion for V: {e}", level="debug")
            return
        with self.lock:
            try:
                delivered = self.endpoint.open(msg, now)
                role = self._by_kind.get(delivered.kind)
                if role is None:
                    raise Dropped("unknown_kind", delivered.kind)
                actions = role.on_message(delivered, now)
            except Dropped as e:
                self.store.bump(f"dropped_{e.reason}")
                self.log(f"dropped message for V: {e}", level="debug")
                return
        self.perform(actions)

    def on_connect(self, peer_id: str) -> None:
        self.channels_changed()
        for role in self.roles:
            role.on_connect(peer_id)

    def on_block(self, height: int = 0) -> None:
        now = int(time.time())
        for role in self.roles:
            role.on_block(height, now)
        with self.lock:
            self.store.purge_contexts(now)

    def on_htlc_accepted(self, params: dict, respond: Respond) -> None:
        for role in self.roles:
            if role.on_htlc(params, respond):
                return
        respond({"result": "continue"})

    def status(self) -> dict:
        out: dict = {}
        for role in self.roles:
            out.update(role.status())
        return out
