"""What every BOLT 12 message shares: type ranges, string form, signatures."""

from __future__ import annotations

from typing import ClassVar

from ..wire import WireError
from ..wire.fields import TlvMessage
from . import bech32, merkle
from .fields import in_ranges

BITCOIN_CHAIN = bytes.fromhex("6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000")
# BOLT 12 chain hashes: each network's genesis block hash, in wire byte order,
# keyed by the name lightningd's getinfo gives as "network".
CHAINS = {
    "bitcoin": BITCOIN_CHAIN,
    "testnet": bytes.fromhex("43497fd7f826957108f4a30fd9cec3aeba79972084e90ead01ea330900000000"),
    "testnet4": bytes.fromhex("43f08bdab050e35b567c864b91f47f50ae725ae2de53bcfbbaf284da00000000"),
    "signet": bytes.fromhex("f61eee3b63a380a477a063af32b2bbc97c9ff9f01f2c4225e973988108000000"),
    "regtest": bytes.fromhex("06226e46111a0b59caaf126043eb5bbf28c34f3a5e332a1fc7b2b73cf188910f"),
}


class Bolt12Message(TlvMessage):
    RANGES: ClassVar[tuple[tuple[int, int], ...]] = ()
    HRP: ClassVar[str | None] = None
    SIGNATURE_NAME: ClassVar[str | None] = None  # message name in the signature tag

    @classmethod
    def accepts_type(cls, t: int) -> bool:
        return in_ranges(t, cls.RANGES)

    @classmethod
    def from_string(cls, s: str):
        hrp, data = bech32.decode(s)
        if hrp != cls.HRP:
            raise WireError(f"{cls.WHAT}: string prefix {hrp!r}, expected {cls.HRP!r}")
        return cls.decode(data)

    def to_string(self) -> str:
        if self.HRP is None:
            raise WireError(f"{self.WHAT} has no string form")
        return bech32.encode(self.HRP, self.encode())

    # -- signatures (BOLT 12 "Signature Calculation") -----------------------

    def merkle_root(self) -> bytes:
        return merkle.merkle_root(self.to_records())

    def sign(self, secret: bytes, aux: bytes | None = None) -> None:
        """Sign in place with ``secret`` (the signature field is replaced)."""
        assert self.SIGNATURE_NAME
        self.signature = None
        self.signature = merkle.sign(self.SIGNATURE_NAME, self.to_records(), secret, aux)

    def signature_valid(self, pubkey: bytes) -> bool:
        sig = getattr(self, "signature", None)
        if sig is None or self.SIGNATURE_NAME is None:
            return False
        return merkle.verify(self.SIGNATURE_NAME, self.to_records(), sig, pubkey)
