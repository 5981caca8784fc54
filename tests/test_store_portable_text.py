"""Input a client gives is refused, or stored, the same way on SQLite and on
PostgreSQL: an LSPS5 ``app_name`` with a NUL (PostgreSQL's TEXT refuses it,
SQLite would keep it) or a lone surrogate (neither can encode it) gets the
same clear error on both, and nothing is stored."""

from __future__ import annotations

import pytest

from asyncpay.lsps import lsps0
from asyncpay.lsps.config import Lsps5Config
from asyncpay.lsps.webhooks import WebhookService
from asyncpay.store import Store

CHOOSES_ITS_BACKENDS = True
PEER = "02" + "11" * 32


@pytest.mark.parametrize("name", ["wallet\x00", "\x00", "w\ud800"])
def test_an_app_name_neither_store_keeps_is_refused_alike(store_target, name):
    store = Store(store_target)
    svc = WebhookService(store, Lsps5Config())
    request = lsps0.Request("r1", "lsps5.set_webhook",
                            {"app_name": name, "webhook": "https://push.example.org/lsps5"})
    with pytest.raises(lsps0.Lsps0Error) as e:
        svc.handle(PEER, request, 1_800_000_000, True)
    assert e.value.code == lsps0.INVALID_PARAMS and "without NUL" in e.value.message
    assert svc.of(PEER) == []
    store.close()
