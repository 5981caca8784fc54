"""LSPS5 webhook notifications: what is signed and sent, and when (bLIP-55 /
LSPS5 "Webhook Call", "Webhook Notification Methods", "LSP: Rate-limiting
Notifications By method").

* ``body``: the JSON-RPC 2.0 notification object, serialised once; the exact
  bytes are both POSTed and signed.
* ``signed_text``: "LSPS5: DO NOT SIGN THIS MESSAGE MANUALLY: LSP: At
  ${timestamp} I notify ${body}", signed as an LSPS0 ``ln_signature`` (the
  adapter asks CLN's ``signmessage``, which is that signature).
* ``timestamp``: LSPS0.datetime ``YYYY-MM-DDThh:mm:ss.uuuZ``; or, for push
  services that check with LDK's ``LSPS5Validator``, chrono's
  ``to_rfc3339`` as LDK's ``lsps5/service.rs`` signs it.
* ``Outbox``: webhook calls waiting to be made, bounded in all and per
  client; a failed call is tried again after ``retry_first`` seconds,
  doubling up to ``retry_max_interval``, ``retry_attempts`` tries in all
  (a notification is never assured, LSPS5 says; the bound is ours).

Sans-IO: time is passed in; nothing here opens a socket.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

from .config import LDK, Lsps5Config

WEBHOOK_REGISTERED = "lsps5.webhook_registered"
PAYMENT_INCOMING = "lsps5.payment_incoming"
EXPIRY_SOON = "lsps5.expiry_soon"
LIQUIDITY_MANAGEMENT_REQUEST = "lsps5.liquidity_management_request"
ONION_MESSAGE_INCOMING = "lsps5.onion_message_incoming"
METHODS = (WEBHOOK_REGISTERED, PAYMENT_INCOMING, EXPIRY_SOON, LIQUIDITY_MANAGEMENT_REQUEST, ONION_MESSAGE_INCOMING)

TEMPLATE = "LSPS5: DO NOT SIGN THIS MESSAGE MANUALLY: LSP: At {timestamp} I notify {body}"


def body(method: str, params: dict | None = None) -> bytes:
    """The notification object, compact, keys in the spec's order (as LDK's
    ``WebhookNotification`` serialises it)."""
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params or {}},
                      separators=(",", ":"), ensure_ascii=False).encode()


def timestamp(now_ms: int, style: str = "spec") -> str:
    t = datetime.fromtimestamp(now_ms // 1000, timezone.utc)
    ms = now_ms % 1000
    if style == LDK:
        # chrono to_rfc3339: fraction only when non-zero, "+00:00" for UTC.
        frac = f".{ms:03d}" if ms else ""
        return t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "+00:00"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def signed_text(ts: str, notification: bytes) -> str:
    """The message whose LSPS0 ln_signature goes in x-lsps5-signature."""
    return TEMPLATE.format(timestamp=ts, body=notification.decode())


@dataclass(eq=False)
class Call:
    """One POST of one notification to one webhook."""

    peer_id: str
    app_name: str
    url: str
    method: str
    body: bytes
    attempts: int = 0
    next_at: float = 0.0
    cancelled: bool = False  # its webhook was removed or replaced while it ran: no retry

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def urgent(self) -> bool:
        """payment_incoming: an HTLC is held for the client, money is waiting.
        And webhook_registered: everything else to its webhook waits behind it
        (LSPS5), a payment_incoming too; a client makes one only by
        set_webhook, which is rate-limited (``lsps5-set-burst``, ``-set-per-hour``)."""
        return self.method in (PAYMENT_INCOMING, WEBHOOK_REGISTERED)


@dataclass
class Outbox:
    """Calls waiting, and the order and concurrency in which senders take them.

    Fairness (docs/lsps5.md, "How long an honest client waits"): ``take``
    gives a sender the due call with the least key (not urgent, the client's
    last start, due time) among the clients with fewer than
    ``lsps5-senders-per-client`` calls running and the hosts with fewer than
    ``lsps5-senders-per-host``. So payment_incoming (and webhook_registered)
    go before anything else (a call due for ``wake-timeout`` seconds counts
    as urgent too: nothing starves), and a client that just had a call started
    queues behind every client waiting since before: while one client's
    urgent call may start, each other client starts at most one call ahead
    of it, however many it queued (``tests/test_outbox_machine.py``).
    """

    config: Lsps5Config
    calls: deque[Call] = field(default_factory=deque)
    dropped: int = 0  # turned away or pushed out by the bounds (the adapter also counts them in the store)
    running: list[Call] = field(default_factory=list)
    last_start: dict[str, float] = field(default_factory=dict)  # client -> when its last call started

    def __len__(self) -> int:
        return len(self.calls)

    def add(self, call: Call, now: float) -> bool:
        """Queue a call; False (and not queued) when a bound is reached. The
        same notification already waiting for the same webhook URL is not
        added twice. A full queue makes room by the client's own least
        urgent call, or by the client with the most calls (never below the
        newcomer's share), so other clients cannot crowd one out; an urgent
        call (``Call.urgent``) pushes out any call that is not."""
        if any(c.peer_id == call.peer_id and c.app_name == call.app_name and c.url == call.url
               and c.body == call.body for c in self.calls):
            return True
        mine = [c for c in self.calls if c.peer_id == call.peer_id]
        if len(mine) >= self.config.lsps5_queue_max_per_client:
            victim = _least_urgent(mine)
            if not (call.urgent and not victim.urgent):
                self.dropped += 1
                return False
            self._drop(victim)
            mine.remove(victim)
        if len(self.calls) >= self.config.lsps5_queue_max:
            counts: dict[str, int] = {}
            for c in self.calls:
                counts[c.peer_id] = counts.get(c.peer_id, 0) + 1
            largest = max(counts, key=lambda p: (counts[p], p))
            victim = _least_urgent([c for c in self.calls if c.peer_id == largest])
            if not (counts[largest] > len(mine) + 1 or (call.urgent and not victim.urgent)):
                self.dropped += 1
                return False
            self._drop(victim)
        call.next_at = now
        self.calls.append(call)
        return True

    def _drop(self, victim: Call) -> None:
        self.calls.remove(victim)
        self.dropped += 1

    def _registering(self) -> set[tuple[str, str, str]]:
        # LSPS5: webhook_registered goes to a webhook before anything else
        # does; a retried (or running) one holds back the others for the same webhook.
        return {(c.peer_id, c.app_name, c.url) for c in (*self.calls, *self.running) if c.method == WEBHOOK_REGISTERED}

    def due(self, now: float) -> list[Call]:
        """Every call to make now, taken out of the queue, ignoring the
        sender limits (``result`` puts a failed one back)."""
        registering = self._registering()
        ready = [c for c in self.calls if c.next_at <= now
                 and (c.method == WEBHOOK_REGISTERED or (c.peer_id, c.app_name, c.url) not in registering)]
        for c in ready:
            self.calls.remove(c)
        return ready

    def take(self, now: float) -> Call | None:
        """The next call for a free sender (see the class), counted as
        running until ``result``; None when nothing may start now."""
        registering = self._registering()
        per_client: dict[str, int] = {}
        per_host: dict[str, int] = {}
        for c in self.running:
            per_client[c.peer_id] = per_client.get(c.peer_id, 0) + 1
            per_host[c.host] = per_host.get(c.host, 0) + 1
        best, best_key = None, None
        for c in self.calls:
            if c.next_at > now or (c.method != WEBHOOK_REGISTERED and (c.peer_id, c.app_name, c.url) in registering):
                continue
            if per_client.get(c.peer_id, 0) >= self.config.lsps5_senders_per_client:
                continue
            if per_host.get(c.host, 0) >= self.config.lsps5_senders_per_host:
                continue
            key = (not self.urgent(c, now), self.last_start.get(c.peer_id, c.next_at), c.next_at)
            if best_key is None or key < best_key:
                best, best_key = c, key
        if best is not None:
            self.calls.remove(best)
            self.running.append(best)
            self.last_start[best.peer_id] = now
        return best

    def urgent(self, call: Call, now: float) -> bool:
        """Urgent (``Call.urgent``), or due for ``wake-timeout`` seconds already:
        under a flood of payment_incoming, other notifications are late, never lost."""
        return call.urgent or now - call.next_at >= self.config.wake_timeout

    def next_due(self) -> float | None:
        return min((c.next_at for c in self.calls), default=None)

    def result(self, call: Call, ok: bool, now: float) -> bool:
        """After a try: True if the call will be tried again."""
        if call in self.running:
            self.running.remove(call)
        call.attempts += 1
        again = not (ok or call.cancelled or call.attempts >= self.config.lsps5_retry_attempts)
        if again:
            wait = min(self.config.lsps5_retry_first << min(call.attempts - 1, 30),
                       self.config.lsps5_retry_max_interval)
            again = self.add(call, now + wait)  # within the same bounds as a new call
        if not any(c.peer_id == call.peer_id for c in (*self.calls, *self.running)):
            self.last_start.pop(call.peer_id, None)  # kept while the client has calls: bounded by them
        return again

    def forget(self, peer_id: str, app_name: str | None = None, keep_url: str | None = None) -> None:
        """A removed webhook (or client) gets no more calls, nor does the URL
        a new one replaced (``keep_url``: the webhook's URL now): waiting
        ones are dropped, running ones are not tried again."""
        def gone(c: Call) -> bool:
            return c.peer_id == peer_id and (app_name is None or c.app_name == app_name) and c.url != keep_url
        self.calls = deque(c for c in self.calls if not gone(c))
        for c in self.running:
            if gone(c):
                c.cancelled = True
        if not any(c.peer_id == peer_id for c in (*self.calls, *self.running)):
            self.last_start.pop(peer_id, None)


def _least_urgent(calls: list[Call]) -> Call:
    """The call to give up first: the newest that is not urgent."""
    return max(calls, key=lambda c: (not c.urgent, c.next_at))


def expiry_soon_timeout(expiries: list[int], height: int, window: int) -> int | None:
    """The ``timeout`` of ``lsps5.expiry_soon`` (LSPS5: an HTLC "within 24
    blocks of being timed out"): the nearest expiry within ``window`` blocks
    of ``height``, or None."""
    near = [e for e in expiries if e - height <= window]
    return min(near) if near else None
