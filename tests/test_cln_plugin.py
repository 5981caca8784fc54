"""The pyln side of the adapter, without a daemon: options, parameters and
how every ``asyncpay-*`` method answers bad input (through pyln's own
request dispatch)."""

from __future__ import annotations

from dataclasses import fields

import pytest
from pyln.client.plugin import Request

from asyncpay.cln import options as opts
from asyncpay.cln import params
from asyncpay.cln import plugin as p
from asyncpay.cln.errors import INTERNAL, INVALID_PARAMS, NOT_READY, ParamError
from asyncpay.lsp import LspConfig
from asyncpay.recipient import RecipientConfig


def test_every_limit_is_an_option_with_a_sentence():
    names = set(p.plugin.options)
    assert "asyncpay-db" in names
    every = [opts.option_name(f.name) for cls in (LspConfig, RecipientConfig) for f in fields(cls)]
    assert set(every) <= names
    for name in every:
        opt = p.plugin.options[name]
        assert opt.opt_type == "int", name  # rates too: numbers, not strings
        desc = opt.description
        assert desc.endswith(".") and "default" not in desc.lower() and "asyncpay limit" not in desc, name


def test_options_are_parsed_and_checked():
    cfg, *_ = opts.load({"asyncpay-mailbox-ttl": 60, "asyncpay-persist-rate": "3"})
    assert cfg.mailbox_ttl == 60 and cfg.persist_rate == 3
    with pytest.raises(ValueError, match="asyncpay-mailbox-ttl: must be positive"):
        opts.load({"asyncpay-mailbox-ttl": 0})
    with pytest.raises(ValueError, match="asyncpay-serve-rate: must be a whole number"):
        opts.load({"asyncpay-serve-rate": "fast"})
    with pytest.raises(ValueError, match="asyncpay-payer-lsp: must be a node id"):
        opts.load({"asyncpay-payer-lsp": "not-a-node"})


def test_params_name_themselves():
    assert params.integer("invoice_slot", "7", 0, 10) == 7
    with pytest.raises(ParamError, match="invoice_slot must be an integer"):
        params.integer("invoice_slot", "seven", 0, 10)
    with pytest.raises(ParamError, match="invoice_slot must be an integer"):
        params.integer("invoice_slot", "٣", 0, 10)  # a unicode digit is not accepted
    with pytest.raises(ParamError, match="count must be between 1 and 16"):
        params.integer("count", 17, 1, 16)
    with pytest.raises(ParamError, match="peer_id must be 33 bytes"):
        params.node_id("peer_id", "02" * 32)
    with pytest.raises(ParamError, match="peer_id must be a hex string"):
        params.node_id("peer_id", "zz")
    with pytest.raises(ParamError, match="must be a non-empty list"):
        params.hexlist("paths", [])


class Captured:
    def __init__(self, monkeypatch) -> None:
        self.out: list[dict] = []
        monkeypatch.setattr(Request, "_write_result", lambda req, result: self.out.append(result))

    def call(self, method: str, params) -> dict:
        before = len(self.out)
        p.plugin._dispatch_request(Request(p.plugin, "1", method, params))
        assert len(self.out) == before + 1
        return self.out[-1]


@pytest.fixture
def rpc(monkeypatch):
    monkeypatch.setattr(p.plugin, "log", lambda *a, **k: None)
    return Captured(monkeypatch)


def _error(answer: dict) -> tuple[int, str]:
    assert "result" not in answer
    err = answer["error"]
    assert set(err) == {"code", "message"}, "no traceback in the answer"
    assert "\n" not in err["message"] and "Traceback" not in err["message"]
    return err["code"], err["message"]


