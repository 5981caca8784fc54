"""BOLT 12 string form: bech32 characters with no checksum, ``+`` joins.

BOLT 12 "Encoding": the human-readable part is ``lno`` (offer), ``lnr``
(invoice_request) or ``lni`` (invoice); readers accept all-lower or
all-upper case; a ``+`` followed by optional whitespace may join two bech32
characters anywhere, including inside the prefix.
"""

from __future__ import annotations

import re

from ..wire import WireError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUE = {c: i for i, c in enumerate(CHARSET)}
# '+' must sit between two non-'+', non-space characters.
_JOINED = re.compile(r"[^+\s]+(?:\+\s*[^+\s]+)*")
_JOIN = re.compile(r"\+\s*")


def decode(s: str) -> tuple[str, bytes]:
    """Return (hrp, payload bytes) of a BOLT 12 string."""
    if not _JOINED.fullmatch(s):
        raise WireError("bolt12 string: '+' must join two bech32 characters, no stray whitespace")
    s = _JOIN.sub("", s)
    # bech32 is ASCII; without this, str.lower() maps e.g. KELVIN SIGN to 'k'
    # and a string LDK rejects would decode.
    if not s.isascii():
        raise WireError("bolt12 string: non-ASCII character")
    if s.lower() != s and s.upper() != s:
        raise WireError("bolt12 string: mixed case")
    s = s.lower()
    sep = s.rfind("1")
    if sep < 1:
        raise WireError("bolt12 string: no human-readable part")
    hrp, data = s[:sep], s[sep + 1 :]
    try:
        values = [_VALUE[c] for c in data]
    except KeyError as e:
        raise WireError(f"bolt12 string: {e.args[0]!r} is not a bech32 character") from None
    return hrp, _from_5bit(values)


def _from_5bit(values: list[int]) -> bytes:
    acc = bits = 0
    out = bytearray()
    for v in values:
        acc = (acc << 5) | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits > 4:
        raise WireError("bolt12 string: padding exceeds 4 bits")
    if acc & ((1 << bits) - 1):
        raise WireError("bolt12 string: non-zero padding")
    return bytes(out)


def encode(hrp: str, data: bytes) -> str:
    acc = bits = 0
    out = []
    for b in data:
        acc = (acc << 8) | b
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append(CHARSET[(acc >> bits) & 31])
    if bits:
        out.append(CHARSET[(acc << (5 - bits)) & 31])
    return hrp + "1" + "".join(out)
