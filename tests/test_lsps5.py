"""LSPS5 webhooks (bLIP-55), daemon-free: the LSPS0 codec, every LSPS5
method and error, the signed notification (the spec's own example text, and
an independent verifier), cooldown, retries, the queue's bounds, the URL
guard (each refused address class) and retention."""

from __future__ import annotations

import json

import pytest
from coincurve import PrivateKey
from hypothesis import given
from hypothesis import strategies as st

import ln_message
from asyncpay.lsps import lsps0
from asyncpay.lsps import notifications as n
from asyncpay.lsps.config import ANY, LDK, Lsps5Config
from asyncpay.lsps.url_guard import AllowList, UrlRefused, address_refusal, check_static, parse_webhook, pick_address
from asyncpay.lsps.webhooks import WebhookService
from asyncpay.store import Store

PEER = "02" + "11" * 32
OTHER = "03" + "22" * 32
URL = "https://push.example.org/lsps5?token=abc"
NOW = 1_800_000_000


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "lsps5.sqlite3"))
    yield s
    s.close()


def service(store, **cfg) -> WebhookService:
    return WebhookService(store, Lsps5Config(**cfg))


def req(method: str, params: dict | None = None, rid: str = "r1") -> lsps0.Request:
    return lsps0.Request(rid, method, params if params is not None else {})


def set_hook(svc, name="wallet", url=URL, peer=PEER, now=NOW, channel=True):
    return svc.handle(peer, req("lsps5.set_webhook", {"app_name": name, "webhook": url}), now, channel)


def error_of(fn) -> lsps0.Lsps0Error:
    with pytest.raises(lsps0.Lsps0Error) as e:
        fn()
    return e.value


# -- LSPS0 transport -----------------------------------------------------------


def test_lsps0_frame_is_type_37913_then_json():
    payload = lsps0.response("x", {"protocols": [5]})
    framed = lsps0.frame(payload)
    assert framed[:2] == bytes.fromhex("9419") and lsps0.unframe(framed) == payload
    assert json.loads(payload) == {"jsonrpc": "2.0", "id": "x", "result": {"protocols": [5]}}
    assert lsps0.unframe(bytes.fromhex("9417") + payload) is None  # another custom message


@pytest.mark.parametrize("payload", [b"{", b" [ ] ", b"{} {}", b'{"a":1}\x00', b"\xff\xfe", b"", b"42"])
def test_lsps0_bad_message_format_is_a_parse_error_with_null_id(payload):
    e = error_of(lambda: lsps0.read_request(payload))
    assert (e.code, e.request_id) == (lsps0.PARSE_ERROR, None)
    assert json.loads(lsps0.error_response(e)) == {"jsonrpc": "2.0", "id": None,
                                                   "error": {"code": -32700, "message": "Parse error"}}


def test_lsps0_request_checks():
    ok = lsps0.read_request(b' \n{"jsonrpc":"2.0","id":"a1","method":"lsps5.list_webhooks","params":{}} ')
    assert ok == lsps0.Request("a1", "lsps5.list_webhooks", {})
    assert lsps0.read_request(b'{"jsonrpc":"2.0","id":"b","method":"m"}').params == {}  # params may be left out
    # A notification (no id) and a wrong version are invalid requests.
    assert error_of(lambda: lsps0.read_request(b'{"jsonrpc":"2.0","method":"m","params":{}}')).code == -32600
    e = error_of(lambda: lsps0.read_request(b'{"jsonrpc":"1.0","id":"c","method":"m","params":{}}'))
    assert (e.code, e.request_id) == (-32600, "c")
    # By-position parameters are refused (LSPS0: by-name only).
    e = error_of(lambda: lsps0.read_request(b'{"jsonrpc":"2.0","id":"d","method":"m","params":[1]}'))
    assert e.code == -32602 and e.data == {"unrecognized": []}


