"""``blinded_path`` (BOLT 4 "Route Blinding") and ``sciddir_or_pubkey`` (BOLT 1).

Wire form: first_node_id (33-byte point, or 9-byte sciddir starting 0x00/0x01),
first_path_key (33), num_hops (u8, never 0), then per hop blinded_node_id (33),
enclen (u16), encrypted_recipient_data. LDK: ``blinded_path/message.rs``
(``BlindedMessagePath``) and ``blinded_path/mod.rs`` (``BlindedPath``,
``IntroductionNode``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire import Reader, WireError
from ..wire.fields import check_point


@dataclass(frozen=True)
class IntroductionNode:
    """Either a node id or (short_channel_id, direction): ``sciddir_or_pubkey``."""

    node_id: bytes | None = None
    scid: int | None = None
    direction: int | None = None

    @classmethod
    def read(cls, r: Reader) -> IntroductionNode:
        first = r.data[r.pos] if not r.at_end() else None
        if first in (0, 1):
            direction = r.u8()
            return cls(scid=r.u64("short_channel_id"), direction=direction)
        return cls(node_id=check_point(r.read(33, "first_node_id"), "first_node_id"))

    def write(self) -> bytes:
        if self.node_id is not None:
            return self.node_id
        if self.scid is None or self.direction not in (0, 1) or not 0 <= self.scid < 1 << 64:
            raise WireError("sciddir_or_pubkey: needs a node id, or a u64 scid with direction 0 or 1")
        return bytes((self.direction,)) + self.scid.to_bytes(8, "big")

    def describe(self) -> str:
        if self.node_id is not None:
            return self.node_id.hex()
        s = self.scid or 0
        return f"{s >> 40}x{(s >> 16) & 0xFFFFFF}x{s & 0xFFFF}/{self.direction}"


@dataclass(frozen=True)
class BlindedHop:
    blinded_node_id: bytes
    encrypted_data: bytes

    @classmethod
    def read(cls, r: Reader) -> BlindedHop:
        node = check_point(r.read(33, "blinded_node_id"), "blinded_node_id")
        n = r.u16("enclen")
        return cls(node, r.read(n, "encrypted_recipient_data"))

    def write(self) -> bytes:
        if len(self.encrypted_data) > 0xFFFF:
            raise WireError("encrypted_recipient_data longer than 65535 bytes")
        return self.blinded_node_id + len(self.encrypted_data).to_bytes(2, "big") + self.encrypted_data


@dataclass(frozen=True)
class BlindedPath:
    introduction: IntroductionNode
    first_path_key: bytes
    hops: tuple[BlindedHop, ...]

    @property
    def first_node_id(self) -> bytes | None:
        return self.introduction.node_id

    @classmethod
    def read(cls, r: Reader) -> BlindedPath:
        intro = IntroductionNode.read(r)
        key = check_point(r.read(33, "first_path_key"), "first_path_key")
        n = r.u8("num_hops")
        if n == 0:
            raise WireError("blinded_path: num_hops is zero")
        return cls(intro, key, tuple(BlindedHop.read(r) for _ in range(n)))

    def write(self) -> bytes:
        if not 0 < len(self.hops) < 256:
            raise WireError(f"blinded_path: {len(self.hops)} hops")
        return (
            self.introduction.write()
            + self.first_path_key
            + bytes((len(self.hops),))
            + b"".join(h.write() for h in self.hops)
        )

    @classmethod
    def decode(cls, data: bytes) -> BlindedPath:
        r = Reader(data)
        p = cls.read(r)
        r.expect_end("blinded_path")
        return p

    def encode(self) -> bytes:
        return self.write()

    def to_json(self) -> dict:
        return {
            "first_node_id": self.introduction.describe(),
            "first_path_key": self.first_path_key.hex(),
            "hops": [
                {"blinded_node_id": h.blinded_node_id.hex(), "encrypted_recipient_data": h.encrypted_data.hex()}
                for h in self.hops
            ],
        }
