"""Parameter parsers for the RPC methods: each returns the value or raises
``ParamError`` with a one-line message that names the parameter."""

from __future__ import annotations

from typing import Any

from .errors import ParamError


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def integer(name: str, value: Any, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; a JSON number or a decimal string."""
    if isinstance(value, bool):
        raise ParamError(f"{name} must be an integer, got {_show(value)}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ParamError(f"{name} must be an integer, got {_show(value)}")
    if not lo <= value <= hi:
        raise ParamError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def text(name: str, value: Any, max_len: int = 1024, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ParamError(f"{name} must be a string, got {_show(value)}")
    if not value and not allow_empty:
        raise ParamError(f"{name} must not be empty")
    if len(value) > max_len:
        raise ParamError(f"{name} must be at most {max_len} characters")
    return value


def hexbytes(name: str, value: Any, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.isascii():
        raise ParamError(f"{name} must be a hex string, got {_show(value)}")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ParamError(f"{name} must be a hex string, got {_show(value)}") from None
    if length is not None and len(data) != length:
        raise ParamError(f"{name} must be {length} bytes of hex, got {len(data)}")
    return data


def node_id(name: str, value: Any) -> str:
    """A 33-byte compressed public key in hex, returned lower-case."""
    data = hexbytes(name, value, 33)
    if data[0] not in (2, 3):
        raise ParamError(f"{name} must be a node id (33-byte compressed key), got {_show(value)}")
    return data.hex()


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ParamError(f"{name} must be true or false, got {_show(value)}")


def hexlist(name: str, value: Any, max_items: int = 64) -> list[bytes]:
    """A non-empty JSON list of hex strings (a JSON string holding one is accepted)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ParamError(f"{name} must be a non-empty list of hex strings")
    if len(value) > max_items:
        raise ParamError(f"{name} must have at most {max_items} items")
    return [hexbytes(f"{name}[{i}]", v) for i, v in enumerate(value)]