@pytest.mark.parametrize("payload", [
    b'{"jsonrpc":"2.0","id":' + b"9" * 4301 + b',"method":"m","params":{}}',  # over int_max_str_digits
    b'{"jsonrpc":"2.0","id":"a","method":"m","params":{"x":' + b"1" * 5000 + b"}}",
    b'{"jsonrpc":"2.0","id":"a","method":"m","params":{"x":"\\ud800"}}',  # JSON, but no UTF-8
    b'{"jsonrpc":"2.0","id":"a","method":"m","params":{"x":"\\uZZZZ"}}',
    b"[" * 100_000,
    b'{"a":NaN}',
])
def test_a_malformed_request_gets_its_json_rpc_error_never_an_exception(payload):
    try:
        lsps0.read_request(payload)
    except lsps0.Lsps0Error as e:
        assert e.code in (lsps0.PARSE_ERROR, lsps0.INVALID_REQUEST)
        assert len(lsps0.error_response(e)) < 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


@given(st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(["jsonrpc", "id", "method", "params", "x"]), json_values, max_size=5).map(
        lambda d: json.dumps(d).encode()),
    st.integers(4000, 6000).map(lambda k: b'{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":' + b"7" * k + b"}}"),
))
def test_any_bytes_give_a_request_or_a_json_rpc_error_that_fits(payload):
    try:
        r = lsps0.read_request(payload)
    except lsps0.Lsps0Error as e:
        assert e.code in (lsps0.PARSE_ERROR, lsps0.INVALID_REQUEST, lsps0.INVALID_PARAMS)
        assert len(lsps0.error_response(e)) <= lsps0.MAX_PAYLOAD
        return
    assert isinstance(r.method, str) and isinstance(r.params, dict)
    assert len(lsps0.response(r.id, {"app_names": [], "max_webhooks": 5})) <= lsps0.MAX_PAYLOAD


def test_a_lone_surrogate_escape_is_a_parse_error_not_a_store_failure():
    """"\ud800" is valid JSON text but no Unicode character: as an app_name it
    made the store raise (a traceback and -32603)."""
    for payload in (b'{"jsonrpc":"2.0","id":"a","method":"lsps5.set_webhook","params":{"app_name":"\\ud800"}}',
                    b'{"jsonrpc":"2.0","id":"\\udfff","method":"m"}'):
        e = error_of(lambda p=payload: lsps0.read_request(p))
        assert (e.code, e.request_id) == (lsps0.PARSE_ERROR, None)
    ok = lsps0.read_request(b'{"jsonrpc":"2.0","id":"a","method":"m","params":{"x":"\\ud83d\\ude00"}}')
    assert ok.params == {"x": "\U0001f600"}  # a surrogate pair is one character


def test_an_integer_id_of_more_than_4300_digits_is_a_parse_error():
    payload = b'{"jsonrpc":"2.0","id":' + b"9" * 4301 + b',"method":"lsps0.list_protocols","params":{}}'
    e = error_of(lambda: lsps0.read_request(payload))
    assert (e.code, e.request_id) == (lsps0.PARSE_ERROR, None)


def test_an_over_long_request_id_is_refused_with_an_answer_that_fits_a_message():
    ok_id = "i" * (lsps0.MAX_ID_LENGTH - 2)  # its JSON text is MAX_ID_LENGTH long
    r = lsps0.read_request(json.dumps({"jsonrpc": "2.0", "id": ok_id, "method": "m"}).encode())
    # The longest answer we give echoes such an id and fits one custom message.
    big = {"app_names": ["\u00e9" * 32] * 5, "max_webhooks": 5}
    assert len(lsps0.response(r.id, big)) <= lsps0.MAX_PAYLOAD
    for rid in ("x" * 65_000, '"' * 600, 10 ** 2000):  # '"' is two bytes once escaped
        payload = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "m"}).encode()
        e = error_of(lambda p=payload: lsps0.read_request(p))
        assert (e.code, e.request_id) == (lsps0.INVALID_REQUEST, None)
        assert len(lsps0.error_response(e)) < 200


# -- lsps5.set_webhook ---------------------------------------------------------


def test_set_webhook_persists_then_answers_and_registers_once(store):
    svc = service(store)
    result, calls = set_hook(svc)
    assert result == {"num_webhooks": 1, "max_webhooks": 5, "no_change": False}
    assert [(c.method, c.url, c.body) for c in calls] == [
        (n.WEBHOOK_REGISTERED, URL, b'{"jsonrpc":"2.0","method":"lsps5.webhook_registered","params":{}}')]
    # On disk: a fresh service over the same store sees it.
    assert [r.view()["url"] for r in service(store).of(PEER)] == [URL]
    # The same app_name and URL again: no_change, no notification.
    assert set_hook(svc) == ({"num_webhooks": 1, "max_webhooks": 5, "no_change": True}, [])
    # A new URL under the same name replaces it and is notified.
    result, calls = set_hook(svc, url=URL + "2")
    assert result["no_change"] is False and result["num_webhooks"] == 1 and calls[0].url == URL + "2"


