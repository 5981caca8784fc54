"""A payment onion to a blinded payment path (BOLT 4 "Route Blinding",
sender side; LDK ``ln/onion_utils.rs`` ``build_onion_payloads`` with a
``BlindedTail``), built to be handed to CLN's ``injectpaymentonion``, which
processes it as if a peer had sent it to our node (design §8).

The onion's hops are: our own node (it forwards over the route's first
channel), each node of the unblinded route to the introduction node, then
the blinded path. The introduction node is reached under its real node id
and finds ``current_path_key`` in its payload; the hops after it under their
blinded ids. The final hop carries the amount, the CLTV and whatever the
recipient needs (for a static invoice: the keysend preimage and the
``invoice_request``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..blinded_path import BlindedPayInfo, BlindedPaymentPath
from .hop_payload import HopPayload
from .onion import build_payment_onion


@dataclass(frozen=True)
class RouteHop:
    """One channel of the route to the introduction node, as askrene's
    ``getroutes`` path gives it: the amount and CLTV sent over it."""

    short_channel_id: int
    next_node_id: bytes
    amount_msat: int
    cltv_expiry: int


@dataclass(frozen=True)
class PaymentOnion:
    onion: bytes
    amount_msat: int  # what our node "receives" (injectpaymentonion's amount_msat)
    cltv_expiry: int  # and its cltv_expiry


def fee_for(info: BlindedPayInfo, amount_msat: int) -> int:
    """The path's fee for delivering ``amount_msat``, rounded up (BOLT 4
    ``payinfo``; rounding up never underpays the path)."""
    return info.fee_base_msat + -(-amount_msat * info.fee_proportional_millionths // 1_000_000)


def to_introduction(path: BlindedPaymentPath, amount_msat: int, final_cltv: int) -> tuple[int, int]:
    """(amount, CLTV expiry) the introduction node must receive so that the
    final hop gets ``amount_msat`` with ``final_cltv``."""
    return amount_msat + fee_for(path.payinfo, amount_msat), final_cltv + path.payinfo.cltv_expiry_delta


def blinded_payment_onion(
    session_key: bytes,
    our_id: bytes,
    route: Sequence[RouteHop],
    path: BlindedPaymentPath,
    amount_msat: int,
    final_cltv: int,
    payment_hash: bytes,
    keysend_preimage: bytes | None = None,
    invoice_request: bytes | None = None,
    total_msat: int | None = None,
    extra: dict[bytes, dict[int, bytes]] | None = None,
) -> PaymentOnion:
    """``route`` leads from us to ``path``'s introduction node and must end
    with what ``to_introduction`` asks for. ``total_msat`` is the whole
    payment when this onion carries one part of it (BOLT 4 multi-part).
    ``extra`` adds records to the payloads of nodes the onion reaches under
    their own id, by node id: the route's nodes and the introduction node
    (our hold request for the sender's LSP: ``payment/hold_request.py``; the
    LSP may be the introduction node when it serves the recipient too). A
    node named in ``extra`` that the onion reaches only blinded, or not at
    all, raises ``ValueError``: its record would be lost and nothing would
    read it."""
    if not route:
        raise ValueError("a route to the introduction node is needed (we are not it)")
    intro_amount, intro_cltv = to_introduction(path, amount_msat, final_cltv)
    last = route[-1]
    if last.amount_msat < intro_amount or last.cltv_expiry < intro_cltv:
        raise ValueError("the route does not deliver what the blinded path needs")
    extra = extra or {}
    hops: list[tuple[bytes, HopPayload]] = []
    node = our_id
    placed: set[bytes] = set()
    for ch in route:
        placed.add(node)
        hops.append((node, HopPayload(amt_to_forward=ch.amount_msat, outgoing_cltv_value=ch.cltv_expiry,
                                      short_channel_id=ch.short_channel_id, unknown=dict(extra.get(node, {})))))
        node = ch.next_node_id
    blinded = path.path.hops
    for i, hop in enumerate(blinded):
        if i == len(blinded) - 1:
            payload = HopPayload(amt_to_forward=amount_msat, outgoing_cltv_value=final_cltv,
                                 total_amount_msat=total_msat or amount_msat,
                                 encrypted_recipient_data=hop.encrypted_data,
                                 keysend_preimage=keysend_preimage, invoice_request=invoice_request)
        else:
            payload = HopPayload(encrypted_recipient_data=hop.encrypted_data)
        if i == 0:
            payload.current_path_key = path.path.first_path_key
            # Only a node that knows to look reads a record here: lightningd
            # refuses any record but these two in a blinded hop it forwards.
            payload.unknown.update(extra.get(node, {}))
            placed.add(node)
            hops.append((node, payload))  # the introduction node, under its own id
        else:
            hops.append((hop.blinded_node_id, payload))
    lost = set(extra) - placed
    if lost:
        raise ValueError("the onion does not reach " + ", ".join(sorted(n.hex() for n in lost))
                         + " unblinded: its records would be lost")
    first = route[0]
    return PaymentOnion(build_payment_onion(session_key, hops, payment_hash), first.amount_msat, first.cltv_expiry)
