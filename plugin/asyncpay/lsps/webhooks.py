"""The LSPS5 webhook service (bLIP-55 / LSPS5 "Webhook Registration API";
LDK ``lightning-liquidity/src/lsps5/service.rs`` for a real service).

Sans-IO over the store: ``handle`` answers ``lsps5.set_webhook``,
``lsps5.list_webhooks`` and ``lsps5.remove_webhook`` (raising ``Lsps0Error``
with the spec's codes), persisting before it answers, and returns the
webhook calls to make; ``notify`` gives the calls for an event, under the
per-client, per-method cooldown; ``retain`` forgets a client 7 days after
its last channel is gone.

Error codes: the spec's 500 ``too_long``, 501 ``url_parse_error``, 502
``unsupported_protocol``, 503 ``too_many_webhooks`` (data: max_webhooks),
1010 ``app_name_not_found``; and LDK's, which its client decodes: 1000
unknown error (our client limit is full), 1002 slow down (set_webhook and
remove_webhook too often), 1003 no prior activity (no channel with us).

Limits: ``lsps5-max-webhooks`` per client (spec ``max_webhooks``, LDK's
default is 10), ``lsps5-max-clients`` in all, a token bucket per client on
the calls that write. Own tables and migrations
(``Store.migrate_component("lsps5")``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ratelimit import TokenBuckets
from ..storage import SchemaEditor
from ..store import RowTable, Store
from . import notifications as n
from .config import ANY, Lsps5Config
from .lsps0 import INVALID_PARAMS, METHOD_NOT_FOUND, Lsps0Error, Request, check_params
from .url_guard import PARSE, PROTOCOL, TOO_LONG, AllowList, UrlRefused, check_static, parse_webhook

MAX_APP_NAME_BYTES = 64  # LSPS5 set_webhook: app_name up to 64 bytes of UTF-8

TOO_LONG_CODE, URL_PARSE_CODE, UNSUPPORTED_PROTOCOL_CODE, TOO_MANY_WEBHOOKS_CODE = 500, 501, 502, 503
APP_NAME_NOT_FOUND_CODE = 1010
UNKNOWN_CODE, SLOW_DOWN_CODE, NO_PRIOR_ACTIVITY_CODE = 1000, 1002, 1003  # LDK lsps5/msgs.rs
URL_CODES = {TOO_LONG: TOO_LONG_CODE, PARSE: URL_PARSE_CODE, PROTOCOL: UNSUPPORTED_PROTOCOL_CODE}

SET_WEBHOOK, LIST_WEBHOOKS, REMOVE_WEBHOOK = "lsps5.set_webhook", "lsps5.list_webhooks", "lsps5.remove_webhook"
PROTOCOL_NUMBER = 5


def _v1(db: SchemaEditor) -> None:
    db["lsps5_webhooks"].create(
        {"key": str, "peer_id": str, "app_name": str, "url": str, "registered_at": int, "last_sent_at": int,
         "last_status": str}, pk="key")
    db["lsps5_webhooks"].create_index(["peer_id"])
    db["lsps5_clients"].create({"peer_id": str, "created_at": int, "no_channel_since": int}, pk="peer_id")
    db["lsps5_cooldowns"].create({"key": str, "peer_id": str, "method": str, "sent_at": int}, pk="key")
    db["lsps5_cooldowns"].create_index(["peer_id"])


def _v2(db: SchemaEditor) -> None:
    # Issue 24: each block finds the clients to look at through their no-channel
    # time and their registration time, not by reading every client.
    db["lsps5_clients"].create_index(["no_channel_since"])
    db["lsps5_clients"].create_index(["created_at"])


MIGRATIONS = [_v1, _v2]


@dataclass
class WebhookRow:
    key: str  # "<peer id>/<app name>": the peer id has a fixed length, so this is unambiguous
    peer_id: str
    app_name: str
    url: str
    registered_at: int
    last_sent_at: int | None = None
    last_status: str | None = None  # "200", another HTTP status, or what went wrong ("timeout", "refused: ...")

    def view(self) -> dict:
        """One entry of asyncpay-listwebhooks (docs/rpc.md)."""
        return {"peer_id": self.peer_id, "app_name": self.app_name, "url": self.url,
                "registered_at": self.registered_at, "last_sent_at": self.last_sent_at,
                "last_status": self.last_status}


@dataclass
class ClientRow:
    peer_id: str
    created_at: int
    no_channel_since: int = 0  # 0: it has a channel with us (or we have not looked yet)


@dataclass
class CooldownRow:
    key: str
    peer_id: str
    method: str
    sent_at: int


def _key(peer_id: str, name: str) -> str:
    return f"{peer_id}/{name}"


def storable_text(text: str) -> bool:
    """Text both stores keep as given: PostgreSQL's TEXT refuses NUL (SQLite keeps it),
    and neither encodes a lone surrogate (JSON's "\\ud800") as UTF-8."""
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


class WebhookService:
    def __init__(self, store: Store, config: Lsps5Config) -> None:
        self.store, self.config = store, config
        store.migrate_component("lsps5", MIGRATIONS)
        self.webhooks = RowTable(store, "lsps5_webhooks", WebhookRow, "key")
        self.clients = RowTable(store, "lsps5_clients", ClientRow, "peer_id")
        self.cooldowns = RowTable(store, "lsps5_cooldowns", CooldownRow, "key")
        self._channel_peers: frozenset[str] | None = None  # at the last retain (None: not yet)
        self._retained_at = 0
        self.allow = AllowList.parse(config.lsps5_allow_hosts, config.lsps5_allow_ports)
        self.writes = TokenBuckets(config.lsps5_set_burst, config.lsps5_set_per_hour / 3600)

    # -- the client's requests ----------------------------------------------

    def handle(self, peer_id: str, request: Request, now: int, has_channel: bool) -> tuple[dict, list[n.Call]]:
        """The result of one lsps5.* request and the webhook calls it causes."""
        if request.method == SET_WEBHOOK:
            return self._set(peer_id, request, now, has_channel)
        if request.method == LIST_WEBHOOKS:
            check_params(request, ())
            return {"app_names": [r.app_name for r in self.of(peer_id)],
                    "max_webhooks": self.config.lsps5_max_webhooks}, []
        if request.method == REMOVE_WEBHOOK:
            check_params(request, ("app_name",), ("app_name",))
            app_name = self._app_name(request)
            self._slow_down(peer_id, request, now)
            if not self.delete(peer_id, app_name):
                raise Lsps0Error(APP_NAME_NOT_FOUND_CODE, "app_name_not_found", None, request.id)
            self.store.bump("lsps5_removed")
            return {}, []
        raise Lsps0Error(METHOD_NOT_FOUND, "Method not found", None, request.id)

    def _app_name(self, request: Request) -> str:
        app_name = request.params.get("app_name")
        if not isinstance(app_name, str):
            raise Lsps0Error(INVALID_PARAMS, "Invalid params: app_name must be a string", {"unrecognized": []},
                             request.id)
        if len(app_name.encode("utf-8", "surrogatepass")) > MAX_APP_NAME_BYTES:
            raise Lsps0Error(TOO_LONG_CODE, "too_long: app_name", None, request.id)
        if not storable_text(app_name):
            raise Lsps0Error(INVALID_PARAMS, "Invalid params: app_name must be UTF-8 text without NUL",
                             {"unrecognized": []}, request.id)
        return app_name

    def _slow_down(self, peer_id: str, request: Request, now: int) -> None:
        if not self.writes.allow(peer_id, now):
            self.store.bump("lsps5_refused_slow_down")
            raise Lsps0Error(SLOW_DOWN_CODE, "slow_down", None, request.id)

    def _set(self, peer_id: str, request: Request, now: int, has_channel: bool) -> tuple[dict, list[n.Call]]:
        check_params(request, ("app_name", "webhook"), ("app_name", "webhook"))
        app_name = self._app_name(request)
        url = request.params["webhook"]
        if not isinstance(url, str):
            raise Lsps0Error(INVALID_PARAMS, "Invalid params: webhook must be a string", {"unrecognized": []},
                             request.id)
        try:
            parsed = parse_webhook(url)
            check_static(parsed, self.allow)
        except UrlRefused as e:
            self.store.bump(f"lsps5_refused_{e.kind}")
            # An address we would never call is a URL we cannot use: url_parse_error.
            name = e.kind if e.kind in URL_CODES else PARSE
            raise Lsps0Error(URL_CODES[name], f"{name}: {e.reason}"[:200], None, request.id) from None
        if self.config.lsps5_clients != ANY and not has_channel:
            self.store.bump("lsps5_refused_no_channel")
            raise Lsps0Error(NO_PRIOR_ACTIVITY_CODE, "no prior activity: open a channel with this LSP first", None,
                             request.id)
        self._slow_down(peer_id, request, now)
        existing = self.webhooks.get(_key(peer_id, app_name))
        if existing is not None and existing.url == parsed.url:
            return self._set_result(peer_id, True), []
        count = len(self.of(peer_id))
        if existing is None and count >= self.config.lsps5_max_webhooks:
            self.store.bump("lsps5_refused_too_many_webhooks")
            raise Lsps0Error(TOO_MANY_WEBHOOKS_CODE, "too_many_webhooks",
                             {"max_webhooks": self.config.lsps5_max_webhooks}, request.id)
        client = self.clients.get(peer_id)
        if client is None and self._client_count() >= self.config.lsps5_max_clients:
            self.store.bump("lsps5_refused_max_clients")
            raise Lsps0Error(UNKNOWN_CODE, "this LSP serves no more webhook clients", None, request.id)
        with self.store.tx():  # on disk before the answer (LSPS5 "MUST persist ... before responding")
            if client is None:
                self.clients.put(ClientRow(peer_id, now, 0 if has_channel else now))
            self.webhooks.put(WebhookRow(_key(peer_id, app_name), peer_id, app_name, parsed.url, now))
            self.store.bump("lsps5_registered")
        call = n.Call(peer_id, app_name, parsed.url, n.WEBHOOK_REGISTERED, n.body(n.WEBHOOK_REGISTERED))
        return self._set_result(peer_id, False), [call]

    def _set_result(self, peer_id: str, no_change: bool) -> dict:
        return {"num_webhooks": len(self.of(peer_id)), "max_webhooks": self.config.lsps5_max_webhooks,
                "no_change": no_change}

    def _client_count(self) -> int:
        return self.store.conn.execute("SELECT COUNT(*) FROM lsps5_clients").fetchone()[0]

    # -- events -------------------------------------------------------------

    def notify(self, peer_id: str, method: str, now: int, params: dict | None = None) -> list[n.Call]:
        """Calls to every webhook of the client, unless the same method went
        to it less than ``lsps5-notify-cooldown`` ago without it connecting
        since (LSPS5 "Rate-limiting Notifications By method")."""
        hooks = self.of(peer_id)
        if not hooks:
            return []
        key = _key(peer_id, method)
        last = self.cooldowns.get(key)
        if last is not None and now - last.sent_at < self.config.lsps5_notify_cooldown:
            self.store.bump("lsps5_cooldown_skipped")
            return []
        with self.store.tx():  # one commit
            self.cooldowns.put(CooldownRow(key, peer_id, method, now))
            self.store.bump(f"lsps5_notified_{method.removeprefix('lsps5.')}")
        return [n.Call(peer_id, h.app_name, h.url, method, n.body(method, params)) for h in hooks]

    def connected(self, peer_id: str) -> None:
        """The client came online: its cooldowns start afresh (LSPS5: "reset
        once the client comes online and then goes offline")."""
        self.store.conn.execute("DELETE FROM lsps5_cooldowns WHERE peer_id = ?", (peer_id,))

    def sent(self, call: n.Call, status: str, now: int) -> None:
        """Record a call's outcome on its webhook (if it is still registered there)."""
        row = self.webhooks.get(_key(call.peer_id, call.app_name))
        if row is not None and row.url == call.url:
            row.last_sent_at, row.last_status = now, status
            self.webhooks.put(row)

    def retain(self, channel_peers: set[str], now: int) -> list[str]:
        """Forget the clients whose last channel with us has been gone
        ``lsps5-retention`` seconds (LSPS5: "at least 7 days after the last
        channel with the client is closed"); returns their ids."""
        gone = []
        with self.store.tx():
            for c in self._retain_candidates(channel_peers, now):
                if c.peer_id in channel_peers:
                    if c.no_channel_since:
                        c.no_channel_since = 0
                        self.clients.put(c)
                elif not c.no_channel_since:
                    c.no_channel_since = now
                    self.clients.put(c)
                elif now - c.no_channel_since >= self.config.lsps5_retention:
                    self.forget(c.peer_id)
                    gone.append(c.peer_id)
        self._channel_peers, self._retained_at = frozenset(channel_peers), now
        if gone:
            self.store.bump("lsps5_expired_clients", len(gone))
        return gone

    def _retain_candidates(self, channel_peers: set[str], now: int) -> list[ClientRow]:
        """The clients ``retain`` may change: every one on the first call, then
        only those whose channel came or went since the last call, those
        registered since, and those whose retention ran out (indexes on
        no_channel_since and created_at): a block's work is what changed, not
        the clients registered (issue 24)."""
        if self._channel_peers is None:
            return self.clients.where(order="peer_id")
        changed = sorted(set(channel_peers) ^ self._channel_peers)
        rows = {c.peer_id: c for c in self.clients.where(
            "no_channel_since BETWEEN 1 AND ?", (now - self.config.lsps5_retention,))}
        rows.update((c.peer_id, c) for c in self.clients.where("created_at >= ?", (self._retained_at,)))
        for i in range(0, len(changed), 500):
            rows.update((c.peer_id, c) for c in self.clients.where_in("peer_id", tuple(changed[i:i + 500])))
        return [rows[p] for p in sorted(rows)]

    # -- the operator's view --------------------------------------------------

    def of(self, peer_id: str) -> list[WebhookRow]:
        return self.webhooks.where("peer_id = ?", (peer_id,), "registered_at, app_name")

    def all(self) -> list[WebhookRow]:
        return self.webhooks.where(order="peer_id, registered_at, app_name")

    def count(self) -> int:
        return self.store.conn.execute("SELECT COUNT(*) FROM lsps5_webhooks").fetchone()[0]

    def has_webhooks(self, peer_id: str) -> bool:
        q = "SELECT 1 FROM lsps5_webhooks WHERE peer_id = ? LIMIT 1"
        return self.store.conn.execute(q, (peer_id,)).fetchone() is not None

    def delete(self, peer_id: str, app_name: str) -> bool:
        """Remove one webhook; the client goes with its last one."""
        with self.store.tx():
            gone = self.store.conn.execute("DELETE FROM lsps5_webhooks WHERE key = ?",
                                           (_key(peer_id, app_name),)).rowcount > 0
            if gone and not self.has_webhooks(peer_id):
                self.forget(peer_id)
        return gone

    def forget(self, peer_id: str) -> None:
        with self.store.tx():
            for table in ("lsps5_webhooks", "lsps5_cooldowns", "lsps5_clients"):
                self.store.conn.execute(f"DELETE FROM {table} WHERE peer_id = ?", (peer_id,))