BAD_CALLS = [
    ("asyncpay-recipientpaths", {}, "missing required parameter recipient_id"),
    ("asyncpay-recipientpaths", {"recipient_id": "a", "bogus": 1}, "unknown parameter bogus"),
    ("asyncpay-recipientpaths", ["a", 1, 60, 4], "too many parameters"),
    ("asyncpay-recipientpaths", {"recipient_id": 5}, "recipient_id must be a string"),
    ("asyncpay-recipientpaths", {"recipient_id": "a", "count": "many"}, "count must be an integer"),
    ("asyncpay-recipientpaths", {"recipient_id": "a", "count": 99}, "count must be between 1 and 16"),
    ("asyncpay-recipientpaths", {"recipient_id": "a", "expiry": -1}, "expiry must be between"),
    ("asyncpay-delinvoice", {"recipient_id": "a"}, "missing required parameter invoice_slot"),
    ("asyncpay-delinvoice", {"recipient_id": "a", "invoice_slot": 70000}, "invoice_slot must be between"),
    ("asyncpay-delinvoice", {"recipient_id": "é", "invoice_slot": "½"}, "invoice_slot must be an integer"),
    ("asyncpay-listinvoices", {"recipient_id": ["x"]}, "recipient_id must be a string"),
    ("asyncpay-flush", {}, "missing required parameter peer_id"),
    ("asyncpay-flush", {"peer_id": "ünïcode"}, "peer_id must be a hex string"),
    ("asyncpay-flush", {"peer_id": "02"}, "peer_id must be 33 bytes"),
    ("asyncpay-status", {"verbose": True}, "unknown parameter verbose"),
    ("asyncpay-listmailbox", [1], "too many parameters"),
    ("asyncpay-setserver", {}, "missing required parameter paths"),
    ("asyncpay-setserver", {"paths": []}, "must be a non-empty list"),
    ("asyncpay-setserver", {"paths": ["zz"]}, "must be a hex string"),
    ("asyncpay-setserver", {"paths": ["00" * 40]}, "not a blinded path"),
    ("asyncpay-offer", {"amount_msat": 1000}, "description is required"),
    ("asyncpay-offer", {"description": "x", "amount_msat": "lots"}, "amount_msat must be an integer"),
    ("asyncpay-offer", {"description": 7}, "description must be a string"),
    ("asyncpay-offer", {"slot": 70000}, "slot must be between"),
    ("asyncpay-listoffers", {"slot": 1}, "unknown parameter slot"),
    ("asyncpay-listreceived", ["x"], "too many parameters"),
    ("asyncpay-pay", {}, "missing required parameter offer"),
    ("asyncpay-pay", {"offer": 12}, "offer must be a string"),
    ("asyncpay-pay", {"offer": "lno1x", "amount_msat": "ten"}, "amount_msat must be an integer"),
    ("asyncpay-pay", {"offer": "lno1x", "amount_msat": 0}, "amount_msat must be between"),
    ("asyncpay-pay", {"offer": "lno1x", "timeout": -5}, "timeout must be between"),
    ("asyncpay-pay", {"offer": "lno1x", "payer_note": ["a"]}, "payer_note must be a string"),
    ("asyncpay-listpays", {"id": 3}, "id must be a string"),
    ("asyncpay-listpays", {"ids": "x"}, "unknown parameter ids"),
    ("asyncpay-listheld", {"all": True}, "unknown parameter all"),
    ("asyncpay-failheld", {}, "missing required parameter payment_hash"),
    ("asyncpay-failheld", {"payment_hash": "ab"}, "payment_hash must be 32 bytes"),
    ("asyncpay-failheld", {"payment_hash": "xyz"}, "payment_hash must be a hex string"),
    ("asyncpay-listwebhooks", {"peer_id": "02"}, "peer_id must be 33 bytes"),
    ("asyncpay-listwebhooks", {"peer": "02"}, "unknown parameter peer"),
    ("asyncpay-delwebhook", {"peer_id": "02" * 33}, "missing required parameter app_name"),
    ("asyncpay-delwebhook", {"peer_id": "zz", "app_name": "a"}, "peer_id must be a hex string"),
    ("asyncpay-delwebhook", {"peer_id": "02" * 33, "app_name": 5}, "app_name must be a string"),
]


@pytest.mark.parametrize("method,args,message", BAD_CALLS)
def test_bad_parameters_answer_invalid_params(rpc, monkeypatch, tmp_path, method, args, message):
    monkeypatch.setattr(p, "node", object())  # parameters are checked before the node is used
    code, text = _error(rpc.call(method, args))
    assert code == INVALID_PARAMS
    assert text.startswith(method) or message in text
    assert message in text


