"""The LSPS5 adapter (cln/lsps5.py) against a fake lightningd and a real
local HTTPS server (a trustme CA): custom messages in and out, LSPS0's
own answers on and off, webhook calls signed and sent (and what is
refused), and hold-for-wake-up through htlc_accepted."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time

import pytest
import trustme
from coincurve import PrivateKey

import ln_message
from asyncpay.cln.lsps5 import Lsps5Role
from asyncpay.lsps import lsps0
from asyncpay.lsps import notifications as n
from asyncpay.lsps.config import Lsps5Config
from asyncpay.store import Store

SECRET = bytes([5]) * 32
LSP_ID = PrivateKey(SECRET).public_key.format()
CLIENT = "02" + "44" * 32
STRANGER = "03" + "55" * 32
SCID = "103x1x0"


class FakeRpc:
    def __init__(self, host: FakeHost) -> None:
        self.host, self.sent = host, []

    def getinfo(self) -> dict:
        return {"id": LSP_ID.hex(), "blockheight": self.host.height}

    def call(self, method: str, params: dict | None = None) -> dict:
        params = params or {}
        if method == "listconfigs":
            return {"configs": self.host.configs_shown}
        if method == "sendcustommsg":
            self.sent.append((params["node_id"], bytes.fromhex(params["msg"])))
            return {"status": "sent"}
        if method == "signmessage":
            return {"zbase": ln_message.sign(SECRET, params["message"])}
        if method == "listpeerchannels":
            return {"channels": self.host.channels}
        raise AssertionError(f"unexpected RPC {method}")


class FakeHost:
    """What Lsps5Role sees of the node (role.Host)."""

    def __init__(self, db: str, **cfg) -> None:
        self.store = Store(db)
        self.lock = threading.RLock()
        self.node_id = LSP_ID
        self.online: set[str] = set()
        self.height = 800_000
        self.cltv_delta = 34  # lightningd's default
        self.configs_shown: dict = {}
        self.channels = [{"peer_id": CLIENT, "short_channel_id": SCID, "htlcs": []}]
        self.logged: list[str] = []
        self.config = Lsps5Config(**cfg)
        self.rpc = FakeRpc(self)

    def log(self, msg: str, level: str = "info") -> None:
        self.logged.append(msg)

    def current_height(self) -> int:
        return self.height

    def saw_height(self, height: int) -> None:
        self.height = max(self.height, height)

    def notify(self, topic: str, params: dict) -> None:
        pass

    def config_for(self, cls):
        assert cls is Lsps5Config
        return self.config

    def channel_peers(self) -> dict[str, set[str]]:
        return {c["peer_id"]: {c["short_channel_id"]} for c in self.channels}

    def connected_peers(self) -> frozenset[str]:
        return frozenset(self.online)

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self.online

    def peer_for_scid(self, scid: str) -> str | None:
        return next((p for p, s in self.channel_peers().items() if scid.split("/")[0] in s), None)


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv.got.append((self.path, dict(self.headers), body))
        status = srv.statuses.pop(0) if srv.statuses else 200
        self.send_response(status)
        if status in (301, 302, 307, 308):
            self.send_header("Location", f"https://127.0.0.1:{srv.server_address[1]}/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def server(ca):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "push.test").configure_cert(ctx)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.got, srv.statuses = [], []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def make(tmp_path, **cfg) -> tuple[FakeHost, Lsps5Role]:
    host = FakeHost(str(tmp_path / "a.sqlite3"), **cfg)
    return host, Lsps5Role(host)


def request(role: Lsps5Role, peer: str, method: str, params: dict | None = None, rid: str = "id-1") -> dict | None:
    """Send one LSPS0 request as the custommsg hook would; the decoded answer, if any."""
    raw = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}).encode()
    host = role.node
    before = len(host.rpc.sent)
    role.on_custommsg(peer, lsps0.frame(raw).hex())
    if len(host.rpc.sent) == before:
        return None
    node_id, msg = host.rpc.sent[-1]
    assert node_id == peer and lsps0.unframe(msg) is not None
    return json.loads(lsps0.unframe(msg))


def deliver_all(role: Lsps5Role) -> list[str]:
    return [role.deliver(c) for c in role.outbox.due(float("inf"))]


def url_of(server, path="/push?t=1") -> str:
    return f"https://127.0.0.1:{server.server_address[1]}{path}"


# -- custom messages ------------------------------------------------------------------


def test_set_webhook_answers_then_webhook_registered_arrives_signed(tmp_path, server, ca_file):
    host, role = make(tmp_path, lsps5_allow_hosts="127.0.0.1", lsps5_ca_file=ca_file)
    answer = request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": url_of(server)})
    assert answer == {"jsonrpc": "2.0", "id": "id-1",
                      "result": {"num_webhooks": 1, "max_webhooks": 5, "no_change": False}}
    assert deliver_all(role) == ["200"]
    ((path, headers, body),) = server.got
    assert path == "/push?t=1" and body == b'{"jsonrpc":"2.0","method":"lsps5.webhook_registered","params":{}}'
    ts, sig = headers["x-lsps5-timestamp"], headers["x-lsps5-signature"]
    assert len(ts) == 24 and ts.endswith("Z") and headers["Content-Type"] == "application/json"
    assert ln_message.recover(n.signed_text(ts, body), sig) == LSP_ID
    (row,) = role.service.of(CLIENT)
    assert row.last_status == "200" and row.last_sent_at is not None
    assert request(role, CLIENT, "lsps5.list_webhooks")["result"] == {"app_names": ["w"], "max_webhooks": 5}


def test_a_redirect_is_not_followed_and_a_failure_is_retried(tmp_path, server, ca_file):
    host, role = make(tmp_path, lsps5_allow_hosts="127.0.0.1", lsps5_ca_file=ca_file, lsps5_retry_attempts=2)
    server.statuses = [302, 500]
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": url_of(server)})
    assert deliver_all(role) == ["302"]
    assert len(role.outbox) == 1  # scheduled again
    assert deliver_all(role) == ["500"]
    assert len(role.outbox) == 0 and [g[0] for g in server.got] == ["/push?t=1", "/push?t=1"]
    c = host.store.counters()
    assert (c["lsps5_sent_failed"], c["lsps5_given_up"]) == (2, 1)


def test_a_name_is_called_at_its_checked_address_with_its_own_tls_name(tmp_path, server, ca_file):
    """We connect to the address we checked (the next one if it is unreachable),
    and the certificate is checked against the URL's name (SNI and Host)."""
    host, role = make(tmp_path, lsps5_allow_hosts="push.test", lsps5_ca_file=ca_file)
    asked = []
    role.resolve = lambda h, p: asked.append((h, p)) or ["127.0.0.2", "127.0.0.1"]  # nothing listens on .2
    port = server.server_address[1]
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": f"https://push.test:{port}/x"})
    assert deliver_all(role) == ["200"]
    assert asked == [("push.test", port)]  # resolved once
    ((path, headers, _),) = server.got
    assert path == "/x" and headers["Host"] == f"push.test:{port}"


