"""The CLN adapter, loaded by ``lightningd --plugin=asyncpay``.

It turns notifications, hooks and RPC calls into calls on the sans-IO core
and carries out the actions it returns. Nothing here decides protocol
questions. Every handler catches and logs: no exception leaves a hook or a
notification.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import fields

from pyln.client import Plugin, RpcError

from .. import __version__
from ..actions import InjectOnion
from ..blinded_path import IntroductionNode
from ..lsp import Endpoint, Flush, LspConfig, Mailbox, StaticInvoiceServer
from ..lsp.mailbox import Send, Wait
from ..onion_message import OnionMessage
from ..store import Store
from ..wire import WireError
from . import views

plugin = Plugin(dynamic=False)
ENDPOINT_SECRET_LABEL = "asyncpay/endpoint/v1"
DEFAULT_RECIPIENT_PATHS = 1


class Node:
    """Everything the plugin holds once ``init`` has run."""

    def __init__(self, plugin: Plugin, db_path: str, config: LspConfig) -> None:
        self.plugin, self.rpc, self.config = plugin, plugin.rpc, config
        self.lock = threading.RLock()
        info = self.rpc.getinfo()
        self.node_id = bytes.fromhex(info["id"])
        secret = bytes.fromhex(self.rpc.call("makesecret", {"string": ENDPOINT_SECRET_LABEL})["secret"])
        self.store = Store(db_path)
        self.db_path = db_path
        self.endpoint = Endpoint(self.store, self.node_id, secret, os.urandom)
        self.server = StaticInvoiceServer(self.store, self.endpoint, config, self.resolve_intro)
        self.mailbox = Mailbox(self.store, config)
        self.flushing: set[str] = set()
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
        scid = intro.describe().split("/")[0]
        peer = self.peer_for_scid(scid)
        if peer is not None:
            return bytes.fromhex(peer)
        try:
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
            self.plugin.log(f"injecting {action.purpose} failed: {e.error}", level="debug")
        # Our own reply whose next hop is an offline peer waits in the mailbox.
        if action.first_hop is not None:
            peer = action.first_hop.hex()
            with self.lock:
                if self.mailbox.qualifies(peer, peer in self.channel_peers()):
                    self.mailbox.intake(peer, None, action.path_key, action.packet, int(time.time()))
        return False

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
                self.plugin.log(f"unparseable onion for V: {e}", level="debug")
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
            self.mailbox.intake(
                peer, params.get("source"), bytes.fromhex(params["path_key"]),
                bytes.fromhex(params["incoming"]), now,
            )

    def start_flush(self, peer_id: str) -> bool:
        with self.lock:
            if peer_id in self.flushing:
                return False
            self.flushing.add(peer_id)
        threading.Thread(target=self._flush, args=(peer_id,), daemon=True, name=f"flush-{peer_id[:8]}").start()
        return True

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
                self.plugin.log(f"mailbox flush to {peer_id}: {flush.sent} delivered, {flush.failed} failed")
        except Exception:
            self.plugin.log(f"mailbox flush to {peer_id} crashed: {traceback.format_exc()}", level="warn")
        finally:
            with self.lock:
                self.flushing.discard(peer_id)

    def _reinject(self, path_key: bytes, onion: bytes) -> bool:
        try:
            self.rpc.call("injectonionmessage", {"path_key": path_key.hex(), "message": onion.hex()})
            return True
        except RpcError as e:
            self.plugin.log(f"mailbox re-injection failed: {e.error}", level="debug")
            return False

    def on_block(self) -> None:
        now = int(time.time())
        with self.lock:
            self.mailbox.expire(now)
            self.store.purge_contexts(now)


class _PluginLogHandler(logging.Handler):
    """Routes the core's ``logging`` records to lightningd's log."""

    LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            plugin.log(self.format(record), level=self.LEVELS.get(record.levelno, "broken"))
        except Exception:
            pass


node: Node | None = None


def _guard(what: str):
    """Decorator: log and swallow any exception from a notification handler."""

    def wrap(fn):
        def inner(*args, **kwargs):
            try:
                if node is not None:
                    fn(*args, **kwargs)
            except Exception:
                plugin.log(f"{what} failed: {traceback.format_exc()}", level="warn")

        inner.__name__ = fn.__name__
        return inner

    return wrap


# -- options -------------------------------------------------------------

plugin.add_option("asyncpay-db", None, "SQLite file (default: asyncpay.sqlite3 in the node's network directory)")
for _f in fields(LspConfig):
    _name = "asyncpay-" + _f.name.replace("_", "-")
    _kind = "int" if _f.type in ("int", int) else "string"
    plugin.add_option(_name, _f.default if _kind == "int" else str(_f.default),
                      f"asyncpay limit {_f.name} (default {_f.default})", opt_type=_kind)


def _config_from_options(options: dict) -> LspConfig:
    cfg = LspConfig()
    for name, field_name in LspConfig.option_names().items():
        value = options.get(name)
        if value is None:
            continue
        current = getattr(cfg, field_name)
        try:
            value = type(current)(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: not a valid {type(current).__name__}: {value!r}") from None
        if value <= 0:
            raise ValueError(f"{name}: must be positive, got {value}")
        setattr(cfg, field_name, value)
    return cfg


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    global node
    handler = _PluginLogHandler()
    logging.getLogger("asyncpay").addHandler(handler)
    logging.getLogger("asyncpay").setLevel(logging.DEBUG)
    cfg = _config_from_options(options)
    db = options.get("asyncpay-db") or os.path.join(configuration["lightning-dir"], "asyncpay.sqlite3")
    node = Node(plugin, db, cfg)
    plugin.log(f"asyncpay {__version__}: endpoint {node.endpoint.public_key.hex()}, database {db}")
    # Peers already connected when we start may have mail from before a restart.
    for p in plugin.rpc.listpeers().get("peers", []):
        if p.get("connected") and node.store.mailbox_totals(p["id"])[0]:
            node.start_flush(p["id"])


# -- notifications ----------------------------------------------------------


@plugin.subscribe("onionmessage_forward_fail")
@_guard("onionmessage_forward_fail")
def on_onionmessage_forward_fail(plugin, onionmessage_forward_fail=None, **kwargs):
    node.on_forward_fail(onionmessage_forward_fail or kwargs)


@plugin.subscribe("connect")
@_guard("connect")
def on_connect(plugin, connect=None, **kwargs):
    peer = (connect or kwargs).get("id")
    if peer:
        with node.lock:
            queued = node.store.mailbox_totals(peer)[0]
        if queued:
            node.start_flush(peer)


@plugin.subscribe("block_added")
@_guard("block_added")
def on_block_added(plugin, **kwargs):
    node.on_block()


# -- RPC methods ------------------------------------------------------------


def _need_node() -> Node:
    if node is None:
        raise RpcError("asyncpay", {}, {"message": "asyncpay is not initialised yet"})
    return node


@plugin.method("asyncpay-recipientpaths")
def recipientpaths(plugin, recipient_id, count=DEFAULT_RECIPIENT_PATHS, expiry=None):
    """Mint blinded paths a recipient uses to reach this static invoice server.

    recipient_id: the client's id (its node id lets the mailbox keep its mail);
    count: how many paths (1-16); expiry: seconds they stay valid.
    """
    n = _need_node()
    ttl = n.config.recipient_paths_ttl if expiry is None else int(expiry)
    now = int(time.time())
    with n.lock:
        paths = n.server.recipient_paths(str(recipient_id), int(count), ttl, now)
    return views.recipient_paths(recipient_id, paths, now + ttl)


@plugin.method("asyncpay-listrecipients")
def listrecipients(plugin):
    """List the recipients this server knows, with their stored invoice counts."""
    n = _need_node()
    with n.lock:
        return {"recipients": n.store.recipients()}


@plugin.method("asyncpay-listinvoices")
def listinvoices(plugin, recipient_id=None):
    """List stored static invoices, optionally for one recipient."""
    n = _need_node()
    with n.lock:
        rows = n.store.list_invoices(recipient_id)
    return {"invoices": [views.invoice_row(r, int(time.time())) for r in rows]}


@plugin.method("asyncpay-delinvoice")
def delinvoice(plugin, recipient_id, invoice_slot):
    """Delete the static invoice stored for (recipient_id, invoice_slot)."""
    n = _need_node()
    with n.lock:
        deleted = n.store.delete_invoice(str(recipient_id), int(invoice_slot))
    if not deleted:
        raise RpcError("asyncpay-delinvoice", {}, {"message": f"no invoice for {recipient_id} slot {invoice_slot}"})
    return {"deleted": {"recipient_id": recipient_id, "invoice_slot": int(invoice_slot)}}


@plugin.method("asyncpay-listmailbox")
def listmailbox(plugin):
    """Queued onion messages per offline peer: count, bytes, oldest age."""
    n = _need_node()
    now = int(time.time())
    with n.lock:
        peers = n.mailbox.summary(now)
        total = n.store.mailbox_totals()
    return {"peers": peers, "messages": total[0], "bytes": total[1]}


@plugin.method("asyncpay-flush")
def flush(plugin, peer_id):
    """Re-inject a peer's queued messages now (it must be connected)."""
    n = _need_node()
    with n.lock:
        queued = n.store.mailbox_totals(peer_id)[0]
    started = n.start_flush(peer_id) if queued else False
    return {"peer_id": peer_id, "queued": queued, "started": started}


@plugin.method("asyncpay-status")
def status(plugin):
    """Counters and sizes of the static invoice server and the mailbox."""
    n = _need_node()
    with n.lock:
        return views.status(n, int(time.time()))


def main() -> None:
    plugin.run()


if __name__ == "__main__":
    main()