def test_every_method_is_covered_by_the_bad_calls():
    ours = {m for m in p.plugin.methods if m.startswith("asyncpay-")}
    covered = {m for m, _, _ in BAD_CALLS}
    assert ours - covered == {"asyncpay-listrecipients"}  # takes no parameter; see below


def test_not_initialised_is_not_ready(rpc, monkeypatch):
    monkeypatch.setattr(p, "node", None)
    for method in ("asyncpay-status", "asyncpay-listrecipients"):
        code, text = _error(rpc.call(method, {}))
        assert code == NOT_READY and "not initialised" in text


def test_an_internal_error_is_logged_and_answered_briefly(rpc, monkeypatch):
    logged: list[str] = []
    monkeypatch.setattr(p.plugin, "log", lambda msg, level="info": logged.append(msg))

    class Broken:
        lock = None

    monkeypatch.setattr(p, "node", Broken())
    code, text = _error(rpc.call("asyncpay-listrecipients", {}))
    assert code == INTERNAL and "internal error" in text
    assert any("Traceback" in m for m in logged)


def test_a_good_call_still_answers(rpc, monkeypatch):
    class FakeNode:
        import threading
        lock = threading.RLock()

        class store:
            @staticmethod
            def recipients():
                return [{"recipient_id": "a"}]

    monkeypatch.setattr(p, "node", FakeNode())
    assert rpc.call("asyncpay-listrecipients", [])["result"] == {"recipients": [{"recipient_id": "a"}]}


class FakePlugin:
    """What init uses of pyln's Plugin: the node's RPC, log, notify."""

    def __init__(self, rpc) -> None:
        self.rpc, self.logged = rpc, []

    def log(self, msg: str, level: str = "info") -> None:
        self.logged.append((level, msg))

    def notify(self, topic: str, params: dict) -> None:
        pass


def _init(monkeypatch, fake: FakePlugin, tmp_path, **options):
    monkeypatch.setattr(p, "node", None)
    return p.init(options={"asyncpay-db": None, **options}, configuration={"lightning-dir": str(tmp_path)},
                  plugin=fake)


def _emulated_rpc():
    from emulated_cln import Network
    return Network().node(bytes([7]) * 32, "a").rpc


def test_a_db_it_cannot_open_disables_the_plugin_with_the_reason(monkeypatch, tmp_path):
    fake = FakePlugin(_emulated_rpc())
    bad = str(tmp_path / "no-such-dir" / "state.sqlite3")
    answer = _init(monkeypatch, fake, tmp_path, **{"asyncpay-db": bad})
    assert set(answer) == {"disable"}
    reason = answer["disable"]
    assert reason.startswith(f"asyncpay-db {bad}: OperationalError") and "\n" not in reason
    assert p.node is None  # no half-started plugin: every hook still sees "not initialised"
    assert ("warn", f"asyncpay disabled: {reason}") in fake.logged


def test_any_startup_error_disables_the_plugin(monkeypatch, tmp_path):
    class Down:
        def getinfo(self):
            raise OSError("connection refused\nby lightningd")

    fake = FakePlugin(Down())
    answer = _init(monkeypatch, fake, tmp_path)
    assert answer == {"disable": "cannot start: OSError: connection refused by lightningd"}
    assert p.node is None
    assert any(level == "debug" and "Traceback" in msg for level, msg in fake.logged)


def test_a_bad_option_disables_the_plugin(monkeypatch, tmp_path):
    fake = FakePlugin(_emulated_rpc())
    answer = _init(monkeypatch, fake, tmp_path, **{"asyncpay-mailbox-ttl": 0})
    assert answer == {"disable": "asyncpay-mailbox-ttl: must be positive, got 0"}
    assert p.node is None


def test_a_good_init_starts_the_node(monkeypatch, tmp_path):
    fake = FakePlugin(_emulated_rpc())
    assert _init(monkeypatch, fake, tmp_path) is None
    assert p.node is not None and p.node.db_path == str(tmp_path / "asyncpay.sqlite3")
    assert not [m for level, m in fake.logged if "disabled" in m]
