"""A TCP proxy in front of the test cluster that can break one COMMIT.

It relays PostgreSQL's wire protocol message by message (the startup
message, then a type byte and a length per message) so that it can act on
the client's ``COMMIT`` query, once per ``arm``:

* ``"lose_answer"``: the COMMIT goes to the server, which commits; the
  proxy waits for the server's ReadyForQuery, drops the answer and cuts the
  client off (a connection reset after the commit: its outcome is unknown
  to the client, and it did commit);
* ``"drop_commit"``: the proxy cuts the client off without passing the
  COMMIT on (the server rolls the transaction back when the session ends).

``uri`` is the cluster's ``postgresql://`` URI with the proxy as host.
"""

from __future__ import annotations

import socket
import struct
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

COMMIT = b"Q" + struct.pack("!i", 11) + b"COMMIT\x00"


def _target(dsn: str) -> tuple[int, object]:
    """(address family, address) of the server ``dsn`` names."""
    import psycopg.conninfo

    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host, port = params.get("host") or "/var/run/postgresql", int(params.get("port") or 5432)
    if host.startswith("/"):
        return socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"
    return socket.AF_INET, (host, port)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _message(sock: socket.socket, typed: bool) -> bytes:
    head = _read_exact(sock, 5 if typed else 4)
    length = struct.unpack("!i", head[-4:])[0]
    return head + _read_exact(sock, length - 4)


class CommitBreaker:
    def __init__(self, dsn: str) -> None:
        self.family, self.address = _target(dsn)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        parts = urlsplit(dsn)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("host", "port", "sslmode", "gssencmode")]
        query += [("sslmode", "disable"), ("gssencmode", "disable")]
        self.uri = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}", query=urlencode(query)))
        self._mode: str | None = None
        self._mutex = threading.Lock()
        self.fired = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, mode: str) -> None:
        assert mode in ("lose_answer", "drop_commit")
        with self._mutex:
            self._mode = mode
            self.fired.clear()

    def _take(self) -> str | None:
        with self._mutex:
            mode, self._mode = self._mode, None
            return mode

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(self.family, socket.SOCK_STREAM)
            server.connect(self.address)
            lost_answer = threading.Event()
            threading.Thread(target=self._to_server, args=(client, server, lost_answer), daemon=True).start()
            threading.Thread(target=self._to_client, args=(client, server, lost_answer), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket, lost_answer: threading.Event) -> None:
        typed = False
        try:
            while True:
                msg = _message(client, typed)
                typed = True
                if msg == COMMIT:
                    mode = self._take()
                    if mode == "drop_commit":
                        self.fired.set()
                        break
                    if mode == "lose_answer":
                        lost_answer.set()
                server.sendall(msg)
        except (ConnectionError, OSError):
            pass
        _shut(client, server)

    def _to_client(self, client: socket.socket, server: socket.socket, lost_answer: threading.Event) -> None:
        try:
            while True:
                msg = _message(server, True)  # the server's messages all have a type byte
                if lost_answer.is_set():
                    if msg[:1] == b"Z":  # the COMMIT is done on the server: cut before the client hears it
                        self.fired.set()
                        break
                    continue
                client.sendall(msg)
        except (ConnectionError, OSError):
            pass
        _shut(client, server)


def _shut(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