def test_too_many_webhooks_is_503_with_max_webhooks(store):
    svc = service(store, lsps5_max_webhooks=2)
    set_hook(svc, "a")
    assert set_hook(svc, "b")[0]["num_webhooks"] == 2
    e = error_of(lambda: set_hook(svc, "c"))
    assert (e.code, e.data) == (503, {"max_webhooks": 2})
    set_hook(svc, "a", url=URL + "x")  # replacing is always allowed
    assert store.counters()["lsps5_refused_too_many_webhooks"] == 1


@pytest.mark.parametrize("name,url,code", [
    ("é" * 33, URL, 500),  # 66 bytes of UTF-8
    ("w", "https://e.org/" + "a" * 1011, 500),
    ("w", "not a url", 501),
    ("w", "https://exa mple.org/", 501),
    ("w", "https://", 501),
    ("w", "https://user:pw@e.org/", 501),
    ("w", "https://e.org:99999/", 501),
    ("w", "http://e.org/push", 502),
    ("w", "ftp://e.org/push", 502),
    ("w", "https://127.0.0.1/push", 501),
    ("w", "https://[::1]:8443/", 501),
    ("w", "https://localhost/", 501),
    ("w", "https://169.254.169.254/latest/meta-data", 501),
])
def test_set_webhook_errors(store, name, url, code):
    assert error_of(lambda: set_hook(service(store), name, url)).code == code
    assert service(store).of(PEER) == []


def test_app_name_of_64_bytes_and_url_of_1024_are_fine(store):
    url = "https://e.org/" + "a" * 1010
    assert len(url) == 1024
    assert set_hook(service(store), "é" * 32, url)[0]["num_webhooks"] == 1


def test_set_webhook_params(store):
    svc = service(store)
    e = error_of(lambda: svc.handle(PEER, req("lsps5.set_webhook", {"app_name": "a", "webhook": URL, "x": 1}),
                                    NOW, True))
    assert (e.code, e.data) == (-32602, {"unrecognized": ["x"]})
    assert error_of(lambda: svc.handle(PEER, req("lsps5.set_webhook", {"app_name": "a"}), NOW, True)).code == -32602
    e = error_of(lambda: svc.handle(PEER, req("lsps5.set_webhook", {"app_name": 1, "webhook": URL}), NOW, True))
    assert e.code == -32602


def test_a_peer_without_a_channel_gets_no_prior_activity(store):
    assert error_of(lambda: set_hook(service(store), channel=False)).code == 1003  # LDK's code
    assert set_hook(service(store, lsps5_clients=ANY), channel=False)[0]["num_webhooks"] == 1


def test_set_webhook_is_rate_limited_per_client(store):
    svc = service(store, lsps5_set_burst=2, lsps5_set_per_hour=1)
    set_hook(svc, "a")
    set_hook(svc, "b")
    assert error_of(lambda: set_hook(svc, "c")).code == 1002  # LDK's slow down
    set_hook(svc, "c", peer=OTHER)  # another client has its own budget
    set_hook(svc, "c", now=NOW + 3600)  # one token an hour


def test_the_client_limit_is_1000(store):
    svc = service(store, lsps5_max_clients=1)
    set_hook(svc)
    assert error_of(lambda: set_hook(svc, peer=OTHER)).code == 1000
    set_hook(svc, "second")  # a known client may still add its own


# -- list and remove -----------------------------------------------------------


