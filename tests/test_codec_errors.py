"""Values that cannot be serialized, and wire fields that are not points,
raise the codec layer's own error."""

import pytest

from asyncpay.blinded_path import IntroductionNode
from asyncpay.offers.fields import FallbackAddress
from asyncpay.onion_message import OnionMessage
from asyncpay.wire import WireError


def test_onion_message_path_key_must_be_a_point():
    bad = (513).to_bytes(2, "big") + b"\x02" + b"\xff" * 32 + (1).to_bytes(2, "big") + b"\x00"
    with pytest.raises(WireError, match="path_key"):
        OnionMessage.decode(bad)


def test_onion_message_packet_too_long():
    with pytest.raises(WireError, match="packet of 65536 bytes"):
        OnionMessage(b"\x02" * 33, bytes(65536)).encode()


@pytest.mark.parametrize("intro", [IntroductionNode(), IntroductionNode(scid=1, direction=2),
                                   IntroductionNode(scid=1 << 64, direction=0)])
def test_introduction_node_needs_an_id_or_a_valid_sciddir(intro):
    with pytest.raises(WireError, match="sciddir_or_pubkey"):
        intro.write()


@pytest.mark.parametrize("fb", [FallbackAddress(256, b""), FallbackAddress(0, bytes(65536))])
def test_fallback_address_bounds(fb):
    with pytest.raises(WireError, match="fallback address"):
        fb.write()
