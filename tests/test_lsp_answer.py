"""The static invoice server's answer path (issue 15): the payer's answer
comes first and the forwarded copy is a ``Later``; the decoded offer of a
stored invoice is remembered, never past a replacement of that invoice."""

from __future__ import annotations

import pytest

from asyncpay.actions import InjectOnion, Later
from asyncpay.endpoint import Dropped
from asyncpay.onion_message import OnionMessagePayload
from test_lsp_server import NOW, PEER_ID, Lsp, persisted
from wallet import Wallet


def request(lsp: Lsp, offer):
    payer = Wallet(PEER_ID)
    req, _ = payer.invoice_request(offer)
    payload = OnionMessagePayload(invoice_request=req.encode(), reply_path=payer.reply_path())
    return payer, lsp.endpoint.open(lsp.to_v(payer, offer.offer_paths[0], payload), NOW)


def test_the_answer_is_ready_before_the_forward_is_built(tmp_path):
    lsp = Lsp(tmp_path)
    offer, inv, _ = persisted(lsp, Wallet(PEER_ID))
    payer, d = request(lsp, offer)
    built = []
    real = lsp.server._send
    lsp.server._send = lambda dest, payload, purpose: built.append(purpose) or real(dest, payload, purpose)
    answer, later = lsp.server.answer(d, NOW)
    assert isinstance(answer, InjectOnion) and isinstance(later, Later)
    assert built == ["static_invoice"]  # the forward is not built yet
    assert lsp.open_reply(payer, answer).static_invoice == inv.encode()
    [fwd] = later.build()
    assert built == ["static_invoice", "forward_invoice_request"] and fwd.purpose == "forward_invoice_request"


def test_a_replaced_invoice_is_never_answered_from_the_remembered_offer(tmp_path):
    lsp = Lsp(tmp_path)
    alice = Wallet(PEER_ID)
    old_offer, _, _ = persisted(lsp, alice)
    assert len(lsp.server.dispatch(request(lsp, old_offer)[1], NOW)) == 2  # remembered now
    new_offer, new_inv, _ = persisted(lsp, alice)  # same slot, another offer
    # A request for the old offer reaches the slot but not its invoice's offer.
    with pytest.raises(Dropped) as e:
        lsp.server.dispatch(request(lsp, old_offer)[1], NOW)
    assert e.value.reason == "offer_mismatch"
    payer, d = request(lsp, new_offer)
    answer = lsp.server.dispatch(d, NOW)[0]
    assert lsp.open_reply(payer, answer).static_invoice == new_inv.encode()