def test_list_and_remove_webhooks(store):
    svc = service(store)
    assert svc.handle(PEER, req("lsps5.list_webhooks"), NOW, True) == ({"app_names": [], "max_webhooks": 5}, [])
    set_hook(svc, "one")
    set_hook(svc, "two", now=NOW + 1)
    assert svc.handle(PEER, req("lsps5.list_webhooks"), NOW, True)[0]["app_names"] == ["one", "two"]
    assert svc.handle(OTHER, req("lsps5.list_webhooks"), NOW, True)[0]["app_names"] == []
    e = error_of(lambda: svc.handle(PEER, req("lsps5.list_webhooks", {"x": 1}), NOW, True))
    assert (e.code, e.data) == (-32602, {"unrecognized": ["x"]})
    assert svc.handle(PEER, req("lsps5.remove_webhook", {"app_name": "one"}), NOW, True) == ({}, [])
    e = error_of(lambda: svc.handle(PEER, req("lsps5.remove_webhook", {"app_name": "one"}), NOW, True))
    assert (e.code, e.request_id) == (1010, "r1")
    assert error_of(lambda: svc.handle(OTHER, req("lsps5.remove_webhook", {"app_name": "two"}), NOW, True)).code \
        == 1010  # one client cannot remove another's
    assert [r.app_name for r in svc.of(PEER)] == ["two"]


def test_unknown_lsps5_method(store):
    e = error_of(lambda: service(store).handle(PEER, req("lsps5.goodbye"), NOW, True))
    assert (e.code, e.request_id) == (-32601, "r1")


# -- the signed notification ---------------------------------------------------

SPEC_HEX_DUMP = """
4c53 5053 353a 2044 4f20 4e4f 5420 5349 474e 2054 4849 5320 4d45 5353 4147 4520
4d41 4e55 414c 4c59 3a20 4c53 503a 2041 7420 3230 3233 2d30 352d 3034 5431 303a
3532 3a35 382e 3339 355a 2049 206e 6f74 6966 7920 7b22 6a73 6f6e 7270 6322 3a22
322e 3022 2c22 6d65 7468 6f64 223a 226c 7370 7335 2e67 6f6f 6462 7965 222c 2270
6172 616d 7322 3a7b 7d7d
"""  # bLIP-55 / LSPS5 "Webhook Call": the message to be signed for its example


def test_signed_text_is_the_spec_example_byte_for_byte():
    ts = n.timestamp(1683197578395)
    assert ts == "2023-05-04T10:52:58.395Z"
    text = n.signed_text(ts, n.body("lsps5.goodbye"))
    assert text.encode() == bytes.fromhex("".join(SPEC_HEX_DUMP.split()))


def test_timestamp_styles():
    assert n.timestamp(1683197578000) == "2023-05-04T10:52:58.000Z"
    # LDK's service signs chrono's to_rfc3339, which its validator re-creates from the header.
    assert n.timestamp(1683197578395, LDK) == "2023-05-04T10:52:58.395+00:00"
    assert n.timestamp(1683197578000, LDK) == "2023-05-04T10:52:58+00:00"


def test_expiry_soon_body_carries_timeout():
    assert json.loads(n.body(n.EXPIRY_SOON, {"timeout": 800_024})) == {
        "jsonrpc": "2.0", "method": "lsps5.expiry_soon", "params": {"timeout": 800_024}}
    assert n.expiry_soon_timeout([800_100, 800_020, 800_030], 800_000, 24) == 800_020
    assert n.expiry_soon_timeout([800_025], 800_000, 24) is None


@pytest.mark.parametrize("message,zbase,key", [
    # CLN tests/test_misc.py test_signmessage: signatures made by LND users.
    ("is this compatible?",
     "rbgfioj114mh48d8egqx8o9qxqw4fmhe8jbeeabdioxnjk8z3t1ma1hu1fiswpakgucwwzwo6ofycffbsqusqdimugbh41n1g698hr9t",
     "02b80cabdf82638aac86948e4c06e82064f547768dcef977677b9ea931ea75bab5"),
    ("hi", "rnrphcjswusbacjnmmmrynh9pqip7sy5cx695h6mfu64iac6qmcmsd8xnsyczwmpqp9shqkth3h4jmkgyqu5z47jfn1q7gpxtaqpx4xg",
     "02de60d194e1ca5947b59fe8e2efd6aadeabfb67f2e89e13ae1a799c1e08e4a43b"),
])
def test_the_independent_verifier_agrees_with_other_implementations(message, zbase, key):
    assert ln_message.recover(message, zbase).hex() == key
    assert ln_message.recover(message + "x", zbase).hex() != key


