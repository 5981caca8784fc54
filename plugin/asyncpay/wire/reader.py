"""A bounds-checked cursor over bytes: every short read is a WireError."""

from __future__ import annotations

from .errors import WireError
from .types import read_bigsize


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = bytes(data)
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def read(self, n: int, what: str = "field") -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise WireError(f"{what}: truncated (needs {n} bytes, {self.remaining()} left)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def u8(self, what: str = "u8") -> int:
        return self.read(1, what)[0]

    def u16(self, what: str = "u16") -> int:
        return int.from_bytes(self.read(2, what), "big")

    def u32(self, what: str = "u32") -> int:
        return int.from_bytes(self.read(4, what), "big")

    def u64(self, what: str = "u64") -> int:
        return int.from_bytes(self.read(8, what), "big")

    def bigsize(self) -> int:
        v, self.pos = read_bigsize(self.data, self.pos)
        return v

    def expect_end(self, what: str) -> None:
        if not self.at_end():
            raise WireError(f"{what}: {self.remaining()} trailing bytes")
