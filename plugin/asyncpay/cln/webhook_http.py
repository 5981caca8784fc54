"""One webhook call whose whole time is bounded: name lookup, connect, TLS,
request and response head, by one deadline (``asyncpay-lsps5-http-timeout``).

A client library's timeout bounds each socket operation, not the call: a
push service sending its head one byte at a time, or ``102 Processing``
again and again, would hold a sender for as long as it likes, and
``getaddrinfo`` has no timeout at all. So the socket here is non-blocking
and every wait (``select``) is for what is left until the deadline; the
look-up runs on a thread of its own that the call stops waiting for.

Only what LSPS5 needs: one ``POST`` over HTTP/1.1 with ``Connection:
close``, the status of the first final (non-1xx) response, the body never
read (LSPS5 "Webhook Call": the response is ignored), no redirects.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable

MAX_HEAD = 16 * 1024  # a response head longer than this is not a push service's
RECV = 4096
CONNECT_FAILED = "error: connect: "  # the status of a call that reached nobody: the next address may


class CallFailed(Exception):
    """The call did not get a status: ``status`` is what the webhook's
    ``last_status`` shows ("timeout", "error: ...")."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise CallFailed("timeout")
    return left


def _wait(sock: socket.socket, write: bool, deadline: float) -> None:
    r, w, _ = select.select([] if write else [sock], [sock] if write else [], [], _left(deadline))
    if not (r or w):
        raise CallFailed("timeout")


def host_header(host: str, port: int) -> str:
    """RFC 9110 7.2 / RFC 3986 3.2.2: an IPv6 literal in brackets; the port
    unless it is https's 443."""
    name = f"[{host}]" if ":" in host else host
    return name if port == 443 else f"{name}:{port}"


def post(address: str, port: int, tls_name: str, target: str, headers: dict[str, str], body: bytes,
         tls: ssl.SSLContext, deadline: float) -> int:
    """POST ``body`` to ``target`` (path and query) at ``address``, the TLS
    certificate checked against ``tls_name`` (the URL's host, sent as SNI
    when it is a name); the status of the final response. Raises
    ``CallFailed`` at the deadline or on any error."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    try:
        raw.setblocking(False)
        try:
            try:
                raw.connect((address, port))
            except BlockingIOError:
                pass
            _wait(raw, True, deadline)
            err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, errno.errorcode.get(err, str(err)))
        except OSError as e:
            raise CallFailed(f"{CONNECT_FAILED}{e}"[:200]) from None
        sock = tls.wrap_socket(raw, server_hostname=tls_name, do_handshake_on_connect=False)
        raw = sock
        _io(sock, sock.do_handshake, deadline)
        head = [f"POST {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
                f"Content-Length: {len(body)}", "Connection: close", "", ""]
        out = memoryview("\r\n".join(head).encode("latin-1") + body)
        while out:
            out = out[_io(sock, lambda o=out: sock.send(o), deadline):]
        return _read_status(sock, deadline)
    except CallFailed:
        raise
    except ssl.SSLError as e:
        raise CallFailed(f"error: TLS: {e}"[:200]) from None
    except (OSError, ValueError) as e:
        raise CallFailed(f"error: {type(e).__name__}: {e}"[:200]) from None
    finally:
        raw.close()


def _io(sock: ssl.SSLSocket, op: Callable[[], object], deadline: float):
    """Run one non-blocking TLS operation to its end, waiting only until the deadline."""
    while True:
        _left(deadline)
        try:
            return op()
        except ssl.SSLWantReadError:
            _wait(sock, False, deadline)
        except ssl.SSLWantWriteError:
            _wait(sock, True, deadline)
        except BlockingIOError:
            _wait(sock, False, deadline)


def _read_status(sock: ssl.SSLSocket, deadline: float) -> int:
    """The status of the first final response; 1xx heads (100 Continue, 102
    Processing, 103 Early Hints) are skipped, each costing time of the same deadline."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head, buf = buf[:end], buf[end + 4:]
            status = _status(head)
            if not 100 <= status < 200:
                return status
            continue
        if len(buf) > MAX_HEAD:
            raise CallFailed("error: response head too long")
        chunk = _io(sock, lambda: sock.recv(RECV), deadline)
        if not chunk:
            raise CallFailed("error: connection closed before the response")
        buf += chunk


def _status(head: bytes) -> int:
    line = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(line) < 2 or not line[0].startswith(b"HTTP/1.") or len(line[1]) != 3 or not line[1].isdigit():
        raise CallFailed("error: not an HTTP/1.1 response")
    return int(line[1])


Resolver = Callable[[str, int], Iterable[str]]


class BoundedLookup:
    """Name look-ups that a call stops waiting for at its deadline.

    ``getaddrinfo`` cannot be interrupted: each look-up runs on a daemon
    thread, and the caller waits only until its deadline. A look-up of a
    name already being looked up joins it (a hostile name costs one thread
    however often it is called), and at most ``max_threads`` run at once; the
    system resolver ends each on its own (resolv.conf timeout and attempts),
    so abandoned threads do not pile up beyond that.
    """

    def __init__(self, resolve: Resolver, max_threads: int) -> None:
        self.resolve, self.max_threads = resolve, max_threads
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], _Lookup] = {}

    def __call__(self, host: str, port: int, deadline: float) -> list[str]:
        key = (host, port)
        with self._lock:
            job = self._pending.get(key)
            if job is None:
                if len(self._pending) >= self.max_threads:
                    raise OSError("too many name look-ups in progress")
                job = self._pending[key] = _Lookup()
                threading.Thread(target=self._run, args=(key, job), daemon=True, name="lsps5-lookup").start()
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            raise CallFailed("timeout")
        if job.error is not None:
            raise job.error
        return list(job.result)

    def _run(self, key: tuple[str, int], job: _Lookup) -> None:
        try:
            job.result = list(self.resolve(*key))
        except (OSError, ValueError) as e:
            job.error = e
        except Exception as e:  # a resolver's surprise is this call's failure, not the thread's death
            job.error = OSError(f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                self._pending.pop(key, None)
            job.done.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


class _Lookup:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: list[str] = []
        self.error: Exception | None = None
