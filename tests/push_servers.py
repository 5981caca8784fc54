"""Loopback HTTPS push services for the LSPS5 tests and bench, honest and
hostile: the path of the webhook picks what the service does with a call.

* ``/slow<ms>``: answers 200 after that many milliseconds;
* ``/trickle``: a response head that never ends, one byte at a time;
* ``/102``: ``HTTP/1.1 102 Processing`` again and again, never a final answer;
* ``/hang``: reads the request and says nothing;
* anything else: 200 at once.

Every connection's thread ends when the caller closes, at ``close()``, or
after ``max_seconds``: nothing here runs on after its test.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

import trustme


class PushServer:
    def __init__(self, ca: trustme.CA, names: tuple[str, ...] = ("127.0.0.1",), address: str = "127.0.0.1",
                 step: float = 0.05, max_seconds: float = 30.0,
                 on_call: Callable[[str, dict, bytes], None] | None = None) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.create_server((address, 0), family=family, backlog=256)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(*names).configure_cert(self.ctx)
        self.step, self.max_seconds, self.on_call = step, max_seconds, on_call
        self.got: list[tuple[str, dict, bytes, float]] = []  # path, headers, body, when (monotonic)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            with self.lock:
                self.threads = [x for x in self.threads if x.is_alive()] + [t]
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.max_seconds
        try:
            conn.settimeout(2.0)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            conn = tls
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = dict(line.split(": ", 1) for line in lines[1:])
            while len(body) < int(headers.get("Content-Length", 0)):
                body += tls.recv(4096)
            with self.lock:
                self.got.append((path, headers, body, time.monotonic()))
            if self.on_call is not None:
                self.on_call(path, headers, body)
            if path.startswith("/slow"):
                self.stop.wait(int(path[5:].split("/")[0].split("?")[0] or 0) / 1000)
            elif path.startswith("/trickle"):
                self._repeat(tls, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1_000_000, 1, end)
                return
            elif path.startswith("/102"):
                self._repeat(tls, b"HTTP/1.1 102 Processing\r\n\r\n" * 100_000, 27, end)
                return
            elif path.startswith("/hang"):
                self.stop.wait(max(0.0, end - time.monotonic()))
                return
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except (OSError, ValueError, IndexError):
            pass  # the caller went away (or sent nonsense): this connection is done
        finally:
            conn.close()

    def _repeat(self, tls: ssl.SSLSocket, data: bytes, size: int, end: float) -> None:
        for i in range(0, len(data), size):
            if self.stop.is_set() or time.monotonic() > end:
                return
            tls.sendall(data[i:i + size])
            self.stop.wait(self.step)

    def url(self, path: str = "/push", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self._accept.join(5)
        with self.lock:
            threads = list(self.threads)
        for t in threads:
            t.join(5)