def test_a_notification_signature_verifies_with_the_lsp_key():
    secret = bytes([9]) * 32
    text = n.signed_text(n.timestamp(1683197578395), n.body(n.ONION_MESSAGE_INCOMING))
    sig = ln_message.sign(secret, text)
    assert ln_message.recover(text, sig) == PrivateKey(secret).public_key.format()
    other = n.signed_text(n.timestamp(1683197578396), n.body(n.ONION_MESSAGE_INCOMING))
    assert ln_message.recover(other, sig) != PrivateKey(secret).public_key.format()


# -- cooldown --------------------------------------------------------------------


def test_cooldown_per_client_and_method_reset_on_connect(store):
    svc = service(store, lsps5_notify_cooldown=3600)
    set_hook(svc, "a")
    set_hook(svc, "b")
    first = svc.notify(PEER, n.PAYMENT_INCOMING, NOW)
    assert sorted(c.app_name for c in first) == ["a", "b"]  # every webhook of the client
    assert svc.notify(PEER, n.PAYMENT_INCOMING, NOW + 10) == []  # same method, too soon
    assert len(svc.notify(PEER, n.ONION_MESSAGE_INCOMING, NOW + 10)) == 2  # another method
    assert svc.notify(OTHER, n.PAYMENT_INCOMING, NOW) == []  # no webhooks: nothing
    svc.connected(PEER)
    assert len(svc.notify(PEER, n.PAYMENT_INCOMING, NOW + 20)) == 2
    assert svc.notify(PEER, n.PAYMENT_INCOMING, NOW + 3619) == []
    assert len(service(store, lsps5_notify_cooldown=3600).notify(PEER, n.PAYMENT_INCOMING, NOW + 3620)) == 2
    assert store.counters()["lsps5_cooldown_skipped"] == 2


def test_webhook_registered_is_not_subject_to_the_cooldown(store):
    svc = service(store)
    assert len(set_hook(svc)[1]) == 1
    assert len(set_hook(svc, url=URL + "b")[1]) == 1


# -- the outbox: retries, bounds, order -----------------------------------------


def call(peer=PEER, app="a", method=n.PAYMENT_INCOMING, url=URL) -> n.Call:
    return n.Call(peer, app, url, method, n.body(method))


def test_retry_backoff_doubles_to_the_cap_then_gives_up():
    box = n.Outbox(Lsps5Config(lsps5_retry_first=5, lsps5_retry_max_interval=15, lsps5_retry_attempts=4))
    c = call()
    assert box.add(c, 0)
    t, waits = 0.0, []
    while True:
        (due,) = box.due(t)
        if not box.result(due, ok=False, now=t):
            break
        waits.append(due.next_at - t)
        assert box.due(due.next_at - 0.1) == []
        t = due.next_at
    assert waits == [5, 10, 15] and c.attempts == 4 and len(box) == 0


def test_a_success_is_not_retried():
    box = n.Outbox(Lsps5Config())
    box.add(call(), 0)
    (c,) = box.due(0)
    assert box.result(c, ok=True, now=0) is False and len(box) == 0


def test_the_queue_is_bounded_in_all_and_per_client():
    box = n.Outbox(Lsps5Config(lsps5_queue_max=3, lsps5_queue_max_per_client=2))
    assert box.add(call(app="1"), 0) and box.add(call(app="2"), 0)
    assert not box.add(call(app="3"), 0)  # per client
    assert box.add(call(peer=OTHER), 0)
    assert not box.add(call(peer=OTHER, app="2"), 0)  # in all, and PEER has no more than its share
    assert box.dropped == 2 and len(box) == 3
    assert box.add(call(app="1"), 0) and len(box) == 3  # the same call again is not queued twice


def test_a_full_queue_cannot_crowd_out_a_client_with_few_calls():
    """50 clients filling the whole queue leave room for the 51st: the
    client with the most calls gives up its least urgent one."""
    box = n.Outbox(Lsps5Config(lsps5_queue_max=100, lsps5_queue_max_per_client=20))
    hostile = [f"02{i:064x}" for i in range(50)]
    for i in range(20):
        for p in hostile:
            box.add(call(peer=p, app=f"{i}", method=n.ONION_MESSAGE_INCOMING), i)
    assert len(box) == 100
    honest = call(peer=PEER, method=n.ONION_MESSAGE_INCOMING)
    assert box.add(honest, 30) and honest in box.calls and len(box) == 100
    # A payment_incoming pushes out a call that is not one, even of a client with few calls.
    box2 = n.Outbox(Lsps5Config(lsps5_queue_max=2, lsps5_queue_max_per_client=2))
    box2.add(call(peer=OTHER, method=n.EXPIRY_SOON), 0)
    box2.add(call(peer=OTHER, app="b", method=n.EXPIRY_SOON), 0)
    assert box2.add(call(), 1) and [c.method for c in box2.calls].count(n.PAYMENT_INCOMING) == 1
    # And within a client's own bound too.
    assert box2.add(call(app="b"), 2) and {c.peer_id for c in box2.calls} == {PEER}


