"""The pyln side of the adapter, without a daemon: options and parameters."""

import pytest

from asyncpay.cln import plugin as p
from asyncpay.lsp import LspConfig


def test_every_limit_is_an_option():
    names = set(p.plugin.options)
    assert "asyncpay-db" in names
    assert set(LspConfig.option_names()) <= names


def test_options_are_parsed_and_checked():
    cfg = p._config_from_options({"asyncpay-mailbox-ttl": 60, "asyncpay-persist-rate": "2.5"})
    assert cfg.mailbox_ttl == 60 and cfg.persist_rate == 2.5
    with pytest.raises(ValueError, match="asyncpay-mailbox-ttl: must be positive"):
        p._config_from_options({"asyncpay-mailbox-ttl": 0})
    with pytest.raises(ValueError, match="asyncpay-serve-rate: not a valid float"):
        p._config_from_options({"asyncpay-serve-rate": "fast"})


def test_int_params_name_themselves():
    assert p._int_param("invoice_slot", "7", 0, 10) == 7
    with pytest.raises(ValueError, match="invoice_slot must be an integer"):
        p._int_param("invoice_slot", "seven", 0, 10)
    with pytest.raises(ValueError, match="count must be between 1 and 16"):
        p._int_param("count", 17, 1, 16)


def test_methods_refuse_before_init(monkeypatch):
    monkeypatch.setattr(p, "node", None)
    with pytest.raises(ValueError, match="not initialised"):
        p.status(p.plugin)
