"""The LSPS5 adapter: webhooks over CLN's ``custommsg`` hook, calls over
HTTPS, and hold-for-wake-up in ``htlc_accepted`` (docs/lsps5.md).

* ``on_custommsg``: an LSPS0 message (type 37913) from a peer is answered
  with ``sendcustommsg``. ``lsps5.*`` requests always; LSPS0's own
  (``lsps0.list_protocols``, unknown methods, malformed messages) only when
  ``asyncpay-lsps0-server`` says we are the node's LSPS0 server: CLN's LSPS
  service plugin answers those too when it is enabled, and a client must
  not get two answers to one request. The hook itself always continues.
* Webhook calls go through one sender thread: a fresh timestamp, CLN's
  ``signmessage`` (the LSPS0 ``ln_signature`` by our node key), then a
  POST with httpx to the address ``url_guard`` checked (no second DNS
  lookup), TLS checked against the URL's host name, no redirects, no proxy
  from the environment, a short timeout, and the response body never read.
* ``on_htlc``: an HTLC to forward to an offline client with a webhook (or
  listed in ``asyncpay-wake-wallets``) is held (``lsps/wake_hold.py``), its
  webhooks get ``lsps5.payment_incoming``, and it is continued when the
  client connects or failed at the deadline. The hold role comes before us
  in the router: an HTLC carrying a hold request is never ours.
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
from urllib.parse import urlsplit, urlunsplit

import httpx
from pyln.client import RpcError

from ..lsps import lsps0
from ..lsps import notifications as n
from ..lsps.config import AUTO, ON, Lsps5Config
from ..lsps.url_guard import UrlRefused, checked_addresses, parse_webhook
from ..lsps.wake_hold import FailBack, Hold, Release, WakeCandidate, WakeHolder
from ..lsps.webhooks import PROTOCOL_NUMBER, WebhookService
from ..metrics import timed
from ..ratelimit import TokenBuckets
from .convert import msat
from .role import Host, Respond, Role

LIST_PROTOCOLS = "lsps0.list_protocols"
REQUEST_BURST, REQUEST_RATE = 20, 5  # LSPS requests per peer: each costs a lookup and a sendcustommsg
CLN_LSPS_SERVICE_OPTION = "experimental-lsps2-service"  # CLN's LSPS service plugin is on
TICK_SECONDS = 5
USER_AGENT = "asyncpay-lsps5"
MAX_ADDRESSES = 3  # addresses of one webhook tried per call


class Lsps5Role(Role):
    def __init__(self, node: Host) -> None:
        super().__init__(node)
        self.config: Lsps5Config = node.config_for(Lsps5Config)
        self.service = WebhookService(node.store, self.config)
        self.wake = WakeHolder(node.store, self.config, node.cltv_delta)
        self.outbox = n.Outbox(self.config)
        self.waiting: dict[str, Respond] = {}  # held HTLC key -> its open htlc_accepted call
        self.requests = TokenBuckets(REQUEST_BURST, REQUEST_RATE)
        self.lsps0_server = self.config.lsps0_server == ON or (
            self.config.lsps0_server == AUTO and not self._cln_lsps_service_on())
        self.wallets = self.config.wallet_ids()
        self.height = 0
        self._wake_sender = threading.Event()
        self._stop = threading.Event()
        self._ssl: ssl.SSLContext | None = None
        self.resolve = _resolve

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self.node.log(f"lsps5: webhook service on; answering LSPS0 itself: {'yes' if self.lsps0_server else 'no'}",
                      level="info")
        threading.Thread(target=self._sender, daemon=True, name="lsps5-sender").start()
        threading.Thread(target=self._timer, daemon=True, name="lsps5-tick").start()

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
        with self.node.lock:
            answers = self.wake.tick(self.current_height(), now)
        self._answer(answers)

    def current_height(self) -> int:
        if not self.height:
            self.height = int(self.node.rpc.getinfo().get("blockheight", 0))
        return self.height

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
                    has_channel = peer_id in self.node.channel_peers()
                    result, calls = self.service.handle(peer_id, request, now, has_channel)
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
            for c in calls:
                if not self.outbox.add(c, now):
                    self.node.store.bump("lsps5_dropped_queue_full")
        self._wake_sender.set()

    def notify(self, peer_id: str, method: str, params: dict | None = None) -> None:
        with self.node.lock:
            calls = self.service.notify(peer_id, method, int(time.time()), params)
        self.queue(calls)

    def mail_queued(self, peer_id: str) -> None:
        """The mailbox queued a message for an offline client."""
        if not self.node.is_connected(peer_id):
            self.notify(peer_id, n.ONION_MESSAGE_INCOMING)

    def _sender(self) -> None:
        while not self._stop.is_set():
            with self.node.lock:
                due = self.outbox.due(time.monotonic())
            for call in due:
                try:
                    self.deliver(call)
                except Exception:
                    self.node.log(f"lsps5 webhook call failed: {traceback.format_exc()}", level="warn")
            with self.node.lock:
                nxt = self.outbox.next_due()
            wait = 1.0 if nxt is None else min(1.0, max(0.0, nxt - time.monotonic()))
            if self._wake_sender.wait(wait):
                self._wake_sender.clear()

    def deliver(self, call: n.Call) -> str:
        """Make one webhook call now; record and schedule its retry."""
        status = self.post(call)
        ok = status == "200"
        with self.node.lock:
            self.service.sent(call, status, int(time.time()))
            again = self.outbox.result(call, ok, time.monotonic())
            self.node.store.bump("lsps5_sent_ok" if ok else "lsps5_sent_failed")
            if not ok and not again:
                self.node.store.bump("lsps5_given_up")
        if again:
            self._wake_sender.set()
        self.node.log(f"lsps5: {call.method} to {call.peer_id} ({call.app_name!r}): {status}",
                      level="debug" if ok else "info")
        return status

    def sign(self, text: str) -> str:
        return self.node.rpc.call("signmessage", {"message": text})["zbase"]

    @timed("webhook_call")
    def post(self, call: n.Call) -> str:
        """POST one signed notification: "200", another status, or why not."""
        try:
            url = parse_webhook(call.url)
            addresses = checked_addresses(url, self.service.allow, self.resolve)
        except UrlRefused as e:
            with self.node.lock:
                self.node.store.bump(f"lsps5_refused_{e.kind}")
            return f"refused: {e.reason}"[:200]
        ts = n.timestamp(int(time.time() * 1000), self.config.lsps5_timestamp_style)
        try:
            signature = self.sign(n.signed_text(ts, call.body))
        except (RpcError, KeyError) as e:
            return f"not signed: {e}"[:200]
        headers = {"Content-Type": "application/json", "x-lsps5-timestamp": ts, "x-lsps5-signature": signature,
                   "Host": url.host if url.port == 443 else f"{_bracket(url.host)}:{url.port}",
                   "User-Agent": USER_AGENT}
        parts = urlsplit(url.url)
        status = "no address"
        # The next checked address only when one cannot be reached (an IPv6
        # address on a host without IPv6); a few at most, each time-bounded.
        for address in addresses[:MAX_ADDRESSES]:
            target = urlunsplit(("https", f"{_bracket(address)}:{url.port}", parts.path or "/", parts.query, ""))
            try:
                with httpx.Client(verify=self._tls(), follow_redirects=False, trust_env=False,
                                  timeout=httpx.Timeout(self.config.lsps5_http_timeout)) as client:
                    with client.stream("POST", target, content=call.body, headers=headers,
                                       extensions={"sni_hostname": url.host}) as r:
                        return str(r.status_code)  # the body is never read (LSPS5: ignore the response)
            except httpx.ConnectError as e:
                status = f"error: {type(e).__name__}: {e}"[:200]
            except httpx.TimeoutException:
                return "timeout"
            except (httpx.HTTPError, ssl.SSLError, OSError) as e:
                return f"error: {type(e).__name__}: {e}"[:200]
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
        candidate = WakeCandidate(key, peer, bytes.fromhex(h["payment_hash"]), msat(h.get("amount_msat")),
                                  int(h["cltv_expiry"]), int(onion.get("outgoing_cltv_value") or 0))
        height = int(h["cltv_expiry"]) - int(h.get("cltv_expiry_relative", 0))
        self.height = max(self.height, height)
        now = int(time.time())
        online = self.node.is_connected(peer)
        try:
            with self.node.lock:
                wakeable = not online and (peer in self.wallets or self.service.has_webhooks(peer))
                verdict = self.wake.accept(candidate, online, wakeable, height, now)
                if isinstance(verdict, Hold):
                    self.waiting[key] = respond
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
        except Exception:
            with self.node.lock:
                answers = self.wake.abort(key, now)
            self._answer(answers)
            raise

    def _answer(self, answers: list[Release | FailBack]) -> None:
        ready = []
        with self.node.lock:
            for a in answers:
                respond = self.waiting.pop(a.key, None)
                if respond is not None:  # else: lightningd replays it after its restart; the row answers then
                    ready.append((respond, a.hook_answer()))
        for respond, answer in ready:
            respond(answer)

    # -- events -----------------------------------------------------------------

    def on_connect(self, peer_id: str) -> None:
        with self.node.lock:
            self.service.connected(peer_id)
        self.release(peer_id)

    def release(self, peer_id: str) -> None:
        """Continue every HTLC held for this client (it is connected)."""
        with self.node.lock:
            answers = self.wake.connected(peer_id, self.current_height(), int(time.time()))
        if answers:
            self.node.log(f"lsps5: {peer_id} is back; releasing {len(answers)} held HTLC(s)", level="info")
        self._answer(answers)

    def on_block(self, height: int, now: int) -> None:
        self.height = max(self.height, height)
        self.tick(now)
        try:
            channels = self.node.rpc.call("listpeerchannels").get("channels", [])
        except RpcError:
            return
        with self.node.lock:
            gone = self.service.retain({c["peer_id"] for c in channels if c.get("peer_id")}, now)
            for peer in gone:
                self.outbox.forget(peer)
        for peer, expiries in _htlc_expiries(channels).items():
            timeout = n.expiry_soon_timeout(expiries, self.height, self.config.lsps5_expiry_soon_blocks)
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


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