def test_without_the_ca_file_the_certificate_is_refused(tmp_path, server):
    host, role = make(tmp_path, lsps5_allow_hosts="127.0.0.1")
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": url_of(server)})
    (status,) = deliver_all(role)
    assert status.startswith("error:") and server.got == []


def test_without_the_allow_list_a_loopback_webhook_is_refused(tmp_path, server, ca_file):
    host, role = make(tmp_path, lsps5_ca_file=ca_file)
    answer = request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": url_of(server)})
    assert answer["error"]["code"] == 501 and role.service.of(CLIENT) == []
    # A name resolving to loopback is refused at call time, without a connection.
    role.resolve = lambda h, p: ["127.0.0.1"]
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": "https://push.example.org/x"})
    assert deliver_all(role) == ["refused: push.example.org resolves to 127.0.0.1, which is loopback"]
    # Counted at set_webhook, then at the call.
    assert server.got == [] and host.store.counters()["lsps5_refused_address_loopback"] == 2


def test_lsps0_answers_when_we_are_the_lsps0_server(tmp_path):
    host, role = make(tmp_path, lsps0_server="on")
    assert request(role, CLIENT, "lsps0.list_protocols")["result"] == {"protocols": [5]}
    assert request(role, CLIENT, "lsps2.get_info")["error"]["code"] == -32601
    role.on_custommsg(CLIENT, lsps0.frame(b"{oops").hex())
    assert json.loads(lsps0.unframe(host.rpc.sent[-1][1])) == {
        "jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    before = len(host.rpc.sent)
    role.on_custommsg(CLIENT, (bytes.fromhex("9417") + b"{}").hex())  # not LSPS0: not ours
    role.on_custommsg(CLIENT, "zz")
    assert len(host.rpc.sent) == before


def test_with_another_lsps0_server_only_lsps5_is_answered(tmp_path):
    host = FakeHost(str(tmp_path / "a.sqlite3"))
    host.configs_shown = {"experimental-lsps2-service": {"set": True}}
    role = Lsps5Role(host)  # lsps0-server auto: CLN's LSPS service is on
    assert role.lsps0_server is False
    assert request(role, CLIENT, "lsps0.list_protocols") is None
    assert request(role, CLIENT, "lsps2.get_info") is None
    role.on_custommsg(CLIENT, lsps0.frame(b"{oops").hex())
    assert host.rpc.sent == []
    assert request(role, CLIENT, "lsps5.list_webhooks")["result"]["max_webhooks"] == 5


def test_requests_per_peer_are_bounded(tmp_path):
    host, role = make(tmp_path)
    answered = sum(request(role, CLIENT, "lsps5.list_webhooks") is not None for _ in range(40))
    assert answered < 40 and host.store.counters()["lsps0_requests_limited"] == 40 - answered


def test_a_stranger_cannot_register(tmp_path):
    host, role = make(tmp_path)
    answer = request(role, STRANGER, "lsps5.set_webhook", {"app_name": "w", "webhook": "https://e.org/"})
    assert answer["error"]["code"] == 1003 and role.service.all() == []


# -- events that wake ------------------------------------------------------------------


def register(role: Lsps5Role, url="https://push.example.org/x") -> None:
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": url})
    role.outbox.due(float("inf"))  # webhook_registered taken out


def test_mail_for_an_offline_client_calls_onion_message_incoming(tmp_path):
    host, role = make(tmp_path)
    register(role)
    role.mail_queued(CLIENT)
    assert [c.method for c in role.outbox.due(float("inf"))] == [n.ONION_MESSAGE_INCOMING]
    host.online.add(CLIENT)
    role.mail_queued(CLIENT)  # connected: the flush delivers it, no wake-up
    assert len(role.outbox) == 0


def test_an_htlc_near_expiry_with_an_offline_client_calls_expiry_soon(tmp_path):
    host, role = make(tmp_path)
    register(role)
    host.channels[0]["htlcs"] = [{"direction": "out", "expiry": 800_030}]
    role.on_block(800_000, int(time.time()))
    assert len(role.outbox) == 0  # 30 blocks away
    role.on_block(800_010, int(time.time()))
    (c,) = role.outbox.due(float("inf"))
    assert json.loads(c.body) == {"jsonrpc": "2.0", "method": "lsps5.expiry_soon", "params": {"timeout": 800_030}}


# -- hold for wake-up --------------------------------------------------------------------


def htlc(htlc_id=0, relative=100, outgoing=800_060, scid=SCID) -> dict:
    return {"onion": {"short_channel_id": scid, "outgoing_cltv_value": outgoing, "forward_msat": 1000},
            "htlc": {"short_channel_id": "200x1x0", "id": htlc_id, "amount_msat": 1100,
                     "cltv_expiry": 800_000 + relative, "cltv_expiry_relative": relative,
                     "payment_hash": "aa" * 32}}


class Answers:
    def __init__(self) -> None:
        self.got: list[dict] = []

    def __call__(self, answer: dict) -> None:
        self.got.append(answer)


def test_an_htlc_for_an_offline_client_waits_for_it(tmp_path):
    host, role = make(tmp_path)
    register(role)
    answers = Answers()
    assert role.on_htlc(htlc(), answers) is True
    assert answers.got == []  # held
    assert [c.method for c in role.outbox.due(float("inf"))] == [n.PAYMENT_INCOMING]
    host.online.add(CLIENT)
    role.on_connect(CLIENT)
    assert answers.got == [{"result": "continue"}]
    role.tick(int(time.time()) + 3600)
    assert len(answers.got) == 1  # one verdict


def test_an_htlc_nobody_wakes_fails_at_the_timeout(tmp_path):
    host, role = make(tmp_path, wake_timeout=60)
    register(role)
    answers = Answers()
    role.on_htlc(htlc(), answers)
    now = int(time.time())
    role.tick(now + 30)
    assert answers.got == []
    role.tick(now + 61)
    assert answers.got == [{"result": "fail", "failure_message": "2002"}]
    host.online.add(CLIENT)
    role.on_connect(CLIENT)
    assert len(answers.got) == 1


def test_not_ours(tmp_path):
    host, role = make(tmp_path)
    answers = Answers()
    assert role.on_htlc(htlc(), answers) is False  # offline, but no webhook
    register(role)
    assert role.on_htlc(htlc(htlc_id=1, relative=39, outgoing=800_004), answers) is False  # budget within the margin
    assert role.on_htlc(htlc(htlc_id=2, scid="999x9x9"), answers) is False  # not a peer of ours
    host.online.add(CLIENT)
    assert role.on_htlc(htlc(htlc_id=3), answers) is False  # online: lightningd forwards it
    assert answers.got == [] and host.store.counters()["wake_not_held_cltv_budget"] == 1


def test_a_wallet_marked_by_the_operator_is_held_without_a_webhook(tmp_path):
    host, role = make(tmp_path, wake_wallets=CLIENT)
    answers = Answers()
    assert role.on_htlc(htlc(), answers) is True and len(role.outbox) == 0


def test_a_restart_keeps_the_deadline(tmp_path):
    host, role = make(tmp_path, wake_timeout=60)
    register(role)
    first = Answers()
    role.on_htlc(htlc(), first)
    # lightningd and the plugin restart; lightningd replays the HTLC.
    again = Lsps5Role(host)
    replay = Answers()
    assert again.on_htlc(htlc(), replay) is True and replay.got == []
    again.tick(int(time.time()) + 61)
    assert replay.got == [{"result": "fail", "failure_message": "2002"}] and first.got == []
    # A second replay of the same HTLC gets the stored verdict.
    third = Answers()
    assert Lsps5Role(host).on_htlc(htlc(), third) is True
    assert third.got == [{"result": "fail", "failure_message": "2002"}]
