"""The demo's processes: one bitcoind and lightningd nodes, started with
subprocess in their own session (a Ctrl-C in the terminal reaches only the
demo, which then stops them itself), reached over JSON-RPC."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pyln.client import LightningRpc

from .config import LOOPBACK, BitcoindAuth, bitcoin_conf, lightning_conf
from .progress import DemoError, Progress

STOP_WAIT = 20.0  # seconds a daemon gets to stop before it is terminated


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _end(proc: subprocess.Popen | None, asked: bool) -> None:
    """Wait for a process we asked to stop; terminate, then kill, if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((None, STOP_WAIT if asked else 0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Bitcoind:
    def __init__(self, binary: str, datadir: Path, auth: BitcoindAuth) -> None:
        self.binary, self.datadir, self.auth = binary, datadir, auth
        self.proc: subprocess.Popen | None = None
        self._id = 0

    @property
    def log(self) -> Path:
        return self.datadir / "regtest" / "debug.log"

    def start(self, progress: Progress) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        (self.datadir / "bitcoin.conf").write_text(bitcoin_conf(self.auth))
        with open(self.datadir / "stdout", "wb") as out:
            self.proc = subprocess.Popen([self.binary, f"-datadir={self.datadir}"], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        progress.wait_for(self._ready, "bitcoind's RPC", timeout=60)

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"bitcoind exited with {self.proc.returncode}:\n"
                            f"{_log_tail(self.datadir / 'stdout')}\n{_log_tail(self.log)}")
        try:
            self.call("getblockchaininfo")
            return True
        except (OSError, DemoError):  # not listening yet, or warming up (-28)
            return False

    def call(self, method: str, *params: object) -> object:
        self._id += 1
        body = json.dumps({"jsonrpc": "1.0", "id": self._id, "method": method, "params": list(params)}).encode()
        token = base64.b64encode(f"{self.auth.user}:{self.auth.password}".encode()).decode()
        req = urllib.request.Request(f"http://{LOOPBACK}:{self.auth.rpcport}/", data=body,
                                     headers={"Authorization": f"Basic {token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = json.load(r)
        except urllib.error.HTTPError as e:  # bitcoind answers RPC errors with HTTP 500 and a JSON body
            try:
                answer = json.load(e)
            except ValueError:
                raise DemoError(f"bitcoind {method}: HTTP {e.code}") from e
        if answer.get("error"):
            raise DemoError(f"bitcoind {method}: {answer['error'].get('message')}")
        return answer["result"]

    def mine(self, blocks: int) -> None:
        address = self.call("getnewaddress")
        self.call("generatetoaddress", blocks, address)

    def height(self) -> int:
        return int(self.call("getblockcount"))  # type: ignore[arg-type]

    def stop(self) -> None:
        asked = False
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.call("stop")
                asked = True
            except (OSError, DemoError):
                pass
        _end(self.proc, asked)


@dataclass
class Node:
    """One lightningd: ``name`` is its part in the story (S, Ls, Lr, R)."""

    name: str
    part: str
    dir: Path
    port: int
    binary: str
    proc: subprocess.Popen | None = None
    id: str = ""
    rpc: LightningRpc = field(init=False)

    def __post_init__(self) -> None:
        self.rpc = LightningRpc(str(self.dir / "regtest" / "lightning-rpc"))

    @property
    def log(self) -> Path:
        return self.dir / "log"

    def configure(self, auth: BitcoindAuth, plugin: str, plugin_options: dict[str, str] | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config").write_text(lightning_conf(self.name, str(self.dir), self.port, auth, plugin,
                                                        plugin_options))

    def launch(self) -> None:
        with open(self.dir / "stdout", "ab") as out:
            self.proc = subprocess.Popen([self.binary, f"--lightning-dir={self.dir}"], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def wait_ready(self, progress: Progress) -> None:
        """Until lightningd answers and asyncpay is initialised: a plugin that
        disabled itself, or a lightningd that exited, is a clear error."""
        progress.wait_for(self._ready, f"{self.name}'s lightningd and its asyncpay plugin", timeout=60)
        self.id = self.rpc.getinfo()["id"]

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"{self.name}'s lightningd exited with {self.proc.returncode}:\n"
                            f"{_log_tail(self.dir / 'stdout')}")
        if "disabled itself at init" in _log_tail(self.log, 400):
            line = next(x for x in self.log.read_text(errors="replace").splitlines()
                        if "disabled itself at init" in x)
            raise DemoError(f"{self.name}: the asyncpay plugin did not start: {line.split('init: ', 1)[1]}")
        try:
            self.rpc.call("asyncpay-status")
            return True
        except Exception:  # socket not there yet, or the plugin still starting
            return False

    def start(self, progress: Progress) -> None:
        self.launch()
        self.wait_ready(progress)

    def stop(self) -> None:
        asked = False
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.rpc.stop()
                asked = True
            except Exception:
                pass
        _end(self.proc, asked)

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


def kill_all(nodes: list[Node], bitcoind: Bitcoind | None) -> list[str]:
    """Stop every process we started, lightningd first; names of those stopped."""
    stopped = []
    for n in nodes:
        if n.pid() is not None:
            n.stop()
            stopped.append(n.name)
    if bitcoind is not None and bitcoind.proc is not None and bitcoind.proc.poll() is None:
        bitcoind.stop()
        stopped.append("bitcoind")
    return stopped

