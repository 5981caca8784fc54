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

import dataclasses
import os
import queue
import re
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from pyln.client import RpcError

from ..actions import InjectOnion, Later
from ..blinded_path import IntroductionNode
from ..bookkeeping import Bookkeeping
from ..endpoint import Dropped, Endpoint
from ..lsp import LspConfig
from ..metrics import answering, replied
from ..offers import CHAINS
from ..onion_message import Forward, OnionMessage, Receive
from ..payment.forward_budget import CLN_CLTV_DELTA
from ..ratelimit import TokenBuckets
from ..store import Store
from ..wire import WireError
from .hold import HoldRole
from .lsp import LspRole
from .lsps5 import Lsps5Role
from .payer import PayerRole
from .recipient import RecipientRole
from .role import AnswerOnce, Respond, Role

ENDPOINT_SECRET_LABEL = "asyncpay/endpoint/v1"
ROUTE_MAX_VIA, ROUTE_MAX_FANOUT = 2, 32  # bounds on the walk of route_to
# route_to's caches: gossip changes slowly, and a stranger naming the same
# far node again costs no RPC. Bounded in entries; connect and disconnect
# drop the answers (they depend on who is connected), not the graph.
GRAPH_CACHE_SIZE, GRAPH_CACHE_TTL = 20_000, 600
ROUTE_CACHE_SIZE, ROUTE_CACHE_TTL = 10_000, 60
# New walks (cache misses) per second, in all: a stranger naming a fresh far
# node with every message costs lightningd at most this many times 1 +
# ROUTE_MAX_FANOUT listchannels a second; past it we send directly.
ROUTE_WALK_RATE, ROUTE_WALK_BURST = 5, 20
PEERS_CACHE_TTL = 30  # connect/disconnect drop it at once; this only bounds a missed event
ENDPOINT_QUEUE_MAX = 1000  # messages for V waiting for the worker; more are dropped
_UNKNOWN_PEER = re.compile(r"unknown next peer ([0-9a-f]{66}|\d+x\d+x\d+)")
C = TypeVar("C")
K, V = TypeVar("K"), TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded map whose entries expire (least recently stored go first)."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] < time.monotonic():
                return None
            return hit[1]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class Node:
    """Everything the plugin holds once ``init`` has run."""

    def __init__(self, rpc, log: Callable[..., None], db_path: str, *configs: object,
                 notify: Callable[[str, dict], None] | None = None) -> None:
        self.rpc, self.log = rpc, log
        self.configs = {type(c): c for c in configs}
        self._plugin_notify = notify or (lambda topic, params: None)
        self.lock = threading.RLock()
        info = self.rpc.getinfo()
        self.node_id = bytes.fromhex(info["id"])
        network = info.get("network", "bitcoin")
        if network not in CHAINS:
            raise ValueError(f"unknown network {network!r}")
        self.chain = CHAINS[network]  # BOLT 12 chain hash of our offers
        self.store = Store(db_path)
        self.db_path = db_path
        # Counters and served marks: written off the answers' path once started.
        self.books = Bookkeeping(self.store, self.lock)
        self.endpoint = Endpoint(self.store, self.node_id, self.secret(ENDPOINT_SECRET_LABEL), os.urandom,
                                 self.route_to)
        self.started_at = int(time.time())
        self._channel_peers: dict[str, set[str]] | None = None
        self._peer_channels: list[dict] | None = None
        self._connected: tuple[float, frozenset[str]] | None = None  # (fetched at, peers)
        self._peers_generation = 0  # bumped by every connect/disconnect: a fetch begun before is not kept
        self._graph: TtlCache[str, list[str]] = TtlCache(GRAPH_CACHE_SIZE, GRAPH_CACHE_TTL)
        self._routes: TtlCache[str, list[str]] = TtlCache(ROUTE_CACHE_SIZE, ROUTE_CACHE_TTL)
        self._intros: TtlCache[str, str] = TtlCache(GRAPH_CACHE_SIZE, GRAPH_CACHE_TTL)
        self._walks = TokenBuckets(ROUTE_WALK_BURST, ROUTE_WALK_RATE)
        self._walks_lock = threading.Lock()
        self._endpoint_queue: queue.Queue[tuple[str, int, str | None]] | None = None
        self.cltv_delta = self._read_cltv_delta()
        self.height = 0  # the tip as lightningd told it (current_height)
        self._height_lock = threading.Lock()
        self.lsp = LspRole(self)
        self.hold = HoldRole(self)
        self.recipient = RecipientRole(self)
        self.payer = PayerRole(self)
        self.lsps5 = Lsps5Role(self)
        # htlc_accepted asks them in this order: a hold request first, then
        # a forward to an offline client held for its wake-up (LSPS5).
        self.roles: list[Role] = [self.lsp, self.hold, self.lsps5, self.recipient, self.payer]
        self._by_kind = {kind: role for role in self.roles for kind in role.KINDS}

    @property
    def config(self) -> LspConfig:
        return self.config_for(LspConfig)

    def config_for(self, cls: type[C]) -> C:
        """The configuration of one role: as given, or its defaults."""
        return self.configs.setdefault(cls, cls())  # type: ignore[return-value]

    def _read_cltv_delta(self) -> int:
        """lightningd's cltv-delta: what it keeps between an HTLC's incoming
        and outgoing expiry when it forwards (payment/forward_budget.py)."""
        try:
            return int(self.rpc.call("listconfigs", {"config": "cltv-delta"})["configs"]["cltv-delta"]["value_int"])
        except (RpcError, KeyError, TypeError, ValueError) as e:
            self.log(f"cannot read cltv-delta ({e}); holding with lightningd's default {CLN_CLTV_DELTA}",
                     level="warn")
            return CLN_CLTV_DELTA

    def current_height(self) -> int:
        if not self.height:
            self.saw_height(int(self.rpc.getinfo().get("blockheight", 0)))
        return self.height

    def saw_height(self, height: int) -> None:
        with self._height_lock:
            self.height = max(self.height, height)

    def secret(self, label: str) -> bytes:
        """A 32-byte secret derived by the node's HSM (never stored by us)."""
        return bytes.fromhex(self.rpc.call("makesecret", {"string": label})["secret"])

    def start(self) -> None:
        self.books.start(self.config.counters_interval_ms / 1000,
                         on_error=lambda e: self.log(f"writing counters failed: {e}", level="warn"))
        self.start_endpoint_worker()
        for role in self.roles:
            role.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Clean shutdown: the mailbox intake is committed and the counters
        are written, each waited for at most ``timeout`` seconds (lightningd
        kills a plugin that takes 30)."""
        deadline = time.monotonic() + timeout
        while self.lsp.writer.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.books.stop(max(0.1, deadline - time.monotonic())):
            self.log("shutdown: counters not written, the store stayed busy", level="warn")

    def start_endpoint_worker(self) -> None:
        """From now on messages for V are handled in a worker thread, not in
        the notification handler: pyln runs every hook and notification on one
        thread, so a stranger's reply path (route_to's RPCs) must not delay
        the htlc_accepted calls queued behind it."""
        if self._endpoint_queue is not None:
            return
        self._endpoint_queue = queue.Queue(ENDPOINT_QUEUE_MAX)
        threading.Thread(target=self._endpoint_worker, daemon=True, name="endpoint").start()

    def _endpoint_worker(self) -> None:
        assert self._endpoint_queue is not None
        while True:
            outgoing, now, source = self._endpoint_queue.get()
            try:
                self._for_endpoint(outgoing, now, source)
            except Exception:
                self.log(f"message for V failed: {traceback.format_exc()}", level="warn")
            finally:
                self._endpoint_queue.task_done()

    def drain(self) -> None:
        """Wait until the messages for V handed to the worker are handled,
        and write the counters (tests, shutdown)."""
        if self._endpoint_queue is not None:
            self._endpoint_queue.join()
        self.books.flush()

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
        for ch in self.peer_channels():
            scids = out.setdefault(ch["peer_id"], set())
            for s in (ch.get("short_channel_id"), *(ch.get("alias") or {}).values()):
                if s:
                    scids.add(s)
        self._channel_peers = out
        return out

    def peer_channels(self) -> list[dict]:
        """listpeerchannels' channels, cached and dropped with ``channel_peers``."""
        cached = self._peer_channels
        if cached is None:
            cached = self._peer_channels = self.rpc.call("listpeerchannels").get("channels", [])
        return cached

    def channels_changed(self) -> None:
        self._channel_peers = None
        self._peer_channels = None
        self._peers_generation += 1
        self._connected = None
        self._routes.clear()

    def connected_peers(self) -> frozenset[str]:
        """Ids of the connected peers, from one ``listpeers``; cached until a
        connect or disconnect (``channels_changed``) or PEERS_CACHE_TTL."""
        cached = self._connected
        if cached is not None and time.monotonic() - cached[0] < PEERS_CACHE_TTL:
            return cached[1]
        generation, fetched_at = self._peers_generation, time.monotonic()
        peers = frozenset(p["id"] for p in self.rpc.call("listpeers").get("peers", []) if p.get("connected"))
        if generation == self._peers_generation:  # no connect/disconnect since we asked
            self._connected = (fetched_at, peers)
        return peers

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self.connected_peers()

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
        key = intro.describe()
        hit = self._intros.get(key)
        if hit is not None:
            return bytes.fromhex(hit) if hit else None
        try:
            scid = key.split("/")[0]
            chans = self.rpc.call("listchannels", {"short_channel_id": scid}).get("channels", [])
        except RpcError:
            return None
        found = next((ch["source"] for ch in chans if ch.get("direction") == intro.direction), "")
        self._intros.put(key, found)
        return bytes.fromhex(found) if found else None

    def route_to(self, target: bytes) -> list[bytes]:
        """The nodes between us and ``target`` for an onion message: none when
        it is a connected peer, else up to two nodes found in gossip, breadth
        first from ``target`` back to one of our connected peers (a wallet's
        reply to a payer goes through its LSP). Messages need no liquidity, so
        this is a walk over the channel graph, not a payment route.

        Bounded (a stranger's reply path picks ``target``): the connected
        peers come from a cache, each node's channels are asked once per
        GRAPH_CACHE_TTL, an answer is kept ROUTE_CACHE_TTL; a new far target
        costs at most 1 + ROUTE_MAX_FANOUT ``listchannels``, a known one none,
        and at most ROUTE_WALK_RATE new ones a second are walked.
        Messages for V are routed in the endpoint worker, before the node lock
        is taken (``_prefetch_route``)."""
        t = target.hex()
        try:
            peers = self.connected_peers()
            if t in peers:
                return []  # the common case
            hit = self._routes.get(t)
            if hit is not None:
                return [bytes.fromhex(x) for x in hit]
            with self._walks_lock:
                allowed = self._walks.allow("walk", time.monotonic())
            if not allowed:
                self.books.bump("route_walks_limited")
                return []
            via = self._walk(t, peers)
        except (RpcError, KeyError) as e:
            self.log(f"no route to {t} for an onion message: {e}", level="debug")
            return []  # try directly; a failure is logged when it is sent
        self._routes.put(t, via)
        return [bytes.fromhex(x) for x in via]

    def _walk(self, target: str, peers: frozenset[str]) -> list[str]:
        # Never through our own node: a neighbour of ours that is offline is
        # sent to directly (and its mail kept, if it needs it).
        paths = {target: [], self.node_id.hex(): []}  # node -> the nodes after it on the way to target
        frontier = [target]
        for _ in range(ROUTE_MAX_VIA):
            nxt = []
            for node in frontier[:ROUTE_MAX_FANOUT]:
                for n in self._channels_of(node):
                    if n in paths:
                        continue
                    paths[n] = [node, *paths[node]]
                    if n in peers:
                        return [n, *paths[n]][:-1]
                    nxt.append(n)
            frontier = nxt
        return []

    def _channels_of(self, node: str) -> list[str]:
        """The far ends of ``node``'s channels in gossip (cached)."""
        hit = self._graph.get(node)
        if hit is None:
            hit = [ch["destination"] for ch in self.rpc.call("listchannels", {"source": node}).get("channels", [])]
            self._graph.put(node, hit)
        return hit

    def _prefetch_route(self, msg: OnionMessage) -> Forward | Receive | None:
        """Warm route_to's caches for the reply path of a message for V, with
        no lock held, so that the reply built under the node lock costs no RPC.
        Returns the peeled message (None if it does not peel), for
        ``endpoint.open``: V's layer is peeled once."""
        try:
            out = self.endpoint.peel(msg)
        except Exception:
            return None  # endpoint.open counts it
        if not isinstance(out, Receive) or out.payload.reply_path is None:
            return out
        intro = self.resolve_intro(out.payload.reply_path.introduction)
        if intro is not None and intro != self.node_id:
            self.route_to(intro)
        return out

    # -- actions -----------------------------------------------------------

    def inject(self, action: InjectOnion) -> bool:
        try:
            self.rpc.call("injectonionmessage", {"path_key": action.path_key.hex(), "message": action.packet.hex()})
            self.books.bump(f"sent_{action.purpose}")
            replied(action.purpose)
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

    def perform(self, actions: list[InjectOnion | Later]) -> None:
        """In order; a ``Later`` is built only when everything before it is sent."""
        for a in actions:
            if isinstance(a, Later):
                self.perform(a.build())
            else:
                self.inject(a)

    # -- events ------------------------------------------------------------

    def notify(self, topic: str, params: dict) -> None:
        """A custom CLN notification of a role; the mailbox's also wakes the
        client through its LSPS5 webhooks (``lsps5.onion_message_incoming``)."""
        self._plugin_notify(topic, params)
        if topic == "asyncpay_mailbox_queued" and params.get("peer_id"):
            self.lsps5.mail_queued(params["peer_id"])

    def on_custommsg(self, peer_id: str, payload: str) -> None:
        """A BOLT 8 custom message: LSPS0 (type 37913) goes to the LSPS5
        service, our LSP's hold confirmation to the payer."""
        self.lsps5.on_custommsg(peer_id, payload)
        self.payer.on_custommsg(peer_id, payload)

    def on_forward_fail(self, params: dict) -> None:
        now = int(time.time())
        next_node = params.get("next_node_id")
        if next_node is not None and bytes.fromhex(next_node) == self.endpoint.public_key:
            source = params.get("source")
            if self._endpoint_queue is None:
                self._for_endpoint(params.get("outgoing"), now, source)
                return
            try:
                self._endpoint_queue.put_nowait((params.get("outgoing"), now, source))
            except queue.Full:
                self.books.bump("dropped_endpoint_busy")
            return
        for role in self.roles:
            if role.on_forward_fail(params, now):
                return

    @answering
    def _for_endpoint(self, outgoing: str | None, now: int, source: str | None = None) -> None:
        """A message for V handed to our node by ``source``: the role's
        answers carry it as their ``cause`` (the mailbox counts them against
        it) and the path context's owner."""
        if not outgoing:
            return
        try:
            msg = OnionMessage.decode(bytes.fromhex(outgoing))
        except (WireError, ValueError) as e:
            self.log(f"unparseable onion for V: {e}", level="debug")
            return
        peeled = self._prefetch_route(msg)
        with self.lock:
            try:
                delivered = dataclasses.replace(self.endpoint.open(msg, now, peeled), source=source)
                role = self._by_kind.get(delivered.kind)
                if role is None:
                    raise Dropped("unknown_kind", delivered.kind)
                actions = role.on_message(delivered, now)
            except Dropped as e:
                self.books.bump(f"dropped_{e.reason}")
                self.log(f"dropped message for V: {e}", level="debug")
                return

        def attribute(a: InjectOnion) -> InjectOnion:
            return dataclasses.replace(a, cause=a.cause or source, owner=a.owner or delivered.owner)

        self.perform([Later(lambda b=a.build: [attribute(x) for x in b()]) if isinstance(a, Later) else attribute(a)
                      for a in actions])

    def on_connect(self, peer_id: str) -> None:
        self.channels_changed()
        for role in self.roles:
            role.on_connect(peer_id)

    def on_block(self, height: int = 0) -> None:
        now = int(time.time())
        self.saw_height(height)
        for role in self.roles:
            try:  # one role's failure (its store pass) must not keep the block from the others
                role.on_block(height, now)
            except Exception:
                self.log(f"block_added in {type(role).__name__} failed: {traceback.format_exc()}", level="warn")
        try:
            with self.lock:
                self.store.purge_contexts(now)
        except Exception:
            self.log(f"purging path contexts failed: {traceback.format_exc()}", level="warn")

    def on_htlc_accepted(self, params: dict, respond: Respond) -> None:
        """The roles in turn; only an HTLC none of them recognised continues.
        A role that raises may have taken the HTLC (held it, stored a part):
        continuing it could forward or settle it without its release, so it
        is failed (BOLT 4 temporary_node_failure). One verdict per call,
        whatever the roles do."""
        once = AnswerOnce(respond, lambda first, again: self.log(
            f"second verdict {again.get('result')} for an HTLC already answered {first.get('result')}: dropped",
            level="broken"))
        h = params.get("htlc") or {}
        try:
            self.saw_height(int(h["cltv_expiry"]) - int(h["cltv_expiry_relative"]))
        except (KeyError, TypeError, ValueError):
            pass
        for role in self.roles:
            try:
                if role.on_htlc(params, once):
                    return
            except Exception:
                self.log(f"htlc_accepted in {type(role).__name__} failed: {traceback.format_exc()}", level="warn")
                if not once.called:
                    once({"result": "fail", "failure_message": "2002"})
                return
        once({"result": "continue"})

    def status(self) -> dict:
        self.books.flush()  # the roles read their counters from the store
        out: dict = {}
        for role in self.roles:
            out.update(role.status())
        return out
