"""BOLT 1 wire primitives: every codec in asyncpay is built from these."""

from .errors import WireError
from .reader import Reader
from .tlv import TlvStream, read_tlv_stream, write_tlv_stream
from .types import (
    bigsize,
    read_bigsize,
    tu32,
    tu64,
    u8,
    u16,
    u32,
    u64,
)

__all__ = [
    "Reader",
    "TlvStream",
    "WireError",
    "bigsize",
    "read_bigsize",
    "read_tlv_stream",
    "tu32",
    "tu64",
    "u8",
    "u16",
    "u32",
    "u64",
    "write_tlv_stream",
]
