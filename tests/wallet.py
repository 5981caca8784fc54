"""Test helper: an async-payments wallet built only on asyncpay's codecs.

It plays the often-offline recipient and the payer until those roles exist
in the plugin. It holds its own endpoint key W next to a node it is
attached to: its reply paths run ``[node -> W]``, so replies surface as the
node's ``onionmessage_forward_fail`` with the whole onion for W (the same
mechanism as the plugin's V), and it sends by injecting at that node.
"""

from __future__ import annotations

import os

from asyncpay.blinded_path import (
    BlindedHop,
    BlindedPath,
    BlindedPayInfo,
    BlindedPaymentPath,
    EncryptedData,
    IntroductionNode,
)
from asyncpay.crypto import pubkey_of
from asyncpay.offers import InvoiceRequest, Offer, StaticInvoice
from asyncpay.onion_message import (
    OfferPathsRequest,
    OnionMessage,
    OnionMessagePayload,
    Receive,
    ServeStaticInvoice,
    build_path,
    onion_from_node,
    peel_onion_message,
)


class Wallet:
    def __init__(self, node_id: bytes, seed: bytes | None = None) -> None:
        self.node_id = node_id
        self.secret = seed or os.urandom(32)
        self.endpoint = pubkey_of(self.secret)
        self.issuer_secret = os.urandom(32)

    def reply_path(self) -> BlindedPath:
        return build_path(os.urandom(32), [
            (self.node_id, EncryptedData(next_node_id=self.endpoint)),
            (self.endpoint, EncryptedData(path_id=os.urandom(32))),
        ])

    def onion_to(self, dest: BlindedPath, payload: OnionMessagePayload) -> tuple[bytes, bytes]:
        """(path_key, packet) to inject at our node."""
        msg = onion_from_node(self.node_id, dest, dest.introduction.node_id, payload, os.urandom)
        return msg.path_key, msg.packet

    def open(self, outgoing: bytes) -> OnionMessagePayload:
        out = peel_onion_message(self.secret, OnionMessage.decode(outgoing))
        assert isinstance(out, Receive)
        return out.payload

    # -- recipient -------------------------------------------------------

    def offer_paths_request(self, p_req: BlindedPath, slot: int) -> tuple[bytes, bytes]:
        payload = OnionMessagePayload(offer_paths_request=OfferPathsRequest(invoice_slot=slot),
                                      reply_path=self.reply_path())
        return self.onion_to(p_req, payload)

    def make_offer(self, paths: list[BlindedPath], amount: int = 100_000, chains: list[bytes] | None = None) -> Offer:
        return Offer(offer_chains=chains, offer_amount=amount, offer_description="asyncpay test offer",
                     offer_paths=paths, offer_issuer_id=pubkey_of(self.issuer_secret))

    def make_static_invoice(self, offer: Offer, created_at: int, lsp_id: bytes) -> StaticInvoice:
        # Payment and held-HTLC paths through the LSP; the server only checks
        # their form, so their encrypted data is opaque filler here.
        pay = BlindedPath(IntroductionNode(node_id=lsp_id), pubkey_of(os.urandom(32)),
                          (BlindedHop(pubkey_of(os.urandom(32)), os.urandom(40)),
                           BlindedHop(pubkey_of(os.urandom(32)), os.urandom(40))))
        info = BlindedPayInfo(1000, 1000, 288, 1, 999_000_000)
        held = build_path(os.urandom(32), [(lsp_id, EncryptedData(next_node_id=self.node_id)),
                                           (self.endpoint, EncryptedData(path_id=os.urandom(32)))])
        return StaticInvoice.build(offer, [BlindedPaymentPath(pay, info)], [held], created_at, self.issuer_secret)

    def forward_path(self, lsp_id: bytes) -> BlindedPath:
        """Where the server forwards invoice requests: LDK requires its
        introduction node to be the server or one of its peers; this one
        starts at the server, as an LDK wallet behind its LSP builds it."""
        return build_path(os.urandom(32), [
            (lsp_id, EncryptedData(next_node_id=self.node_id)),
            (self.node_id, EncryptedData(next_node_id=self.endpoint)),
            (self.endpoint, EncryptedData(path_id=os.urandom(32))),
        ])

    def serve_static_invoice(self, p_serve: BlindedPath, invoice: StaticInvoice) -> tuple[bytes, bytes]:
        fwd = self.forward_path(p_serve.introduction.node_id)
        payload = OnionMessagePayload(
            serve_static_invoice=ServeStaticInvoice(invoice=invoice.encode(), forward_invoice_request_path=fwd),
            reply_path=self.reply_path())
        return self.onion_to(p_serve, payload)

    # -- payer -------------------------------------------------------------

    def invoice_request(self, offer: Offer, amount: int | None = None) -> tuple[InvoiceRequest, tuple[bytes, bytes]]:
        payer_secret = os.urandom(32)
        req = InvoiceRequest.from_records(offer.to_records() + [(0, os.urandom(16)), (88, pubkey_of(payer_secret))],
                                          check=False)
        if offer.offer_chains:
            req.invreq_chain = offer.offer_chains[0]
        req.invreq_amount = amount
        req.sign(payer_secret)
        payload = OnionMessagePayload(invoice_request=req.encode(), reply_path=self.reply_path())
        return req, self.onion_to(offer.offer_paths[0], payload)