def test_the_same_notification_to_a_new_url_is_queued():
    """De-duplication is per webhook URL: after a URL change the new URL's
    webhook_registered is not taken for the old one's."""
    box = n.Outbox(Lsps5Config())
    assert box.add(call(method=n.WEBHOOK_REGISTERED), 0)
    assert box.add(call(method=n.WEBHOOK_REGISTERED, url=URL + "new"), 0)
    assert [c.url for c in box.calls] == [URL, URL + "new"]


def test_webhook_registered_goes_first_even_when_retried():
    box = n.Outbox(Lsps5Config(lsps5_retry_first=5))
    box.add(call(method=n.WEBHOOK_REGISTERED), 0)
    box.add(call(method=n.ONION_MESSAGE_INCOMING), 0)
    (first,) = box.due(0)
    assert first.method == n.WEBHOOK_REGISTERED
    box.result(first, ok=False, now=0)
    assert box.due(1) == []  # the other waits behind the retried registration
    assert [c.method for c in box.due(5)] == [n.WEBHOOK_REGISTERED]
    assert [c.method for c in box.due(5)] == [n.ONION_MESSAGE_INCOMING]


def test_forget_drops_waiting_calls():
    box = n.Outbox(Lsps5Config())
    box.add(call(app="a"), 0)
    box.add(call(app="b"), 0)
    box.forget(PEER, "a")
    assert [c.app_name for c in box.calls] == ["b"]


# -- the URL guard -----------------------------------------------------------------


