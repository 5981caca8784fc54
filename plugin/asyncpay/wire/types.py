"""Fixed-width, truncated and BigSize integers (BOLT 1 "Fundamental types")."""

from __future__ import annotations

from .errors import WireError


def u8(v: int) -> bytes:
    return _fixed(v, 1)


def u16(v: int) -> bytes:
    return _fixed(v, 2)


def u32(v: int) -> bytes:
    return _fixed(v, 4)


def u64(v: int) -> bytes:
    return _fixed(v, 8)


def _fixed(v: int, n: int) -> bytes:
    if not 0 <= v < 1 << (8 * n):
        raise WireError(f"{v} does not fit in {n} bytes")
    return v.to_bytes(n, "big")


def tu64(v: int) -> bytes:
    """Truncated u64: big-endian with no leading zero bytes (0 is empty)."""
    return _truncated(v, 8)


def tu32(v: int) -> bytes:
    return _truncated(v, 4)


def _truncated(v: int, n: int) -> bytes:
    if not 0 <= v < 1 << (8 * n):
        raise WireError(f"{v} does not fit in {n} bytes")
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


def read_truncated(data: bytes, n: int, what: str = "tu64") -> int:
    """Decode a tu16/tu32/tu64; the encoding must be minimal."""
    if len(data) > n:
        raise WireError(f"{what}: {len(data)} bytes, at most {n}")
    if data[:1] == b"\x00":
        raise WireError(f"{what}: not minimally encoded")
    return int.from_bytes(data, "big")


def bigsize(v: int) -> bytes:
    """BOLT 1 BigSize."""
    if v < 0:
        raise WireError(f"bigsize: negative {v}")
    if v < 0xFD:
        return bytes((v,))
    if v < 0x10000:
        return b"\xfd" + v.to_bytes(2, "big")
    if v < 0x100000000:
        return b"\xfe" + v.to_bytes(4, "big")
    if v < 1 << 64:
        return b"\xff" + v.to_bytes(8, "big")
    raise WireError(f"bigsize: {v} too large")


_BIGSIZE_MIN = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}


def read_bigsize(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Decode a BigSize at ``pos``; returns (value, new position)."""
    if pos >= len(data):
        raise WireError("bigsize: no bytes left")
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    width, minimum = _BIGSIZE_MIN[first]
    end = pos + 1 + width
    if end > len(data):
        raise WireError("bigsize: truncated")
    v = int.from_bytes(data[pos + 1 : end], "big")
    if v < minimum:
        raise WireError("bigsize: not minimally encoded")
    return v, end
