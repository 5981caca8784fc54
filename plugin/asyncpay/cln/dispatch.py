"""How an ``asyncpay-*`` RPC call is bound and answered, the CLN way.

pyln-client binds parameters before our function runs (a missing one is a
bare ``TypeError``), answers any exception with -32600 and always attaches a
Python traceback. lightningd's own commands answer a bad parameter with
-32602 and a one-line message. ``AsyncpayPlugin`` does that for our methods:

* a missing, unknown or surplus parameter: -32602 naming it;
* ``RpcFailure`` (``cln/errors.py``): its code and message;
* anything else: logged with its traceback, answered with code 2399 and one
  line.

Background methods get an ``Answer`` as their ``request``: the same
``set_result`` / ``set_exception`` calls, with the same rules.
"""

from __future__ import annotations

import inspect
import re
import traceback
from typing import Any

from pyln.client import Plugin
from pyln.client.plugin import Request, RequestState

from .errors import INTERNAL, ParamError, RpcFailure

PREFIX = "asyncpay-"
_INJECTED = ("plugin", "request")


class Answer:
    """What a background method answers through; errors become one line."""

    def __init__(self, plugin: Plugin, request: Request) -> None:
        self.plugin, self.request = plugin, request

    @property
    def method(self) -> str:
        return self.request.method

    def set_result(self, result: Any) -> None:
        self.request.set_result(result)

    def set_exception(self, exc: BaseException) -> None:
        if isinstance(exc, RpcFailure):
            code, message = exc.code, exc.message
        else:
            self.plugin.log(
                f"{self.method} failed: {''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))}",
                level="broken",
            )
            code, message = INTERNAL, f"{self.method}: internal error ({type(exc).__name__}); see the log"
        req = self.request
        if req.state != RequestState.PENDING:
            return
        # Request.set_exception would attach a traceback; write the error ourselves.
        req._write_result({"jsonrpc": "2.0", "id": req.id, "error": {"code": code, "message": message}})
        req.state = RequestState.FAILED


def _param_message(method: str, e: TypeError) -> str:
    text = str(e)
    m = re.search(r"missing a required argument: '(\w+)'", text)
    if m:
        return f"{method}: missing required parameter {m.group(1)}"
    m = re.search(r"unexpected keyword argument '(\w+)'", text)
    if m:
        return f"{method}: unknown parameter {m.group(1)}"
    if "too many positional" in text:
        return f"{method}: too many parameters"
    return f"{method}: {text}"


def bind(func, params: Any, injected: dict[str, Any]) -> inspect.BoundArguments:
    """Bind JSON-RPC ``params`` (a list or an object) to ``func``; TypeError if they do not fit."""
    sig = inspect.signature(func)
    names = [n for n in sig.parameters if n not in _INJECTED]
    if isinstance(params, list):
        if len(params) > len(names):
            raise TypeError("too many positional arguments")
        kwargs = dict(zip(names, params))
    elif isinstance(params, dict):
        kwargs = {k: v for k, v in params.items() if k not in _INJECTED}
    else:
        raise TypeError("parameters must be a list or an object")
    kwargs.update({k: v for k, v in injected.items() if k in sig.parameters})
    ba = sig.bind(**kwargs)
    ba.apply_defaults()
    return ba


class AsyncpayPlugin(Plugin):
    def _dispatch_request(self, request: Request) -> None:
        method = self.methods.get(request.method)
        if method is None or not request.method.startswith(PREFIX):
            super()._dispatch_request(request)
            return
        request.background = method.background
        answer = Answer(self, request)
        try:
            ba = bind(method.func, request.params, {"plugin": self, "request": answer})
        except TypeError as e:
            answer.set_exception(ParamError(_param_message(request.method, e)))
            return
        try:
            result = method.func(*ba.args, **ba.kwargs)
            if not method.background:
                answer.set_result(result)
        except Exception as e:
            answer.set_exception(e)