@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fc00::1", "private"),
    ("169.254.1.1", "link_local"), ("fe80::1", "link_local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("168.63.129.16", "metadata"),
    ("100.100.100.200", "metadata"),
    ("100.64.0.1", "not_global"), ("192.0.2.1", "private"),
    ("::ffff:127.0.0.1", "loopback"), ("2002:a00:1::1", "private"), ("64:ff9b::a9fe:a9fe", "metadata"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
])
def test_each_refused_address_class(address, kind):
    import ipaddress
    assert address_refusal(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses_pass(address):
    import ipaddress
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_after_dns_every_address_must_pass():
    url = parse_webhook("https://push.example.org:8443/x")
    assert (url.host, url.port) == ("push.example.org", 8443)
    assert pick_address(url, AllowList(ports=None), lambda h, p: ["8.8.8.8"]) == "8.8.8.8"
    for answer in (["10.0.0.1"], ["8.8.8.8", "127.0.0.1"], ["169.254.169.254"], ["fe80::1%eth0"]):
        with pytest.raises(UrlRefused) as e:
            pick_address(url, AllowList(ports=None), lambda h, p, a=answer: a)
        assert e.value.kind.startswith("address_")

    def fails(h, p):
        raise OSError("no such host")

    with pytest.raises(UrlRefused) as e:
        pick_address(url, AllowList(ports=None), fails)
    assert e.value.kind == "resolve"


def test_a_webhook_port_is_443_unless_the_operator_allows_more():
    """A client must not make us send TLS to port 25 or 6379 of a public host."""
    refused = error_of_url("https://push.example.org:25/x", AllowList())
    assert refused.kind == "port"
    assert error_of_url("https://8.8.8.8:6379/", AllowList()).kind == "port"
    assert pick_address(parse_webhook("https://push.example.org/x"), AllowList(), lambda h, p: ["8.8.8.8"])
    # The operator's list, or any.
    listed = AllowList.parse("", "443, 8443")
    assert pick_address(parse_webhook("https://push.example.org:8443/x"), listed, lambda h, p: ["8.8.8.8"])
    assert error_of_url("https://push.example.org:25/x", listed).kind == "port"
    assert pick_address(parse_webhook("https://a.org:25/"), AllowList.parse("", "any"), lambda h, p: ["8.8.8.8"])
    # Exempt hosts and networks may use any port (tests, a private push service).
    exempt = AllowList.parse("push.internal, 10.0.0.0/8")
    assert pick_address(parse_webhook("https://push.internal:8080/"), exempt, lambda h, p: ["10.1.1.1"])
    assert pick_address(parse_webhook("https://10.2.2.2:8080/"), exempt, lambda h, p: [])
    assert error_of_url("https://a.org:8080/", exempt, ["10.1.1.1"]).kind == "port"  # a name: only by name
    with pytest.raises(ValueError, match="allow-ports"):
        Lsps5Config(lsps5_allow_ports="443,http").validate()


def error_of_url(url: str, allow: AllowList, answer=("8.8.8.8",)) -> UrlRefused:
    with pytest.raises(UrlRefused) as e:
        pick_address(parse_webhook(url), allow, lambda h, p: list(answer))
    return e.value


def test_set_webhook_to_a_port_not_allowed_is_url_parse_error(store):
    e = error_of(lambda: set_hook(service(store), url="https://push.example.org:6379/x"))
    assert e.code == 501 and "port 6379" in e.message
    assert set_hook(service(store, lsps5_allow_ports="443,8443"), url="https://push.example.org:8443/x")[1]


def test_the_allow_list_exempts_hosts_and_cidrs():
    allow = AllowList.parse(" 127.0.0.1 , push.internal, 10.0.0.0/8, ::1")
    assert pick_address(parse_webhook("https://127.0.0.1:4443/"), allow, lambda h, p: []) == "127.0.0.1"
    assert pick_address(parse_webhook("https://push.internal/"), allow, lambda h, p: ["192.168.0.9"]) == "192.168.0.9"
    assert pick_address(parse_webhook("https://a.org/"), allow, lambda h, p: ["10.9.9.9"]) == "10.9.9.9"
    with pytest.raises(UrlRefused):
        pick_address(parse_webhook("https://a.org/"), allow, lambda h, p: ["192.168.0.9"])
    check_static(parse_webhook("https://[::1]/"), allow)
    with pytest.raises(ValueError):
        AllowList.parse("bad/host name")


def test_options_are_checked():
    for bad in ({"lsps0_server": "maybe"}, {"lsps5_clients": "all"}, {"lsps5_timestamp_style": "iso"},
                {"lsps5_allow_hosts": "a b"}, {"wake_wallets": "02ab"},
                {"lsps5_retry_first": 10, "lsps5_retry_max_interval": 5}):
        with pytest.raises(ValueError):
            Lsps5Config(**bad).validate()
    Lsps5Config(lsps5_allow_hosts="127.0.0.1,push.test", wake_wallets=PEER).validate()


# -- retention ----------------------------------------------------------------------


def test_webhooks_kept_while_a_channel_exists_then_seven_days(store):
    svc = service(store)
    set_hook(svc)
    day = 86400
    assert svc.retain({PEER}, NOW) == []
    assert svc.retain(set(), NOW + day) == []  # the channel is gone: the clock starts
    assert svc.retain(set(), NOW + 7 * day) == []
    assert svc.retain({PEER}, NOW + 7 * day + 1) == []  # a new channel: kept again
    assert svc.retain(set(), NOW + 8 * day) == []
    assert svc.retain(set(), NOW + 15 * day - 1) == []
    assert svc.retain(set(), NOW + 15 * day) == [PEER]
    assert svc.of(PEER) == [] and store.counters()["lsps5_expired_clients"] == 1


def test_a_client_without_a_channel_is_kept_seven_days_from_registration(store):
    svc = service(store, lsps5_clients=ANY)
    set_hook(svc, channel=False)
    assert svc.retain(set(), NOW + 7 * 86400 - 1) == []
    assert svc.retain(set(), NOW + 7 * 86400) == [PEER]


def test_every_lsps5_option_is_registered_documented_and_checked():
    from dataclasses import fields
    from pathlib import Path

    from asyncpay.cln import options as opts
    from asyncpay.cln import plugin as p

    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "configuration.md").read_text()
    for f in fields(Lsps5Config):
        name = opts.option_name(f.name)
        assert name in p.plugin.options and f"| `{name}` |" in doc, name
        assert p.plugin.options[name].description.endswith("."), name
    for name in ("asyncpay-lsps5-allow-hosts", "asyncpay-lsps5-ca-file", "asyncpay-lsps5-max-webhooks",
                 "asyncpay-wake-timeout"):  # the names the issue gives
        assert name in p.plugin.options
    [cfg] = [c for c in opts.load({"asyncpay-lsps5-allow-hosts": "127.0.0.1", "asyncpay-wake-timeout": "30"})
             if isinstance(c, Lsps5Config)]
    assert (cfg.lsps5_allow_hosts, cfg.wake_timeout, cfg.lsps5_max_webhooks) == ("127.0.0.1", 30, 5)
    with pytest.raises(ValueError, match="asyncpay-lsps5-allow-hosts"):
        opts.load({"asyncpay-lsps5-allow-hosts": "not a host"})
    rpc = (root / "docs" / "rpc.md").read_text()
    assert "## `asyncpay-listwebhooks [peer_id]`" in rpc and "## `asyncpay-delwebhook peer_id app_name`" in rpc


