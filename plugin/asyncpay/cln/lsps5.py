"""The LSPS5 adapter: webhooks over CLN's ``custommsg`` hook, calls over
HTTPS, and hold-for-wake-up in ``htlc_accepted`` (docs/lsps5.md).

* ``on_custommsg``: an LSPS0 message (type 37913) from a peer is answered
  with ``sendcustommsg``. ``lsps5.*`` requests always; LSPS0's own
  (``lsps0.list_protocols``, unknown methods, malformed messages) only when
  ``asyncpay-lsps0-server`` says we are the node's LSPS0 server: CLN's LSPS
  service plugin answers those too when it is enabled, and a client must
  not get two answers to one request. The hook itself always continues.
* Webhook calls go through ``lsps5-senders`` sender threads, in the order
  and with the per-client and per-host limits of ``Outbox.take`` (fair:
  payment_incoming first, no client ahead of another twice): a fresh
  timestamp, CLN's ``signmessage`` (the LSPS0 ``ln_signature`` by our node
  key), then one POST (``webhook_http``) to the address ``url_guard``
  checked (no second DNS lookup), TLS checked against the URL's host name,
  no redirects, no proxy, the whole call (look-up included) bounded by
  ``lsps5-http-timeout``, and the response body never read.
* ``on_htlc``: an HTLC to forward to an offline client with a webhook (or
  listed in ``asyncpay-wake-wallets``) is held (``lsps/wake_hold.py``), its
  webhooks get ``lsps5.payment_incoming``, and it is continued when the
  client connects or failed at the deadline. The hold role comes before us
  in the router: an HTLC carrying a hold request is never ours. A release
  whose commit raised is tried again by the timer, which answers every open
  call from its row; while the store cannot be used, the timer fails each
  open call whose ``AnswerBy`` came from memory (``open_calls.py``).
* ``mail_queued``: the mailbox queued a message for an offline client:
  ``lsps5.onion_message_incoming``. ``on_block``: ``lsps5.expiry_soon`` for
  an HTLC with an offline client near its expiry; retention of webhooks.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import traceback
from urllib.parse import urlsplit

from pyln.client import RpcError

from ..lsps import lsps0
from ..lsps import notifications as n
from ..lsps.config import AUTO, ON, Lsps5Config
from ..lsps.url_guard import UrlRefused, checked_addresses, parse_webhook
from ..lsps.wake_hold import FailBack, Hold, Release, WakeCandidate, WakeHolder
from ..lsps.webhooks import PROTOCOL_NUMBER, REMOVE_WEBHOOK, WebhookService
from ..metrics import timed
from ..open_calls import OpenCalls
from ..ratelimit import TokenBuckets
from ..storage.base import is_store_failure
from . import webhook_http
from .convert import msat
from .role import Host, Respond, Role, store_pass

LIST_PROTOCOLS = "lsps0.list_protocols"
REQUEST_BURST, REQUEST_RATE = 20, 5  # LSPS requests per peer: each costs a lookup and a sendcustommsg
CLN_LSPS_SERVICE_OPTION = "experimental-lsps2-service"  # CLN's LSPS service plugin is on
TICK_SECONDS = 5
USER_AGENT = "asyncpay-lsps5"
MAX_ADDRESSES = 3  # addresses of one webhook tried per call
LOOKUPS_PER_SENDER = 4  # name look-ups running at once, per sender (see webhook_http.BoundedLookup)


class Lsps5Role(Role):
    def __init__(self, node: Host) -> None:
        super().__init__(node)
        self.config: Lsps5Config = node.config_for(Lsps5Config)
        self.service = WebhookService(node.store, self.config)
        self.wake = WakeHolder(node.store, self.config, node.cltv_delta)
        self.outbox = n.Outbox(self.config)
        self.waiting: OpenCalls[str] = OpenCalls()  # held HTLC key -> its open htlc_accepted call
        self.reconnected: set[str] = set()  # clients whose release was not recorded: tried again by the timer
        # A commit raised since the last pass that settled the open calls: the next
        # pass answers every open call from its row (only then: issue 24, a pass
        # costs what is due, not what is held).
        self.unsure = False
        self.requests = TokenBuckets(REQUEST_BURST, REQUEST_RATE)
        self.lsps0_server = self.config.lsps0_server == ON or (
            self.config.lsps0_server == AUTO and not self._cln_lsps_service_on())
        self.wallets = self.config.wallet_ids()
        self._work = threading.Condition(node.lock)  # a call may be due: senders look
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ssl: ssl.SSLContext | None = None
        self.resolve = _resolve
        self.lookup = webhook_http.BoundedLookup(lambda h, p: self.resolve(h, p),
                                                 LOOKUPS_PER_SENDER * self.config.lsps5_senders)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self.node.log(f"lsps5: webhook service on; answering LSPS0 itself: {'yes' if self.lsps0_server else 'no'}",
                      level="info")
        self._threads = [threading.Thread(target=self._sender, daemon=True, name=f"lsps5-sender-{i}")
                         for i in range(self.config.lsps5_senders)]
        self._threads.append(threading.Thread(target=self._timer, daemon=True, name="lsps5-tick"))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the senders and the timer; True if all ended within ``timeout``
        (a call in progress ends by its own deadline)."""
        self._stop.set()
        with self._work:
            self._work.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _cln_lsps_service_on(self) -> bool:
        try:
            conf = self.node.rpc.call("listconfigs", {"config": CLN_LSPS_SERVICE_OPTION})["configs"]
        except (RpcError, KeyError, TypeError):
            return False  # no such option: no CLN LSPS service plugin
        entry = conf.get(CLN_LSPS_SERVICE_OPTION) or {}
        return bool(entry.get("set") or entry.get("value_bool"))

    def _timer(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick(int(time.time()))
            except Exception:
                self.node.log(f"lsps5 tick failed: {traceback.format_exc()}", level="warn")

    def tick(self, now: int) -> None:
        """Through the store if it can be used; else the calls whose time came fail from memory."""
        height = self.node.current_height()
        back = [p for p in sorted(self.reconnected) if self.node.is_connected(p)]
        answers = store_pass(self.node, lambda: self._store_tick(back, height, now), "lsps5 wake tick")
        if answers is None:  # its commit may have landed: the truth re-read once now
            answers = store_pass(self.node, lambda: self._store_tick(back, height, now), "lsps5 wake tick")
        if answers is None:
            self.unsure = True
            for key, call in self.waiting.overdue(height, now):
                self.node.log(f"lsps5: failing HTLC {key} held for wake-up: the store cannot be used and its "
                              "deadline came", level="warn")
                call.respond(FailBack(key, "store_unavailable").hook_answer())
            return
        self._answer(answers)

    def _store_tick(self, back: list[str], height: int, now: int) -> list[Release | FailBack]:
        answers: list[Release | FailBack] = []
        with self.node.store.tx():
            for peer in back:
                answers += self.wake.connected(peer, height, now)
            answered = {a.key for a in answers}
            settle = self.unsure or bool(back)
            answers += self.wake.tick(height, now, self.waiting.keys() - answered if settle else ())
        self.reconnected.difference_update(back)
        self.unsure = False  # committed: every open call was answered from its row, or is held
        return answers

    # -- LSPS0 over custom messages ------------------------------------------

    def on_custommsg(self, peer_id: str, payload_hex: str) -> None:
        """One custom message from a peer (the hook continues whatever we do)."""
        try:
            payload = lsps0.unframe(bytes.fromhex(payload_hex))
        except ValueError:
            return
        if payload is None:
            return
        now = int(time.time())
        if not self.requests.allow(peer_id, now):
            with self.node.lock:
                self.node.store.bump("lsps0_requests_limited")
            return
        answer = self.answer(peer_id, payload, now)
        if answer is not None:
            self._send(peer_id, answer)

    def answer(self, peer_id: str, payload: bytes, now: int) -> bytes | None:
        """The payload we answer an LSPS0 message with (None: not ours to answer)."""
        try:
            request = lsps0.read_request(payload)
        except lsps0.Lsps0Error as e:
            if not self.lsps0_server:
                return None
            with self.node.lock:
                self.node.store.bump("lsps0_bad_message")
            self.node.log(f"lsps0: bad message from {peer_id}: {e.message}", level="info")
            return lsps0.error_response(e)
        try:
            if request.method.startswith("lsps5."):
                with self.node.lock:
                    has_channel = bool(usable_channels(self.node.peer_channels(), peer_id))
                    result, calls = self.service.handle(peer_id, request, now, has_channel)
                    if request.method == REMOVE_WEBHOOK:  # no call to it after its removal
                        self.outbox.forget(peer_id, request.params["app_name"])
                self.queue(calls)
                return lsps0.response(request.id, result)
            if not self.lsps0_server:
                return None
            if request.method == LIST_PROTOCOLS:
                lsps0.check_params(request, ())
                return lsps0.response(request.id, {"protocols": [PROTOCOL_NUMBER]})
            raise lsps0.Lsps0Error(lsps0.METHOD_NOT_FOUND, "Method not found", None, request.id)
        except lsps0.Lsps0Error as e:
            return lsps0.error_response(e)
        except Exception:
            self.node.log(f"lsps5 request {request.method} failed: {traceback.format_exc()}", level="warn")
            return lsps0.error_response(lsps0.Lsps0Error(lsps0.INTERNAL_ERROR, "Internal error", None, request.id))

    def _send(self, peer_id: str, payload: bytes) -> None:
        try:
            self.node.rpc.call("sendcustommsg", {"node_id": peer_id, "msg": lsps0.frame(payload).hex()})
        except RpcError as e:
            self.node.log(f"lsps0: answer to {peer_id} not sent: {e.error}", level="debug")

    # -- notifications ---------------------------------------------------------

    def queue(self, calls: list[n.Call]) -> None:
        if not calls:
            return
        now = time.monotonic()
        with self.node.lock:
            before = self.outbox.dropped
            for c in calls:
                if c.method == n.WEBHOOK_REGISTERED:  # the URL it replaces gets nothing more
                    self.outbox.forget(c.peer_id, c.app_name, keep_url=c.url)
                self.outbox.add(c, now)
            if self.outbox.dropped > before:
                self.node.store.bump("lsps5_dropped_queue_full", self.outbox.dropped - before)
            self._work.notify_all()

    def notify(self, peer_id: str, method: str, params: dict | None = None) -> None:
        with self.node.lock:
            calls = self.service.notify(peer_id, method, int(time.time()), params)
        self.queue(calls)

    def mail_queued(self, peer_id: str) -> None:
        """The mailbox queued a message for an offline client."""
        if not self.node.is_connected(peer_id):
            self.notify(peer_id, n.ONION_MESSAGE_INCOMING)

    def _sender(self) -> None:
        """One of the senders: take the next call the outbox gives, make it, repeat."""
        while not self._stop.is_set():
            with self._work:
                call = self.outbox.take(time.monotonic())
                if call is None:
                    nxt = self.outbox.next_due()
                    self._work.wait(1.0 if nxt is None else min(1.0, max(0.01, nxt - time.monotonic())))
                    continue
            try:
                self.deliver(call)
            except Exception:
                self.node.log(f"lsps5 webhook call failed: {traceback.format_exc()}", level="warn")
                with self._work:
                    if call in self.outbox.running:  # not recorded yet: free its client's and host's slot
                        self.outbox.result(call, False, time.monotonic())

    def deliver(self, call: n.Call) -> str:
        """Make one webhook call now; record and schedule its retry."""
        status = self.post(call)
        ok = status == "200"
        with self._work:
            self.service.sent(call, status, int(time.time()))
            again = self.outbox.result(call, ok, time.monotonic())
            self.node.store.bump("lsps5_sent_ok" if ok else "lsps5_sent_failed")
            if not ok and not again:
                self.node.store.bump("lsps5_given_up")
            self._work.notify_all()  # its client or host may take another call now
        self.node.log(f"lsps5: {call.method} to {call.peer_id} ({call.app_name!r}): {status}",
                      level="debug" if ok else "info")
        return status

    def sign(self, text: str) -> str:
        return self.node.rpc.call("signmessage", {"message": text})["zbase"]

    @timed("webhook_call")
    def post(self, call: n.Call) -> str:
        """POST one signed notification: "200", another status, or why not.
        Look-up, connect, TLS, request and response head together take at
        most ``lsps5-http-timeout`` (``webhook_http``)."""
        deadline = time.monotonic() + self.config.lsps5_http_timeout  # signing counts too: one call, one time
        ts = n.timestamp(int(time.time() * 1000), self.config.lsps5_timestamp_style)
        try:
            signature = self.sign(n.signed_text(ts, call.body))
        except (RpcError, KeyError) as e:
            return f"not signed: {e}"[:200]
        try:
            url = parse_webhook(call.url)
            addresses = checked_addresses(url, self.service.allow, lambda h, p: self.lookup(h, p, deadline))
        except UrlRefused as e:
            with self.node.lock:
                self.node.store.bump(f"lsps5_refused_{e.kind}")
            return f"refused: {e.reason}"[:200]
        except webhook_http.CallFailed as e:
            return e.status
        if call.cancelled:  # removed while we looked it up
            return "cancelled"
        headers = {"Host": webhook_http.host_header(url.host, url.port), "User-Agent": USER_AGENT,
                   "Content-Type": "application/json", "x-lsps5-timestamp": ts, "x-lsps5-signature": signature}
        parts = urlsplit(url.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        status = "no address"
        # The next checked address only when one cannot be reached (an IPv6
        # address on a host without IPv6); a few at most, all within the deadline.
        for address in addresses[:MAX_ADDRESSES]:
            try:
                return str(webhook_http.post(address, url.port, url.host, target, headers, call.body, self._tls(),
                                             deadline))
            except webhook_http.CallFailed as e:
                status = e.status
                if not status.startswith(webhook_http.CONNECT_FAILED):
                    return status
        return status

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context()
            if self.config.lsps5_ca_file:
                ctx.load_verify_locations(cafile=self.config.lsps5_ca_file)
            self._ssl = ctx
        return self._ssl

    # -- hold for wake-up ------------------------------------------------------

    def on_htlc(self, params: dict, respond: Respond) -> bool:
        onion, h = params.get("onion") or {}, params.get("htlc") or {}
        peer = onion.get("next_node_id")
        if peer is None and onion.get("short_channel_id"):
            peer = self.node.peer_for_scid(str(onion["short_channel_id"]))
        if not peer or "payment_hash" not in h or "cltv_expiry" not in h:
            return False  # not a forward to one of our peers
        key = f"{h.get('short_channel_id')}/{h.get('id')}"
        slots, receivable = self._capacity(str(h.get("short_channel_id")), peer)
        candidate = WakeCandidate(key, peer, bytes.fromhex(h["payment_hash"]), msat(h.get("amount_msat")),
                                  int(h["cltv_expiry"]), int(onion.get("outgoing_cltv_value") or 0), slots,
                                  msat(onion["forward_msat"]) if "forward_msat" in onion else None, receivable)
        height = int(h["cltv_expiry"]) - int(h.get("cltv_expiry_relative", 0))
        self.node.saw_height(height)
        now = int(time.time())
        online = self.node.is_connected(peer)
        verdict = None
        try:
            with self.node.lock:
                wakeable = not online and (peer in self.wallets or self.service.has_webhooks(peer))
                verdict = self.wake.accept(candidate, online, wakeable, height, now)
                if isinstance(verdict, Hold):
                    self.waiting.open(key, respond, verdict.answer_by)
            if verdict is None:
                return False
            if isinstance(verdict, Hold):
                self.node.log(f"lsps5: holding HTLC {h['payment_hash']} for offline {peer} until "
                              f"{verdict.deadline}", level="debug")
                self.notify(peer, n.PAYMENT_INCOMING)
                # It may have connected while we decided: release now rather than at its next connect.
                if self.node.is_connected(peer):
                    self.release(peer)
            else:
                respond(verdict.hook_answer())
            return True
        except Exception as e:
            if verdict is None and is_store_failure(e):
                # Not held: lightningd forwards it (or fails it) as it would without us. Every
                # forward of the LSP passes here: a store that is gone must not fail them all.
                self.node.log(f"lsps5: not holding HTLC {key}, the store cannot be used: {e}", level="warn")
                return False
            try:
                with self.node.lock:
                    answers = self.wake.abort(key, now)
            except Exception:  # the store is gone too: the open call, if any, fails from memory
                answers = [FailBack(key, "internal_error")]
            self._answer(answers)
            raise

    def _capacity(self, incoming_scid: str, peer: str) -> tuple[int, int | None]:
        """The incoming channel's HTLC slots (our ``max_accepted_htlcs`` on it;
        0 if not known) and what the client's usable channels can take from
        us (sum of ``spendable_msat``; None if lightningd does not say)."""
        channels = self.node.peer_channels()
        slots = next((int(c.get("max_accepted_htlcs") or 0) for c in channels
                      if incoming_scid in (c.get("short_channel_id"), *(c.get("alias") or {}).values())), 0)
        usable = usable_channels(channels, peer)
        if any("spendable_msat" not in c for c in usable):
            return slots, None
        return slots, sum(msat(c["spendable_msat"]) for c in usable)

    def _answer(self, answers: list[Release | FailBack]) -> None:
        for a in answers:
            respond = self.waiting.pop(a.key)  # taken out once: a racing pass finds it gone
            if respond is not None:  # else: lightningd replays it after its restart; the row answers then
                respond(a.hook_answer())

    # -- events -----------------------------------------------------------------

    def on_connect(self, peer_id: str) -> None:
        try:
            with self.node.lock:
                self.service.connected(peer_id)
        except Exception:  # its held HTLCs go on all the same (release keeps them if the store fails)
            self.node.log(f"lsps5: recording {peer_id}'s connect failed: {traceback.format_exc()}", level="warn")
        self.release(peer_id)

    def release(self, peer_id: str) -> None:
        """Continue every HTLC held for this client (it is connected). A commit
        that raises may have landed: the calls stay open and the timer tries
        again, answering from the rows as they are then."""
        height = self.node.current_height()
        try:
            with self.node.lock:
                answers = self.wake.connected(peer_id, height, int(time.time()))
        except Exception:
            with self.node.lock:
                self.reconnected.add(peer_id)
                self.unsure = True
            self.node.log(f"lsps5: release for {peer_id} not recorded, tried again: {traceback.format_exc()}",
                          level="warn")
            return
        if answers:
            self.node.log(f"lsps5: {peer_id} is back; releasing {len(answers)} held HTLC(s)", level="info")
        self._answer(answers)

    def on_block(self, height: int, now: int) -> None:
        self.node.saw_height(height)
        self.tick(now)
        try:
            channels = self.node.rpc.call("listpeerchannels").get("channels", [])
        except RpcError:
            return
        with self.node.lock:
            gone = self.service.retain({c["peer_id"] for c in channels if _usable(c)}, now)
            for peer in gone:
                self.outbox.forget(peer)
        for peer, expiries in _htlc_expiries(channels).items():
            timeout = n.expiry_soon_timeout(expiries, self.node.current_height(),
                                            self.config.lsps5_expiry_soon_blocks)
            if timeout is not None and not self.node.is_connected(peer):
                self.notify(peer, n.EXPIRY_SOON, {"timeout": timeout})

    def forget_webhook(self, peer_id: str, app_name: str) -> bool:
        """asyncpay-delwebhook: remove it and its waiting calls."""
        with self.node.lock:
            gone = self.service.delete(peer_id, app_name)
            self.outbox.forget(peer_id, app_name)
        return gone

    def status(self) -> dict:
        c = self.node.store.counters()
        pick = ("lsps5_", "wake_", "lsps0_")
        return {"lsps5": {
            "lsps0_server": self.lsps0_server, "webhooks": self.service.count(), "queued_calls": len(self.outbox),
            "held_for_wake": self.wake.count_held(),
            "counters": {k: v for k, v in c.items() if k.startswith(pick)},
        }}


# Channel states in which a channel counts for LSPS5 ("has a channel"; the
# client's receivable amount): funded, locked in and not closing, as LDK's
# service asks of ChannelDetails::is_usable (lightning-liquidity
# src/lsps5/service.rs client_has_open_channel; lightning/src/ln/
# channel_state.rs: confirmed, channel_ready exchanged, not shutting down).
# CHANNELD_AWAITING_SPLICE: a splice pending on a channel that works on.
USABLE_STATES = frozenset({"CHANNELD_NORMAL", "CHANNELD_AWAITING_SPLICE"})


def _usable(channel: dict) -> bool:
    return bool(channel.get("peer_id")) and channel.get("state") in USABLE_STATES


def usable_channels(channels: list[dict], peer_id: str) -> list[dict]:
    return [c for c in channels if c.get("peer_id") == peer_id and _usable(c)]


def _resolve(host: str, port: int) -> list[str]:
    return [ai[4][0] for ai in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def _htlc_expiries(channels: list[dict]) -> dict[str, list[int]]:
    """peer id -> the expiries of the HTLCs in its channels (either direction)."""
    out: dict[str, list[int]] = {}
    for ch in channels:
        for htlc in ch.get("htlcs") or []:
            if "expiry" in htlc and ch.get("peer_id"):
                out.setdefault(ch["peer_id"], []).append(int(htlc["expiry"]))
    return out
