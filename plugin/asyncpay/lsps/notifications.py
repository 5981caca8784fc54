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


@dataclass
class Call:
    """One POST of one notification to one webhook."""

    peer_id: str
    app_name: str
    url: str
    method: str
    body: bytes
    attempts: int = 0
    next_at: float = 0.0


@dataclass
class Outbox:
    config: Lsps5Config
    calls: deque[Call] = field(default_factory=deque)
    dropped: int = 0  # turned away by the bounds (the adapter also counts them in the store)

    def __len__(self) -> int:
        return len(self.calls)

    def add(self, call: Call, now: float) -> bool:
        """Queue a call; False (and not queued) when a bound is reached. The
        same notification already waiting for the same webhook is not added twice."""
        if any(c.peer_id == call.peer_id and c.app_name == call.app_name and c.body == call.body
               for c in self.calls):
            return True
        per_client = sum(1 for c in self.calls if c.peer_id == call.peer_id)
        if len(self.calls) >= self.config.lsps5_queue_max or per_client >= self.config.lsps5_queue_max_per_client:
            self.dropped += 1
            return False
        call.next_at = now
        self.calls.append(call)
        return True

    def due(self, now: float) -> list[Call]:
        """Calls to make now, taken out of the queue (``result`` puts a failed one back)."""
        # LSPS5: webhook_registered goes to a webhook before anything else
        # does; a retried one holds back the others for the same webhook.
        registering = {(c.peer_id, c.app_name, c.url) for c in self.calls if c.method == WEBHOOK_REGISTERED}
        ready = [c for c in self.calls if c.next_at <= now
                 and (c.method == WEBHOOK_REGISTERED or (c.peer_id, c.app_name, c.url) not in registering)]
        for c in ready:
            self.calls.remove(c)
        return ready

    def next_due(self) -> float | None:
        return min((c.next_at for c in self.calls), default=None)

    def result(self, call: Call, ok: bool, now: float) -> bool:
        """After a try: True if the call will be tried again."""
        call.attempts += 1
        if ok or call.attempts >= self.config.lsps5_retry_attempts:
            return False
        wait = min(self.config.lsps5_retry_first << min(call.attempts - 1, 30), self.config.lsps5_retry_max_interval)
        call.next_at = now + wait
        self.calls.append(call)
        return True

    def forget(self, peer_id: str, app_name: str | None = None) -> None:
        """A removed webhook (or client) gets no more calls."""
        self.calls = deque(c for c in self.calls
                           if not (c.peer_id == peer_id and (app_name is None or c.app_name == app_name)))


def expiry_soon_timeout(expiries: list[int], height: int, window: int) -> int | None:
    """The ``timeout`` of ``lsps5.expiry_soon`` (LSPS5: an HTLC "within 24
    blocks of being timed out"): the nearest expiry within ``window`` blocks
    of ``height``, or None."""
    near = [e for e in expiries if e - height <= window]
    return min(near) if near else None
