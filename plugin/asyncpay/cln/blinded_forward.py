"""The RPC half of ``payment/blinded_forward.py``: decrypt our hop of a
blinded path with lightningd's node key (``decryptencrypteddata``, which
also gives the next path key) and find the channel it names
(``listpeerchannels``: by real scid or either alias, since a wallet's
unannounced channel is named by the alias we gave it)."""

from __future__ import annotations

from pyln.client import RpcError

from ..blinded_path import EncryptedData
from ..payment import HopPayload
from ..payment.blinded_forward import BlindedForward, BlindedForwardError, blinded_forward
from ..wire import WireError
from .convert import parse_scid


def resolve(rpc, payload: HopPayload, amount_in: int, cltv_in: int) -> tuple[BlindedForward, str]:
    """The forward of an introduction hop and the ``channel_id`` it goes
    over; raises ``BlindedForwardError``. Only the introduction node finds
    its path key in the payload (``current_path_key``), also in a replay
    after a restart (lightningd keeps no incoming path key)."""
    if payload.encrypted_recipient_data is None or payload.current_path_key is None:
        raise BlindedForwardError("not the introduction hop of a blinded path")
    try:
        out = rpc.call("decryptencrypteddata", {"encrypted_data": payload.encrypted_recipient_data.hex(),
                                                "path_key": payload.current_path_key.hex()})["decryptencrypteddata"]
        data = EncryptedData.decode(bytes.fromhex(out["decrypted"]))
        next_key = bytes.fromhex(out["next_path_key"])
    except (RpcError, KeyError, WireError, ValueError) as e:
        raise BlindedForwardError(f"cannot decrypt our blinded hop: {e}") from None
    fwd = blinded_forward(data, next_key, amount_in, cltv_in)
    try:
        channels = rpc.call("listpeerchannels")["channels"]
    except (RpcError, KeyError) as e:
        raise BlindedForwardError(f"listpeerchannels: {e}") from None
    for c in channels:
        names = [c.get("short_channel_id"), *(c.get("alias") or {}).values()]
        if any(n and parse_scid(n) == fwd.short_channel_id for n in names) and c.get("channel_id"):
            return fwd, str(c["channel_id"])
    raise BlindedForwardError("the blinded hop names a channel we do not have")
