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

import ln_message
from asyncpay.cln import webhook_http
from asyncpay.cln.lsps5 import Lsps5Role
from asyncpay.lsps import lsps0
from asyncpay.lsps import notifications as n
from lsps5_host import CLIENT, LSP_ID, SCID, STRANGER, FakeHost
from push_servers import PushServer


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


# -- one call, bounded as a whole (webhook_http) ------------------------------------------


@pytest.fixture
def push(ca):
    srv = PushServer(ca, names=("127.0.0.1", "push.test"))
    yield srv
    srv.close()


def timed_call(role: Lsps5Role, url: str) -> tuple[str, float]:
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": url})
    (call,) = role.outbox.due(float("inf"))
    t = time.monotonic()
    status = role.post(call)
    return status, time.monotonic() - t


@pytest.mark.parametrize("path", ["/trickle", "/102", "/hang"])
def test_a_push_service_cannot_hold_a_call_past_the_http_timeout(tmp_path, push, ca_file, path):
    """A head sent one byte at a time, or 102 Processing again and again,
    resets a per-read timeout each time; the call's own deadline does not move."""
    host, role = make(tmp_path, lsps5_allow_hosts="127.0.0.1", lsps5_ca_file=ca_file, lsps5_http_timeout=1)
    status, took = timed_call(role, push.url(path))
    assert status == "timeout" and 1.0 <= took < 2.5  # the server would go on for 30 s
    assert len(push.got) == 1  # it got the call, it just never answered in time


def test_a_slow_name_lookup_counts_against_the_same_timeout(tmp_path, push, ca_file):
    host, role = make(tmp_path, lsps5_allow_hosts="push.test", lsps5_ca_file=ca_file, lsps5_http_timeout=1)
    release = threading.Event()
    role.resolve = lambda h, p: release.wait(20) and ["127.0.0.1"]
    try:
        status, took = timed_call(role, f"https://push.test:{push.port}/x")
        assert status == "timeout" and took < 2.5 and push.got == []
        # The hung look-up holds one thread, however often the name is called.
        for _ in range(3):
            assert role.post(n.Call(CLIENT, "w", f"https://push.test:{push.port}/x", n.PAYMENT_INCOMING,
                                    b"{}")) == "timeout"
        assert role.lookup.pending() == 1
    finally:
        release.set()
    # Once the resolver answers, the next call goes through.
    deadline = time.monotonic() + 5
    while role.lookup.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert role.post(n.Call(CLIENT, "w", f"https://push.test:{push.port}/x", n.PAYMENT_INCOMING, b"{}")) == "200"


def test_an_honest_push_service_still_answers_within_the_timeout(tmp_path, push, ca_file):
    host, role = make(tmp_path, lsps5_allow_hosts="127.0.0.1", lsps5_ca_file=ca_file, lsps5_http_timeout=1)
    assert timed_call(role, push.url("/slow300"))[0] == "200"
    assert timed_call(role, push.url("/ok"))[0] == "200"


def test_an_ipv6_webhook_host_goes_out_in_brackets(tmp_path, ca, ca_file, monkeypatch):
    """RFC 3986 host form: Host: [::1]:port, and [2001:db8::1] alone on 443."""
    srv = PushServer(ca, names=("::1",), address="::1")
    try:
        host, role = make(tmp_path, lsps5_allow_hosts="::1", lsps5_ca_file=ca_file)
        assert timed_call(role, f"https://[::1]:{srv.port}/v6")[0] == "200"
        assert srv.got[0][1]["Host"] == f"[::1]:{srv.port}"
    finally:
        srv.close()
    sent = []
    monkeypatch.setattr(webhook_http, "post", lambda address, port, name, target, headers, *a: sent.append(
        (address, port, name, target, headers["Host"])) or 200)
    host, role = make(tmp_path, lsps5_allow_hosts="2001:db8::/32")
    assert timed_call(role, "https://[2001:DB8::1]/x?a=1")[0] == "200"
    assert sent == [("2001:db8::1", 443, "2001:db8::1", "/x?a=1", "[2001:db8::1]")]
    assert webhook_http.host_header("push.example.org", 443) == "push.example.org"
    assert webhook_http.host_header("push.example.org", 8443) == "push.example.org:8443"


# -- removed and replaced webhooks ----------------------------------------------------------


def test_a_removed_webhook_is_never_called_again(tmp_path, push, ca_file):
    host, role = make(tmp_path, lsps5_allow_hosts="127.0.0.1", lsps5_ca_file=ca_file, lsps5_retry_first=1)
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": push.url("/a")})
    running = role.outbox.take(time.monotonic())  # webhook_registered on its way
    role.notify(CLIENT, n.PAYMENT_INCOMING)  # waits behind it
    assert len(role.outbox) == 1
    answer = request(role, CLIENT, "lsps5.remove_webhook", {"app_name": "w"})
    assert answer["result"] == {} and len(role.outbox) == 0
    # The call that was running when it went is not tried again.
    assert role.outbox.result(running, ok=False, now=time.monotonic()) is False
    assert deliver_all(role) == [] and push.got == []


