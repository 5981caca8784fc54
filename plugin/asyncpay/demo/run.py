"""The walk-through on regtest, driven step by step: by default S -- Ls --
Lr -- R, the flagship network of tests/test_regtest_hold.py; with
``--topology`` one LSP for both wallets (tests/test_regtest_one_lsp.py) or
R's offer at two LSPs, one of which stops (tests/test_regtest_redundant.py).
The steps of each are ``plan.TOPOLOGIES``."""

from __future__ import annotations

import hashlib
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from pyln.client import RpcError

from .config import LOOPBACK, BitcoindAuth, free_ports, stop_script
from .daemons import Bitcoind, Node, kill_all
from .plan import (
    EXIT_CANNOT_RUN,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    REQUIRED,
    TOPOLOGIES,
    TWO_LSPS,
    Topology,
    missing_binaries,
    missing_message,
    parse_args,
    plugin_script,
    seconds,
    shorten,
    step_line,
    summary_table,
)
from .progress import Deadline, DemoError, DemoTimeout, Progress

FUND_BTC = 0.02  # each funder's coins; channels below take at most half
STOCK_AMOUNT_MSAT = 25_000
INDENT = "        "


class Demo:
    def __init__(self, out: TextIO, binaries: dict[str, str], plugin: str, limit: float, amount_msat: int,
                 topology: Topology = TWO_LSPS) -> None:
        self.out, self.binaries, self.plugin, self.amount = out, binaries, plugin, amount_msat
        self.topo = topology
        self.deadline = Deadline(limit)
        self.progress = Progress(out, self.deadline)
        self.base = Path(tempfile.mkdtemp(prefix="asyncpay-demo-"))
        rpcport, *ports = free_ports(1 + len(topology.nodes))
        self.auth = BitcoindAuth(rpcport, "demo", secrets.token_hex(16))
        self.bitcoind = Bitcoind(binaries["bitcoind"], self.base / "bitcoin", self.auth)
        self.by_name = {name: Node(name, part, self.base / name.lower(), port, binaries["lightningd"])
                        for (name, part), port in zip(topology.nodes, ports)}
        self.nodes = list(self.by_name.values())
        self.s, self.r = self.by_name["S"], self.by_name["R"]
        self.holder = self.by_name[topology.holder] if topology.holder else None  # holds S's HTLC
        self.servers = [self.by_name[x] for x in topology.servers]
        self.mailbox = self.by_name[topology.survivor]  # keeps R's mail, R reaches it on waking
        self.rows: list[tuple[str, ...]] = []
        self.offer = ""
        self.pay: dict = {}

    def say(self, text: str) -> None:
        self.progress.say(text)

    # -- the run ----------------------------------------------------------------

    def run(self) -> None:
        self.say(f"asyncpay demo: an async payment on a private regtest network in {self.base}")
        self.say(f"  {self.topo.picture}; everything on 127.0.0.1 (--topology {self.topo.name})\n")
        steps = self.topo.steps
        for i, step in enumerate(steps):
            self.say(step_line(i, step, steps))
            started = time.monotonic()
            result = getattr(self, f"step_{step.key}")()
            took = seconds(time.monotonic() - started)
            self.say(f"{INDENT}-> {result}  [{took}]")
            self.rows.append((str(i + 1), step.label, step.nodes, result, took))
        self.say("")
        self.say(summary_table(self.rows, ("#", "step", "at", "result", "took")))
        self.say("")
        self.say(self.final_state())
        self.say(f"\nasyncpay demo: done in {seconds(self.deadline.elapsed())}.")

    def call(self, node: Node, method: str, params: dict | None = None) -> dict:
        """An RPC call whose failure names the node and the method."""
        try:
            return node.rpc.call(method, params or {})
        except RpcError as e:
            message = e.error.get("message") if isinstance(e.error, dict) else e.error
            raise DemoError(f"{method} at {node.name} failed: {message}") from e

    def wait(self, predicate: Callable, what: str, timeout: float = 60, slow: bool = False):
        return self.progress.wait_for(predicate, what, timeout=timeout, slow=slow)

    # -- the steps ------------------------------------------------------------------

    def step_start(self) -> str:
        self.bitcoind.start(self.progress)
        self.bitcoind.call("createwallet", "demo")
        self.bitcoind.mine(101)  # coinbase outputs mature after 100 blocks
        others = [n for n in self.nodes if n is not self.s]
        for n in others:
            n.configure(self.auth, self.plugin)
            n.launch()
        for n in others:
            n.wait_ready(self.progress)
        # S needs its LSP's id: asyncpay-payer-lsp makes that LSP hold S's payments.
        self.s.configure(self.auth, self.plugin, {"asyncpay-payer-lsp": self.holder.id} if self.holder else None)
        self.s.start(self.progress)
        for n in self.nodes:
            self.say(f"{INDENT}{n.name:<2} {n.id}  {n.part}")
        return f"bitcoind on {LOOPBACK}:{self.auth.rpcport}, {len(self.nodes)} nodes with asyncpay"

    def step_channels(self) -> str:
        channels = [(self.by_name[c.opener], self.by_name[c.peer], c) for c in self.topo.channels]
        # One coin per channel: a second fundchannel cannot spend the first one's unconfirmed change.
        self.bitcoind.call("sendmany", "", {_address(a): FUND_BTC for a, _, _ in channels})
        self.bitcoind.mine(1)
        for n in self.nodes:
            count = sum(a is n for a, _, _ in channels)
            if count:
                self.wait(lambda n=n, count=count: sum(o["status"] == "confirmed"
                                                       for o in n.rpc.listfunds()["outputs"]) >= count,
                          f"{n.name} to see its coins", slow=True)
        for a, b, c in channels:
            self.call(a, "connect", {"id": b.id, "host": LOOPBACK, "port": b.port})
            self.call(a, "fundchannel", {"id": b.id, "amount": c.sat, "announce": c.announce})
        self.bitcoind.mine(6)  # 6 confirmations: public channels may be announced
        for a, b, _ in channels:
            self.wait(lambda a=a, b=b: [c for c in a.rpc.listpeerchannels(b.id)["channels"]
                                        if c["state"] == "CHANNELD_NORMAL"],
                      f"channel {a.name}-{b.name} to be normal", slow=True)
        return f"{', '.join(f'{a.name}-{b.name}' for a, b, _ in channels)} normal at block {self.bitcoind.height()}"

    def step_gossip(self) -> str:
        known = []
        for c in (c for c in self.topo.channels if c.announce):
            a, b = self.by_name[c.opener], self.by_name[c.peer]
            [chan] = a.rpc.listpeerchannels(b.id)["channels"]
            scid = chan["short_channel_id"]
            for n in (self.s, self.r):  # both directions: routes and onion-message replies use them
                self.wait(lambda n=n, scid=scid: len(n.rpc.listchannels(scid)["channels"]) == 2,
                          f"{n.name} to learn channel {a.name}-{b.name} ({scid})", timeout=90, slow=True)
            known.append(f"{a.name}-{b.name} ({scid})")
        # R builds its blinded payment paths from each LSP's channel_update.
        for lsp in self.servers:
            self.wait(lambda lsp=lsp: any((c.get("updates") or {}).get("remote")
                                          for c in self.r.rpc.listpeerchannels(lsp.id)["channels"]),
                      f"{lsp.name}'s channel_update at R", slow=True)
        updates = ", ".join(lsp.name for lsp in self.servers)
        if not known:
            return f"R has {updates}'s channel_update (no public channel to learn)"
        return f"S and R know {', '.join(known)} in both directions; R has {updates}'s channel_update"

    def step_offer(self) -> str:
        paths = [p["hex"] for lsp in self.servers
                 for p in self.call(lsp, "asyncpay-recipientpaths", {"recipient_id": self.r.id})["paths"]]
        servers = self.call(self.r, "asyncpay-setserver", {"paths": paths})["servers"]
        self.call(self.r, "asyncpay-offer", {"description": "asyncpay demo"})
        names = "+".join(lsp.name for lsp in self.servers)
        row = self.wait(lambda: next((o for o in self.call(self.r, "asyncpay-listoffers")["offers"]
                                      if o["slot"] == 0 and o["status"] == "ready"
                                      and all(s["confirmed"] for s in o["servers"])), None),
                        f"R's static invoice to be stored at {names}")
        self.offer = row["bolt12"]
        stored = sum(len(self.call(lsp, "asyncpay-listinvoices", {"recipient_id": self.r.id})["invoices"])
                     for lsp in self.servers)
        self.say(f"{INDENT}offer: {self.offer}")
        return (f"offer ready ({len(self.offer)} chars), registered at {len(servers)} server(s); "
                f"{names} store{'s' if len(self.servers) == 1 else ''} {stored} static invoice(s) for R")

    def step_lsp_down(self) -> str:
        down = self.by_name[self.topo.down or ""]
        down.stop()
        return f"{down.name}'s lightningd stopped; it does not come back"

    def step_r_sleeps(self) -> str:
        self.r.stop()
        box = self.mailbox
        self.wait(lambda: not any(p.get("connected") for p in box.rpc.listpeers(self.r.id)["peers"]),
                  f"{box.name} to see R disconnected")
        return f"R's lightningd stopped; {box.name} sees R offline"

    def step_pay(self) -> str:
        if self.holder is None:  # S holds its own HTLC and stays online
            pay = self.call(self.s, "asyncpay-pay", {"offer": self.offer, "amount_msat": self.amount, "timeout": 5})
            if pay.get("status") != "pending" or pay.get("kind") != "static":
                raise DemoError(f"asyncpay-pay at S answered {pay}, not a pending static payment")
            self.pay = pay
            # The payment hash comes with the preimage S picks after R's release.
            return (f"asyncpay-pay: pending (static invoice from {self.mailbox.name}), "
                    f"payment id {shorten(pay['id'], 8)}")
        pay = self.call(self.s, "asyncpay-pay", {"offer": self.offer, "amount_msat": self.amount, "timeout": 60})
        if pay.get("status") != "held":
            raise DemoError(f"asyncpay-pay at S answered {pay.get('status')!r}, not 'held': {pay}")
        self.pay = pay
        return f"asyncpay-pay: held ({pay.get('kind')} invoice), payment hash {shorten(pay['payment_hash'], 8)}"

    def step_s_sleeps(self) -> str:
        self.s.stop()
        return f"S's lightningd stopped; its HTLC stays at {self.holder.name if self.holder else 'S'}"

    def _held_row(self) -> dict | None:
        if self.holder is None:
            return None
        return next((h for h in self.call(self.holder, "asyncpay-listheld")["held"]
                     if h["payment_hash"] == self.pay["payment_hash"]), None)

    def step_held(self) -> str:
        box = self.wait(lambda: (m := self.call(self.mailbox, "asyncpay-listmailbox"))["messages"] >= 1 and m,
                        f"held_htlc_available in {self.mailbox.name}'s mailbox")
        mail = f"{self.mailbox.name}'s mailbox: {box['messages']} message(s) for R"
        if self.holder is None:
            return f"S waits for R's release; {mail}"
        row = self._held_row()
        if row is None or row["state"] != "held":
            raise DemoError(f"asyncpay-listheld at {self.holder.name}: expected the payment held, got {row}")
        return f"{self.holder.name} holds {row['amount_msat']} msat (CLTV {row['cltv_expiry']}); {mail}"

    def step_r_wakes(self) -> str:
        self.r.start(self.progress)
        self.call(self.r, "connect", {"id": self.mailbox.id, "host": LOOPBACK, "port": self.mailbox.port})
        got = self.wait(lambda: self._received(self._payment_hash()), "R to release and claim",
                        timeout=90, slow=True)
        if self.holder is None:
            return f"R claimed {got['amount_msat']} msat over its path through {self.mailbox.name}"
        row = self.wait(lambda: (h := self._held_row()) and h["state"] == "forwarded" and h,
                        f"{self.holder.name} to mark the HTLC forwarded")
        return (f"R claimed {got['amount_msat']} msat; {self.holder.name} forwarded it after "
                f"{int(time.time()) - row['since']} s")

    def _payment_hash(self) -> str | None:
        """S's payment hash (known once S picked its preimage, after the release when S holds)."""
        if not self.pay.get("payment_hash"):
            self.pay = self.call(self.s, "asyncpay-listpays", {"id": self.pay["id"]})["pays"][0]
        return self.pay.get("payment_hash")

    def _received(self, payment_hash: str | None) -> dict | None:
        return next((p for p in self.call(self.r, "asyncpay-listreceived")["payments"]
                     if p["payment_hash"] == payment_hash), None)

    def step_s_wakes(self) -> str:
        if self.holder is not None:  # S slept: it wakes and reconnects to its LSP
            self.s.start(self.progress)
            self.call(self.s, "connect", {"id": self.holder.id, "host": LOOPBACK, "port": self.holder.port})
        done = self.wait(lambda: (p := self.call(self.s, "asyncpay-listpays", {"id": self.pay["id"]})["pays"][0])
                         ["status"] in ("complete", "failed") and p, "S's payment to complete", timeout=90, slow=True)
        if done["status"] != "complete":
            raise DemoError(f"S's payment failed: {done.get('reason')}")
        preimage = done["payment_preimage"]
        if hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != done["payment_hash"]:
            raise DemoError(f"S's preimage {preimage} does not hash to {done['payment_hash']}")
        self.pay = done
        return f"complete; preimage {shorten(preimage, 8)} hashes to the payment hash"

    def step_stock(self) -> str:
        started = time.monotonic()
        inv = self.call(self.s, "fetchinvoice", {"offer": self.offer, "amount_msat": STOCK_AMOUNT_MSAT})
        paid = self.call(self.s, "xpay", {"invstring": inv["invoice"]})
        got = self.wait(lambda: self._received(hashlib.sha256(bytes.fromhex(paid["payment_preimage"])).hexdigest()),
                        "R to list the stock payment")
        return f"paid {got['amount_msat']} msat to R's own invoice in {seconds(time.monotonic() - started)}"

    # -- the end ------------------------------------------------------------------

    def final_state(self) -> str:
        received = self.call(self.r, "asyncpay-listreceived")["payments"]
        lines = ["Final state:",
                 f"  S  asyncpay-listpays      {self.pay['status']}, {self.pay.get('amount_msat', self.amount)} msat, "
                 f"preimage {shorten(self.pay['payment_preimage'], 8)}"]
        if self.holder is not None:
            held = self._held_row() or {}
            lines.append(f"  {self.holder.name:<2} asyncpay-listheld      {held.get('state')}")
        box = self.mailbox
        lines += [f"  {box.name:<2} asyncpay-listmailbox   {self.call(box, 'asyncpay-listmailbox')['messages']} "
                  "message(s)",
                  "  R  asyncpay-listreceived  " + ", ".join(f"{p['kind']} {p['amount_msat']} msat" for p in received)]
        return "\n".join(lines)

    def keep_instructions(self) -> str:
        cli = shutil.which("lightning-cli") or "lightning-cli"
        script = self.base / "stop.sh"
        script.write_text(stop_script(cli, [str(n.dir) for n in self.nodes], self.binaries["bitcoin-cli"],
                                      str(self.bitcoind.datadir), str(self.base)))
        lines = ["The network keeps running (--keep). Poke each node:"]
        lines += [f"  {n.name:<2} {cli} --lightning-dir={n.dir} asyncpay-status" for n in self.nodes]
        lines.append(f"  bitcoind: {self.binaries['bitcoin-cli']} -datadir={self.bitcoind.datadir} getblockcount")
        lines.append(f"Stop it all and remove {self.base}: sh {script}")
        return "\n".join(lines)

    def shutdown(self, keep_dir: bool) -> str:
        stopped = kill_all(self.nodes, self.bitcoind)
        note = f"stopped {', '.join(stopped)}" if stopped else "nothing left running"
        if keep_dir:
            return f"{note}; logs kept in {self.base}"
        shutil.rmtree(self.base, ignore_errors=True)
        return f"{note}; removed {self.base}"


