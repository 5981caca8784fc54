"""LSPS0 transport: JSON-RPC 2.0 in BOLT 8 custom message 37913
(BitcoinAndLightningLayerSpecs/lsp LSPS0/README.md, "Lightning Peer-To-Peer
Transport", "Message Payload Format", "Error Handling").

Sans-IO: ``read_request`` turns a custom message payload into a
``Request`` or raises ``Lsps0Error`` with the error the LSP must answer;
``response``/``error_response`` give the payload of the answer (UTF-8 JSON,
no type prefix); ``frame``/``unframe`` add and take the 2-byte type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MESSAGE_TYPE = 37913  # lsps0_message_id
MAX_PAYLOAD = 65533  # BOLT 8 payload less the 2-byte type
# Longest request id we echo (its JSON text): every answer of ours is a few
# hundred bytes besides the id, so with this bound it always fits MAX_PAYLOAD.
# LSPS0 asks clients for an id of at least 80 random bits: a few dozen characters.
MAX_ID_LENGTH = 1024

# JSON-RPC 2.0 error codes (jsonrpc.org/specification#error_object).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

RequestId = str | int | None


class Lsps0Error(Exception):
    """An error response: JSON-RPC ``code``, ``message`` and optional ``data``.
    ``request_id`` is None when the request could not be read (LSPS0: a
    "bad message format" is answered with ``id`` = null)."""

    def __init__(self, code: int, message: str, data: dict | None = None, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data, self.request_id = code, message, data, request_id


@dataclass(frozen=True)
class Request:
    id: str | int
    method: str
    params: dict = field(default_factory=dict)


def frame(payload: bytes) -> bytes:
    return MESSAGE_TYPE.to_bytes(2, "big") + payload


def unframe(message: bytes) -> bytes | None:
    """The payload of an LSPS0 message, or None for any other type."""
    if len(message) < 2 or int.from_bytes(message[:2], "big") != MESSAGE_TYPE:
        return None
    return message[2:]


def _one_object(payload: bytes) -> dict:
    """LSPS0 "bad message format": one complete JSON object, UTF-8, no NUL."""
    if b"\x00" in payload:
        raise Lsps0Error(PARSE_ERROR, "Parse error")
    try:
        text = payload.decode("utf-8")
        obj, end = json.JSONDecoder().raw_decode(text.lstrip(" \t\r\n"))
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, bad UTF-8 and an integer longer
        # than Python's int_max_str_digits (4300): a peer's bytes never make
        # a traceback, only -32700.
        raise Lsps0Error(PARSE_ERROR, "Parse error") from None
    if not isinstance(obj, dict) or text.lstrip(" \t\r\n")[end:].strip(" \t\r\n"):
        raise Lsps0Error(PARSE_ERROR, "Parse error")
    try:  # a "\ud800" escape is JSON but no UTF-8: nothing we store or echo may carry one
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        raise Lsps0Error(PARSE_ERROR, "Parse error") from None
    return obj


def read_request(payload: bytes) -> Request:
    """A JSON-RPC 2.0 request, by-name params (LSPS0 "The client: MUST ..."):
    a notification (no ``id``) or a by-position ``params`` is refused."""
    obj = _one_object(payload)
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise Lsps0Error(INVALID_REQUEST, "Invalid Request")
    if len(_dump({"id": rid})) - 7 > MAX_ID_LENGTH:  # an answer echoing it might not fit a message
        raise Lsps0Error(INVALID_REQUEST, f"Invalid Request: id longer than {MAX_ID_LENGTH} bytes")
    if obj.get("jsonrpc") != "2.0" or not isinstance(obj.get("method"), str):
        raise Lsps0Error(INVALID_REQUEST, "Invalid Request", request_id=rid)
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise Lsps0Error(INVALID_PARAMS, "Invalid params: must be by-name", {"unrecognized": []}, rid)
    return Request(rid, obj["method"], params)


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def response(request_id: RequestId, result: dict) -> bytes:
    return _dump({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_response(e: Lsps0Error) -> bytes:
    err: dict[str, Any] = {"code": e.code, "message": e.message}
    if e.data is not None:
        err["data"] = e.data
    return _dump({"jsonrpc": "2.0", "id": e.request_id, "error": err})


def check_params(request: Request, known: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    """LSPS0 "-32602 Invalid Parameters Error": data.unrecognized names the
    parameters we do not know; a missing one is invalid too."""
    unknown = sorted(k for k in request.params if k not in known)
    missing = [k for k in required if k not in request.params]
    if unknown or missing:
        what = f"unrecognized {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise Lsps0Error(INVALID_PARAMS, f"Invalid params: {what}"[:200], {"unrecognized": unknown}, request.id)