# -- the outbox: who a free sender serves ------------------------------------------


def test_a_sender_takes_payment_incoming_before_anything_else():
    box = n.Outbox(Lsps5Config())
    box.add(call(peer=OTHER, method=n.ONION_MESSAGE_INCOMING), 0)
    box.add(call(peer=OTHER, app="b", method=n.EXPIRY_SOON), 0)
    box.add(call(), 1)
    assert box.take(2).method == n.PAYMENT_INCOMING


def test_a_notification_waiting_behind_a_flood_of_payment_incoming_is_late_not_lost():
    box = n.Outbox(Lsps5Config(wake_timeout=60, lsps5_senders_per_client=5))
    box.add(call(peer=PEER, method=n.ONION_MESSAGE_INCOMING), 0)
    for i in range(5):
        box.add(call(peer=OTHER, app=f"{i}"), 0)
    assert box.take(10).method == n.PAYMENT_INCOMING  # urgent first
    for i in range(5):
        box.add(call(peer=OTHER, app=f"late{i}"), 59)
    assert box.take(60).method == n.ONION_MESSAGE_INCOMING  # due 60 s: urgent too, and its client waited longest


def test_one_clients_many_calls_delay_another_by_one_call_at_most():
    """A client with 20 calls waiting holds one sender; once it had a call
    started, a client waiting since before goes first."""
    box = n.Outbox(Lsps5Config(lsps5_senders_per_client=1))
    for i in range(20):
        box.add(call(peer=OTHER, app=f"h{i}", url=f"https://h{i}.example.org/"), 0)
    box.add(call(), 1)
    first = box.take(2)
    assert first.peer_id == OTHER and box.take(2).peer_id == PEER  # OTHER is at its limit
    assert box.take(2) is None  # both at their limit
    box.result(first, ok=True, now=3)
    nxt = box.take(3)
    assert nxt.peer_id == OTHER  # PEER has its call running
    # Two clients waiting: the one whose last start is older goes first.
    box2 = n.Outbox(Lsps5Config())
    for i in range(3):
        box2.add(call(peer=OTHER, app=f"{i}"), 0)
    box2.add(call(peer=PEER), 1)
    c = box2.take(2)
    assert c.peer_id == OTHER  # waiting since 0
    box2.result(c, ok=True, now=3)
    assert box2.take(3).peer_id == PEER  # due at 1, before OTHER's last start (2)


def test_calls_to_one_host_are_limited_and_a_removed_webhook_running_is_not_retried():
    box = n.Outbox(Lsps5Config(lsps5_senders_per_host=2))
    peers = [f"02{i:064x}" for i in range(4)]
    for p in peers:
        box.add(call(peer=p, url="https://push.example.org/x"), 0)
    box.add(call(peer=OTHER, url="https://other.example.org/x"), 0)
    taken = [box.take(1), box.take(1), box.take(1)]
    assert [c.host for c in taken] == ["push.example.org", "push.example.org", "other.example.org"]
    assert box.take(1) is None
    box.forget(taken[0].peer_id)
    assert taken[0].cancelled and box.result(taken[0], ok=False, now=2) is False
    assert box.take(2).host == "push.example.org"  # its slot is free again