def _address(node: Node) -> str:
    """A fresh on-chain address of the node's wallet (p2tr by default since v24.11)."""
    got = node.rpc.call("newaddr")
    return got.get("p2tr") or got["bech32"]


def _raise(exc: type[BaseException], *args: object):
    def handler(signum, frame):
        raise exc(*args)
    return handler


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parse_args(argv)
    plugin = plugin_script()
    missing = missing_binaries(plugin=plugin)
    if missing:
        print(missing_message(missing), file=sys.stderr)
        return EXIT_CANNOT_RUN
    binaries = {b: shutil.which(b) or b for b in REQUIRED}
    demo = Demo(out, binaries, str(plugin), args.limit, args.amount_msat, TOPOLOGIES[args.topology])
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    signal.signal(signal.SIGTERM, _raise(KeyboardInterrupt))
    # A backstop for a single RPC call that hangs; every wait checks the deadline itself.
    signal.signal(signal.SIGALRM, _raise(DemoTimeout, f"gave up: the demo's time limit ({args.limit} s) passed"))
    signal.alarm(args.limit + 10)
    code = EXIT_FAILED
    try:
        demo.run()
        code = EXIT_OK
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        demo.say("\nasyncpay demo: interrupted")
    except DemoError as e:
        demo.say(f"\nasyncpay demo FAILED after {seconds(demo.deadline.elapsed())}: {e}")
        if isinstance(e, DemoTimeout):
            demo.say("A busy machine may need more time: --limit SECONDS.")
    except Exception as e:  # an RPC answer we did not expect: one line, then clean up
        demo.say(f"\nasyncpay demo FAILED after {seconds(demo.deadline.elapsed())}: {type(e).__name__}: {e}")
    finally:
        signal.alarm(0)
        # The clean-up runs to its end: a second Ctrl-C must not leave daemons behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if code == EXIT_OK and args.keep:
            demo.say("\n" + demo.keep_instructions())
        else:
            demo.say(f"asyncpay demo: {demo.shutdown(keep_dir=args.keep)}")
            if code == EXIT_FAILED and not args.keep:
                demo.say("Run it again with --keep to keep the nodes' logs.")
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return code
