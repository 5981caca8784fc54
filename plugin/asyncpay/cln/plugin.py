"""The CLN adapter, loaded by ``lightningd --plugin=asyncpay``.

It turns notifications, hooks and RPC calls into calls on the sans-IO core
and carries out the actions it returns. Nothing here decides protocol
questions. Every handler catches and logs: no exception leaves a hook or a
notification.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
import sys
import time
import traceback

from .. import __version__
from ..metrics import MetricsConfig
from ..storage import StoreError, shown
from . import metrics, params, rpc_hold, rpc_lsps5, rpc_payer, rpc_recipient, views
from . import options as opts
from .dispatch import AsyncpayPlugin
from .errors import NotFound, NotReady
from .hold import asks_for_hold
from .node import Node

plugin = AsyncpayPlugin(dynamic=False)
DEFAULT_RECIPIENT_PATHS = 1


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
        # functools.wraps keeps fn's signature visible: pyln binds arguments
        # (plugin, the topic's payload) by inspecting it.
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                if node is not None:
                    fn(*args, **kwargs)
            except Exception:
                plugin.log(f"{what} failed: {traceback.format_exc()}", level="warn")

        return inner

    return wrap


# -- options -------------------------------------------------------------

plugin.add_option("asyncpay-db", None,
                  "SQLite file of asyncpay's state (default: asyncpay.sqlite3 in the node's network directory), "
                  "or a postgresql:// URI (docs/configuration.md).")
opts.register(plugin)
# Custom notifications (docs/rpc.md): a push-notification plugin can wake a
# sleeping wallet when mail waits for it.
plugin.add_notification_topic("asyncpay_mailbox_queued")


@plugin.init()
def init(options, configuration, plugin, **kwargs):
    """Start every role, or disable the plugin with a one-line reason.

    Any failure (a bad option, an asyncpay-db we cannot open, an RPC error)
    answers CLN's ``{"disable": reason}``: lightningd logs the reason and runs
    on without us, instead of keeping a plugin whose hooks find no node."""
    global node
    _route_logging()
    try:
        started = _start(options, configuration, plugin)
    except _Disable as e:
        reason = str(e)
    except Exception as e:
        plugin.log(f"init failed: {traceback.format_exc()}", level="debug")
        reason = f"cannot start: {_one_line(e)}"
    else:
        node = started
        return None
    plugin.log(f"asyncpay disabled: {reason}", level="warn")
    return {"disable": reason}


class _Disable(Exception):
    """A startup failure whose message is already the reason we give."""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "no detail"
    return f"{type(e).__name__}: {text}"[:300]


def _route_logging() -> None:
    log = logging.getLogger("asyncpay")
    if not any(isinstance(h, _PluginLogHandler) for h in log.handlers):
        log.addHandler(_PluginLogHandler())
    log.setLevel(logging.DEBUG)
    log.propagate = False  # pyln's root handler would log each line twice


def _start(options, configuration, plugin) -> Node:
    """A fully started Node; nothing is published (``node``) until it is."""
    try:
        configs = opts.load(options)
    except ValueError as e:
        raise _Disable(str(e)) from e
    db = options.get("asyncpay-db") or os.path.join(configuration["lightning-dir"], "asyncpay.sqlite3")
    try:
        started = Node(plugin.rpc, plugin.log, db, *configs, notify=plugin.notify)
    except (sqlite3.Error, StoreError) as e:
        raise _Disable(f"asyncpay-db {shown(db)}: {_one_line(e)}") from e
    plugin.log(f"asyncpay {__version__}: endpoint {started.endpoint.public_key.hex()}, database {shown(db)}")
    # Peers already connected when we start may have mail from before a restart.
    for p in plugin.rpc.listpeers().get("peers", []):
        if p.get("connected"):
            started.on_connect(p["id"])
    started.start()
    _serve_metrics(started)
    return started


def _serve_metrics(started: Node) -> None:
    """/metrics for Prometheus (asyncpay-metrics-listen); one that cannot
    listen is logged and the node runs on: payments never wait on metrics."""
    config = started.config_for(MetricsConfig)
    try:
        if metrics.serve(started, config) is not None:
            plugin.log(f"metrics: serving /metrics on {config.metrics_listen}")
    except OSError as e:
        plugin.log(f"metrics: cannot listen on {config.metrics_listen}: {e}", level="broken")


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
        node.on_connect(peer)


@plugin.subscribe("channel_opened")
@_guard("channel_opened")
def on_channel_opened(plugin, **kwargs):
    node.channels_changed()


@plugin.subscribe("channel_state_changed")
@_guard("channel_state_changed")
def on_channel_state_changed(plugin, channel_state_changed=None, **kwargs):
    node.channels_changed()
    c = channel_state_changed or kwargs
    if c.get("peer_id"):
        node.recipient.on_channel_state(c["peer_id"], c.get("old_state"), c.get("new_state"))


@plugin.subscribe("disconnect")
@_guard("disconnect")
def on_disconnect(plugin, **kwargs):
    node.channels_changed()


@plugin.subscribe("block_added")
@_guard("block_added")
def on_block_added(plugin, block_added=None, **kwargs):
    node.on_block(int((block_added or kwargs).get("height", 0)))


@plugin.subscribe("shutdown")
def on_shutdown(plugin, **kwargs):
    """lightningd stops (or ``plugin stop``): commit the mailbox intake and
    write the counters kept off the answers' path, then exit (lightningd
    waits up to 30 s for a plugin subscribed to this)."""
    try:
        if node is not None:
            node.stop()
    except Exception:
        plugin.log(f"shutdown: {traceback.format_exc()}", level="warn")
    sys.exit(0)


def on_htlc_accepted(plugin, onion, htlc, request, **kwargs):
    """Routed to the roles; only an HTLC no role recognised continues. Any
    failure fails it: continuing an HTLC a role may have taken (a held one)
    would forward it without its release."""
    params = {"onion": onion, "htlc": htlc, **kwargs}
    try:
        if node is None:  # not initialised: a hold request cannot be served, anything else is not ours
            request.set_result({"result": "fail", "failure_message": "2002"} if asks_for_hold(params)
                               else {"result": "continue"})
            return
        node.on_htlc_accepted(params, request.set_result)
    except Exception:
        plugin.log(f"htlc_accepted failed: {traceback.format_exc()}", level="warn")
        try:
            request.set_result({"result": "fail", "failure_message": "2002"})
        except Exception:
            pass  # already answered


# Before CLN's keysend and offers plugins: a blinded final hop carrying a
# keysend preimage is ours to claim (design §8).
plugin.add_hook("htlc_accepted", on_htlc_accepted, background=True, before=["keysend", "offers"])


@plugin.hook("custommsg")
def on_custommsg(plugin, peer_id=None, payload=None, **kwargs):
    """LSPS0 requests (LSPS5 webhooks) from peers. Always ``continue``: other
    plugins (CLN's LSPS service) see the same message; docs/lsps5.md says
    which of them answers what."""
    try:
        if node is not None and peer_id and payload:
            node.on_custommsg(peer_id, payload)
    except Exception:
        plugin.log(f"custommsg failed: {traceback.format_exc()}", level="warn")
    return {"result": "continue"}


# -- RPC methods ------------------------------------------------------------


def _need_node() -> Node:
    if node is None:
        raise NotReady("asyncpay is not initialised yet")
    return node


@plugin.method("asyncpay-recipientpaths")
def recipientpaths(plugin, recipient_id, count=DEFAULT_RECIPIENT_PATHS, expiry=None):
    """Mint blinded paths a recipient uses to reach this static invoice server.

    recipient_id: the client's id (its node id lets the mailbox keep its mail);
    count: how many paths (1-16); expiry: seconds they stay valid.
    """
    n = _need_node()
    recipient_id = params.text("recipient_id", recipient_id, max_len=256)
    count = params.integer("count", count, 1, 16)
    ttl = n.config.recipient_paths_ttl if expiry is None else params.integer("expiry", expiry, 1, 10 * 365 * 86400)
    now = int(time.time())
    with n.lock:
        paths = n.lsp.server.recipient_paths(recipient_id, count, ttl, now)
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
    if recipient_id is not None:
        recipient_id = params.text("recipient_id", recipient_id, max_len=256)
    with n.lock:
        n.books.flush()  # the served marks are written off the payers' path
        rows = n.store.list_invoices(recipient_id)
    return {"invoices": [views.invoice_row(r, int(time.time())) for r in rows]}


@plugin.method("asyncpay-delinvoice")
def delinvoice(plugin, recipient_id, invoice_slot):
    """Delete the static invoice stored for (recipient_id, invoice_slot)."""
    n = _need_node()
    recipient_id = params.text("recipient_id", recipient_id, max_len=256)
    slot = params.integer("invoice_slot", invoice_slot, 0, 0xFFFF)
    with n.lock:
        deleted = n.store.delete_invoice(recipient_id, slot)
    if not deleted:
        raise NotFound(f"no invoice stored for {recipient_id} slot {slot}")
    return {"deleted": {"recipient_id": recipient_id, "invoice_slot": slot}}


@plugin.method("asyncpay-listmailbox")
def listmailbox(plugin):
    """Queued onion messages per offline peer: count, bytes, oldest age."""
    n = _need_node()
    now = int(time.time())
    with n.lock:
        peers = n.lsp.mailbox.summary(now)
        total = n.store.mailbox_totals()
    return {"peers": peers, "messages": total[0], "bytes": total[1]}


@plugin.method("asyncpay-flush")
def flush(plugin, peer_id):
    """Re-inject a peer's queued messages now (it must be connected)."""
    n = _need_node()
    peer_id = params.node_id("peer_id", peer_id)
    with n.lock:
        queued = n.store.mailbox_totals(peer_id)[0]
    started = n.lsp.start_flush(peer_id) if queued else False
    return {"peer_id": peer_id, "queued": queued, "started": started}


@plugin.method("asyncpay-status")
def status(plugin):
    """Counters and sizes of every role: the static invoice server, the mailbox, the recipient."""
    n = _need_node()
    with n.lock:
        return views.status(n, int(time.time()))


rpc_recipient.register(plugin, _need_node)
rpc_payer.register(plugin, _need_node)
rpc_hold.register(plugin, _need_node)
rpc_lsps5.register(plugin, _need_node)


def main() -> None:
    plugin.run()


if __name__ == "__main__":
    main()
