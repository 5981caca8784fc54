"""Codecs for the value of one TLV record, and records-to-dataclass mapping.

A ``TlvMessage`` subclass is a dataclass whose ``FIELDS`` table maps TLV types
to attribute names and value codecs; it parses with the BOLT 1 rules and keeps
unknown odd records in ``unknown`` so that ``encode(decode(b)) == b``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from coincurve import PublicKey

from .errors import WireError
from .reader import Reader
from .tlv import TlvStream, read_tlv_stream, write_tlv_stream
from .types import read_truncated

T = TypeVar("T")


class Codec(Generic[T]):
    """Turns one TLV value into a Python value and back, exactly."""

    def decode(self, data: bytes) -> T:
        raise NotImplementedError

    def encode(self, value: T) -> bytes:
        raise NotImplementedError


class RawBytes(Codec[bytes]):
    def decode(self, data: bytes) -> bytes:
        return bytes(data)

    def encode(self, value: bytes) -> bytes:
        return bytes(value)


class FixedBytes(Codec[bytes]):
    def __init__(self, n: int, what: str) -> None:
        self.n, self.what = n, what

    def decode(self, data: bytes) -> bytes:
        if len(data) != self.n:
            raise WireError(f"{self.what}: {len(data)} bytes, expected {self.n}")
        return bytes(data)

    def encode(self, value: bytes) -> bytes:
        return self.decode(value)


def check_point(data: bytes, what: str = "point") -> bytes:
    """A 33-byte compressed secp256k1 point that actually lies on the curve."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise WireError(f"{what}: not a compressed public key")
    data = bytes(data)
    try:
        _on_curve(data)
    except ValueError as e:
        raise WireError(f"{what}: not on the curve") from e
    return data


@functools.lru_cache(maxsize=4096)
def _on_curve(point: bytes) -> None:
    """Raises ValueError off the curve. Remembered for the points seen most
    lately (an offer's paths and issuer come back in every request for it:
    the LSP's hot path parsed each of them again, issue 15); only points
    that parsed are kept, and the bound holds whatever strangers send."""
    PublicKey(point)


class Point(Codec[bytes]):
    def __init__(self, what: str = "point") -> None:
        self.what = what

    def decode(self, data: bytes) -> bytes:
        return check_point(data, self.what)

    def encode(self, value: bytes) -> bytes:
        return check_point(value, self.what)


class Utf8(Codec[str]):
    def decode(self, data: bytes) -> str:
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireError(f"invalid UTF-8 at byte {e.start}") from e

    def encode(self, value: str) -> bytes:
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates are str but not UTF-8
            raise WireError(f"not encodable as UTF-8 at character {e.start}") from None


class Truncated(Codec[int]):
    """tu16 / tu32 / tu64 (LDK: HighZeroBytesDroppedBigSize)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def decode(self, data: bytes) -> int:
        return read_truncated(data, self.width, f"tu{8 * self.width}")

    def encode(self, value: int) -> bytes:
        if not 0 <= value < 1 << (8 * self.width):
            raise WireError(f"{value} does not fit tu{8 * self.width}")
        return value.to_bytes((value.bit_length() + 7) // 8, "big")


class FixedInt(Codec[int]):
    """u16 / u32 / u64 written at full width (LDK's plain integer fields)."""

    def __init__(self, width: int) -> None:
        self.width = width

    def decode(self, data: bytes) -> int:
        if len(data) != self.width:
            raise WireError(f"u{8 * self.width}: {len(data)} bytes, expected {self.width}")
        return int.from_bytes(data, "big")

    def encode(self, value: int) -> bytes:
        if not 0 <= value < 1 << (8 * self.width):
            raise WireError(f"{value} does not fit u{8 * self.width}")
        return value.to_bytes(self.width, "big")


class Concatenated(Codec[list]):
    """Elements written back to back with no count (LDK ``WithoutLength``)."""

    def __init__(
        self,
        read: Callable[[Reader], Any],
        write: Callable[[Any], bytes],
        what: str,
        non_empty: bool = False,
    ) -> None:
        self.read, self.write, self.what, self.non_empty = read, write, what, non_empty

    def decode(self, data: bytes) -> list:
        r = Reader(data)
        out = []
        while not r.at_end():
            out.append(self.read(r))
        if self.non_empty and not out:
            raise WireError(f"{self.what}: empty")
        return out

    def encode(self, value: list) -> bytes:
        return b"".join(self.write(v) for v in value)


class Nested(Codec[Any]):
    """A value that is itself a whole-buffer structure with decode/encode."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    def decode(self, data: bytes) -> Any:
        return self.cls.decode(data)

    def encode(self, value: Any) -> bytes:
        return value.encode()


@dataclass(frozen=True)
class Field:
    type: int
    name: str
    codec: Codec


class TlvMessage:
    """Base for dataclasses that are one TLV stream.

    Subclasses set ``FIELDS`` and ``WHAT`` and may override ``accepts_type``
    (for BOLT 12 type ranges) and ``check`` (for required-field rules).
    Subclasses must be dataclasses with an ``unknown: dict[int, bytes]`` field.
    """

    FIELDS: ClassVar[tuple[Field, ...]] = ()
    WHAT: ClassVar[str] = "tlv stream"
    _BY_TYPE: ClassVar[dict[int, Field]]
    unknown: dict[int, bytes]

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._BY_TYPE = {f.type: f for f in cls.FIELDS}

    @classmethod
    def accepts_type(cls, t: int) -> bool:
        """Whether an odd type outside FIELDS may appear (range rules)."""
        return True

    @classmethod
    def decode(cls, data: bytes):
        return cls.from_records(read_tlv_stream(data, cls._BY_TYPE, cls.WHAT))

    @classmethod
    def from_records(cls, records: TlvStream, check: bool = True):
        """Build from parsed records; ``check=False`` skips ``check()`` for
        objects still being assembled (builders)."""
        kw: dict[str, Any] = {}
        unknown: dict[int, bytes] = {}
        for t, v in records:
            f = cls._BY_TYPE.get(t)
            if f is None:
                if not cls.accepts_type(t):
                    raise WireError(f"{cls.WHAT}: type {t} is outside the allowed ranges")
                unknown[t] = v
                continue
            try:
                kw[f.name] = f.codec.decode(v)
            except WireError as e:
                raise WireError(f"{cls.WHAT}: {f.name} (type {t}): {e}") from None
        obj = cls(**kw, unknown=unknown)
        if check:
            obj.check()
        return obj

    def check(self) -> None:
        """Structural rules beyond single fields; raise WireError."""

    def to_records(self) -> TlvStream:
        recs = []
        for f in self.FIELDS:
            v = getattr(self, f.name)
            if v is not None:
                recs.append((f.type, f.codec.encode(v)))
        recs.extend(self.unknown.items())
        return sorted(recs)

    def encode(self) -> bytes:
        return write_tlv_stream(self.to_records())