def test_after_a_url_change_only_the_new_url_is_called(tmp_path, push, ca_file):
    """LSPS5: webhook_registered goes to the webhook just set; the replaced URL gets nothing more."""
    host, role = make(tmp_path, lsps5_allow_hosts="127.0.0.1", lsps5_ca_file=ca_file)
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": push.url("/old")})
    role.notify(CLIENT, n.ONION_MESSAGE_INCOMING)
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": push.url("/new")})
    while role.outbox.calls:
        deliver_all(role)
    got = [(path, json.loads(body)["method"]) for path, _, body, _ in push.got]
    assert got == [("/new", n.WEBHOOK_REGISTERED)]


# -- who has a channel ------------------------------------------------------------------


@pytest.mark.parametrize("state,counts", [
    ("CHANNELD_NORMAL", True), ("CHANNELD_AWAITING_SPLICE", True), ("CHANNELD_AWAITING_LOCKIN", False),
    ("DUALOPEND_AWAITING_LOCKIN", False), ("OPENINGD", False), ("CHANNELD_SHUTTING_DOWN", False),
    ("CLOSINGD_COMPLETE", False), ("AWAITING_UNILATERAL", False), ("ONCHAIN", False)])
def test_only_a_usable_channel_lets_a_peer_register(tmp_path, state, counts):
    """As LDK's service (ChannelDetails::is_usable): an unconfirmed funding or a
    closing channel costs nothing on chain to keep, so it does not count."""
    host, role = make(tmp_path)
    host.channels[0]["state"] = state
    answer = request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": "https://push.example.org/x"})
    assert ("result" in answer) is counts and (answer.get("error", {}).get("code") == 1003) is not counts


def test_a_closed_channel_starts_the_retention_clock(tmp_path):
    host, role = make(tmp_path)
    request(role, CLIENT, "lsps5.set_webhook", {"app_name": "w", "webhook": "https://push.example.org/x"})
    host.channels[0]["state"] = "ONCHAIN"
    role.on_block(800_001, 1_000)
    assert role.service.clients.get(CLIENT).no_channel_since == 1_000


# -- what the wake hold admits -------------------------------------------------------------


def test_held_htlcs_take_only_a_share_of_the_incoming_channels_slots(tmp_path):
    host, role = make(tmp_path, wake_channel_share=25)
    host.channels.append({"peer_id": STRANGER, "short_channel_id": "200x1x0", "state": "CHANNELD_NORMAL",
                          "max_accepted_htlcs": 8, "htlcs": []})
    register(role)
    answers = Answers()
    assert [role.on_htlc(htlc(i), answers) for i in range(3)] == [True, True, False]  # 25% of 8
    assert host.store.counters()["wake_not_held_channel_slots"] == 1
    # Another incoming channel has its own share (CLN's 30 slots when it does not say: 7).
    other = [htlc(10 + i) for i in range(8)]
    for h in other:
        h["htlc"]["short_channel_id"] = "300x1x0"
    assert sum(role.on_htlc(h, answers) for h in other) == 7


def test_an_htlc_the_client_could_never_receive_is_not_held(tmp_path):
    host, role = make(tmp_path)
    host.channels[0]["spendable_msat"] = 2500
    register(role)
    answers = Answers()
    assert role.on_htlc(htlc(0), answers) is True  # 1000 msat forwarded of 2500
    assert role.on_htlc(htlc(1), answers) is True  # 1100 held + 1000 = 2100
    assert role.on_htlc(htlc(2), answers) is False  # 2200 + 1000 > 2500
    host.channels[0]["state"] = "CHANNELD_AWAITING_LOCKIN"  # no usable channel: nothing can reach it
    assert role.on_htlc(htlc(3), answers) is False
    assert host.store.counters()["wake_not_held_not_receivable"] == 2 and answers.got == []


def test_a_malformed_request_is_answered_without_a_traceback(tmp_path):
    host, role = make(tmp_path, lsps0_server="on")
    for raw in (b'{"jsonrpc":"2.0","id":' + b"1" * 4301 + b',"method":"lsps5.list_webhooks","params":{}}',
                b'{"jsonrpc":"2.0","id":"a","method":"lsps5.set_webhook","params":{"app_name":"\\ud800",'
                b'"webhook":"https://push.example.org/x"}}',
                json.dumps({"jsonrpc": "2.0", "id": "i" * 70_000, "method": "lsps5.list_webhooks"}).encode()):
        role.on_custommsg(CLIENT, lsps0.frame(raw).hex())
        answer = json.loads(lsps0.unframe(host.rpc.sent[-1][1]))
        assert answer["id"] is None and answer["error"]["code"] in (-32700, -32600)
    assert not [line for line in host.logged if "Traceback" in line] and role.service.all() == []
