"""The LSP role's adapter: the static invoice server and the mailbox over RPC.

Facts it relies on (CLN v26.06, design §5): ``onionmessage_forward_fail``
names the next hop by ``next_node_id`` or, for scid hops,
``next_short_channel_id_dir``; a flush re-injects the stored onion with
``injectonionmessage``, paced under connectd's per-peer limit.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback

from pyln.client import RpcError

from ..actions import InjectOnion, Later
from ..endpoint import Delivered
from ..lsp import Flush, LspConfig, Mailbox, StaticInvoiceServer
from ..lsp.mailbox import Send, Wait
from ..lsp.server import KINDS
from ..storage import StoreError
from .role import Host, Role

Intake = tuple[str, "str | None", bytes, bytes, int]  # peer, source, path_key, onion, received at

# Our own messages that wait in the mailbox when their first hop is an
# offline peer: only what a sleeping peer needs (docs/architecture.md, "The
# mailbox"). ANY: whoever the sleeping peer is; OWNER: only when it is the
# recipient the answered path was minted for (a reply path naming another
# sleeping wallet is not queued). Anything else is not kept: a reply to a
# payer whose path leads through an offline peer (the payer retries), and a
# forwarded invoice_request (the payer already has the static invoice; LDK
# stopped buffering these as a DoS fix, lightningdevkit/rust-lightning#4114).
ANY, OWNER = "any", "owner"
MAILBOX_PURPOSES = {
    "held_htlc_available": ANY,  # payer or holding LSP -> sleeping recipient (design §3 step 8)
    "release_held_htlc": ANY,  # recipient -> sleeping holder of the HTLC
    "offer_paths": OWNER,  # the server's answers to the recipient itself
    "static_invoice_persisted": OWNER,
}


class IntakeWriter:
    """Group commit for the mailbox: a notification handler only queues the
    message; this thread commits everything queued so far in one transaction,
    so with ``synchronous=FULL`` one fsync covers a whole batch instead of one
    per message (bench/bench_lsp.py measures both). A message is "taken"
    (logged, and announced with ``asyncpay_mailbox_queued``) only after its
    batch is on disk; until then it is as much in flight as it was in CLN.
    """

    MAX_BATCH = 512

    def __init__(self, role: LspRole) -> None:
        self.role = role
        self.queue: queue.Queue[Intake] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True, name="mailbox-intake")
        self.thread.start()

    def submit(self, item: Intake) -> None:
        self.queue.put(item)

    def drain(self) -> None:
        """Block until everything submitted so far is committed (tests, shutdown)."""
        self.queue.join()

    def _run(self) -> None:
        while True:
            items = [self.queue.get()]
            while len(items) < self.MAX_BATCH:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.role.commit_intake(items)
            except StoreError as e:  # the store down or locked out: these messages are lost in flight, no bug
                self.role.node.log(f"mailbox intake failed: {e}", level="unusual")
            except Exception:
                self.role.node.log(f"mailbox intake failed: {traceback.format_exc()}", level="broken")
            finally:
                for _ in items:
                    self.queue.task_done()


class LspRole(Role):
    KINDS = KINDS

    def __init__(self, node: Host) -> None:
        super().__init__(node)
        self.config: LspConfig = node.config_for(LspConfig)
        self.server = StaticInvoiceServer(node.store, node.endpoint, self.config, node.resolve_intro, node.chain,
                                          books=node.books)
        self.mailbox = Mailbox(node.store, self.config)
        self.flushing: dict[str, threading.Thread] = {}
        self.writer = IntakeWriter(self)

    def on_message(self, d: Delivered, now: int) -> list[InjectOnion | Later]:
        # The payer's static invoice first; the forwarded copy is built once it is sent.
        return self.server.answer(d, now)

    def on_forward_fail(self, params: dict, now: int) -> bool:
        """A message for an offline peer: keep it in the mailbox if the peer qualifies."""
        node = self.node
        peer = params.get("next_node_id")
        if peer is None and params.get("next_short_channel_id_dir"):
            peer = node.peer_for_scid(params["next_short_channel_id_dir"])
        if peer is None or not params.get("incoming") or not params.get("path_key"):
            return False
        has_channel = peer in node.channel_peers()
        with node.lock:
            eligible = self.mailbox.qualifies(peer, has_channel)
        if not eligible:
            node.books.bump("mailbox_dropped_not_eligible")  # a stranger's message: no fsync each
            return True
        self.writer.submit((peer, params.get("source"), bytes.fromhex(params["path_key"]),
                            bytes.fromhex(params["incoming"]), now))
        return True

    def commit_intake(self, items: list[Intake]) -> None:
        """Commit a batch of messages, then log and announce each peer's mail,
        and flush to any such peer that is connected by now."""
        node = self.node
        with node.lock:
            refused = self.mailbox.intake_batch([i[:4] for i in items], items[-1][4])
        wakeups, queued = [], set()
        for (peer, *_), why in zip(items, refused):
            if why is None:
                # Logged after the commit: every such line is a message on disk.
                node.log(f"mailbox: queued a message for {peer}", level="debug")
                queued.add(peer)
                with node.lock:
                    w = self.mailbox.wakeup(peer, int(time.time()))
                if w is not None:
                    wakeups.append(w)
        for w in wakeups:
            node.notify("asyncpay_mailbox_queued", w)
        self.flush_connected(queued)

    def flush_connected(self, peers: set[str]) -> None:
        """Start a flush for each of ``peers`` that is connected. A peer that
        connected while its message was on the way to disk found nothing
        committed in ``on_connect``; checked after the commit, it is either
        seen connected here or its connect is handled later and finds the mail
        (a connect drops the cached peer list first)."""
        with self.node.lock:
            peers = {p for p in peers if p not in self.flushing}
        if not peers:
            return
        connected = self.node.connected_peers()
        for peer in peers & connected:
            self.start_flush(peer)

    def queue_own(self, peer: str, action: InjectOnion, now: int) -> bool:
        """Our own message whose next hop is an offline peer waits in the
        mailbox if the sleeping peer needs it (MAILBOX_PURPOSES), counted
        against the peer whose message caused it (``action.cause``)."""
        node = self.node
        policy = MAILBOX_PURPOSES.get(action.purpose)
        if policy is None or (policy == OWNER and action.owner != peer):
            node.books.bump(f"mailbox_not_queued_{action.purpose}")
            return False
        with node.lock:
            eligible = self.mailbox.qualifies(peer, peer in node.channel_peers())
        if not eligible:
            node.books.bump("mailbox_dropped_not_eligible")
            return False
        self.writer.submit((peer, action.cause, action.path_key, action.packet, now))
        return True

    def on_connect(self, peer_id: str) -> None:
        """A peer connected: deliver its mail, if any."""
        with self.node.lock:
            queued = self.node.store.mailbox_totals(peer_id)[0]
        if queued:
            self.start_flush(peer_id)

    def on_block(self, height: int, now: int) -> None:
        with self.node.lock:
            self.mailbox.expire(now)

    def status(self) -> dict:
        """What the mailbox's shares and route_to's bounds turned away (the
        rest of the LSP's figures are in ``server`` and ``mailbox``)."""
        c = self.node.store.counters()
        return {"lsp": {
            "mailbox_evicted": c.get("mailbox_evicted", 0),
            "mailbox_not_queued": {k[len("mailbox_not_queued_"):]: v for k, v in c.items()
                                   if k.startswith("mailbox_not_queued_")},
            "route_walks_limited": c.get("route_walks_limited", 0),
        }}

    # -- flushing ------------------------------------------------------------

    def start_flush(self, peer_id: str) -> bool:
        with self.node.lock:
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
            with self.node.lock:
                threads = list(self.flushing.values())
            if not threads:
                return
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    def _flush(self, peer_id: str) -> None:
        node = self.node
        try:
            # Let connectd finish the handshake before the first message.
            time.sleep(self.config.mailbox_flush_interval_ms / 1000)
            with node.lock:
                flush = Flush(self.mailbox, peer_id, time.monotonic())
            while True:
                with node.lock:
                    step = flush.poll(time.monotonic())
                if step is None:
                    break
                if isinstance(step, Wait):
                    time.sleep(step.seconds)
                    continue
                assert isinstance(step, Send)
                ok = self._reinject(step.row.path_key, step.row.onion)
                with node.lock:
                    flush.result(step.row, ok, time.monotonic())
            if flush.sent or flush.failed:
                node.log(f"mailbox flush to {peer_id}: {flush.sent} delivered, {flush.failed} failed")
        except Exception:
            node.log(f"mailbox flush to {peer_id} crashed: {traceback.format_exc()}", level="warn")
        finally:
            with node.lock:
                self.flushing.pop(peer_id, None)

    def _reinject(self, path_key: bytes, onion: bytes) -> bool:
        try:
            self.node.rpc.call("injectonionmessage", {"path_key": path_key.hex(), "message": onion.hex()})
            return True
        except RpcError as e:
            self.node.log(f"mailbox re-injection failed: {e.error}", level="debug")
            return False
