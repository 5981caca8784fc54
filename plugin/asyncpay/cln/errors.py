"""The CLN adapter's one error type: what an ``asyncpay-*`` RPC answers.

Each error becomes a JSON-RPC error with a stable code and a one-line
message (docs/rpc.md lists the codes). Parameter problems use lightningd's
own code for invalid parameters.
"""

from __future__ import annotations

INVALID_PARAMS = -32602  # JSONRPC2_INVALID_PARAMS, as lightningd answers bad parameters
NOT_FOUND = 2301  # the thing named does not exist
NOT_READY = 2302  # the node is not in a state to do it (no server set, not initialised)
PAY_FAILED = 2303  # a payment could not be made
INTERNAL = 2399  # a bug: logged with its traceback, answered briefly


class RpcFailure(Exception):
    """An RPC answer that is an error: ``code`` and a one-line ``message``."""

    code = INTERNAL

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ParamError(RpcFailure):
    """A parameter is missing, mistyped or out of range; the message names it."""

    code = INVALID_PARAMS


class NotFound(RpcFailure):
    code = NOT_FOUND


class NotReady(RpcFailure):
    code = NOT_READY
