"""BOLT 1 TLV streams.

A stream is kept as an ordered list of (type, value) records, so that
serializing what was parsed gives the same bytes back. Typed messages decode
their known records from it and keep every other (odd) record verbatim.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .errors import WireError
from .types import bigsize, read_bigsize

TlvStream = list[tuple[int, bytes]]


def read_tlv_stream(
    data: bytes,
    known: Callable[[int], bool] | frozenset[int] | set[int] = frozenset(),
    what: str = "tlv stream",
) -> TlvStream:
    """Parse a whole buffer as a TLV stream under the BOLT 1 rules.

    Types must strictly increase; BigSize values must be minimal; a record may
    not run past the end; an even type that ``known`` does not accept is
    rejected (it names the type); unknown odd types are kept.
    """
    is_known = known if callable(known) else known.__contains__
    out: TlvStream = []
    pos = 0
    n = len(data)
    last = -1
    while pos < n:
        t, pos = read_bigsize(data, pos)
        if t <= last:
            raise WireError(f"{what}: type {t} after {last} (types must strictly increase)")
        length, pos = read_bigsize(data, pos)
        end = pos + length
        if end > n:
            raise WireError(f"{what}: type {t} length {length} runs past end")
        if t % 2 == 0 and not is_known(t):
            raise WireError(f"{what}: unknown even type {t}")
        out.append((t, data[pos:end]))
        pos = end
        last = t
    return out


def write_tlv_stream(records: Iterable[tuple[int, bytes]]) -> bytes:
    """Serialize records, sorted by type; duplicate types are an error."""
    parts = []
    last = -1
    for t, v in sorted(records, key=lambda r: r[0]):
        if t == last:
            raise WireError(f"duplicate TLV type {t}")
        parts.append(bigsize(t) + bigsize(len(v)) + v)
        last = t
    return b"".join(parts)
