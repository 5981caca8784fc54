"""The chaos driver: from a seed, one sequence of events played on the
network (docs/chaos.md), then a settle phase in which every node is up and
connected until nothing is pending.

Events: a payment (S or P with asyncpay-pay; Q, stock CLN, with fetchinvoice
and xpay while the recipient is up, in a thread so faults land while it is
in flight), a wallet (S, R1, R2) going to sleep or waking, kill -9 of any
node, a forced disconnect, one to three blocks, a pause. The run stops after
``payments`` payments or ``duration`` seconds, whichever comes first."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field

from .network import Q_HTLC_MAX_MSAT, Network

# The events that are faults (the settle time counts from the last one).
FAULTS = ("sleep", "kill", "disconnect", "mine", "db_restart", "db_failover")

WALLETS = ("S", "R1", "R2")
RECIPIENTS = ("R1", "R2")
MAX_BLOCKS = 12  # all blocks of a run: far below any HTLC's CLTV margin, so a close would be our fault
MAX_SLEEP = 45.0  # seconds a wallet sleeps at most before the driver wakes it
# Seconds a woken wallet stays up at least, as one woken by its LSP does while
# it has work: a recipient that sleeps again a few seconds after releasing
# its held HTLCs fails them at Lr (they arrive for a peer that is gone).
MIN_AWAKE = 15.0


@dataclass
class Payment:
    n: int
    payer: str
    recipient: str
    amount_msat: int
    started: float
    recipient_awake: bool
    id: str | None = None  # asyncpay-pay's id (S, P)
    payment_hash: str | None = None
    status: str = "pending"
    reason: str | None = None
    preimage: str | None = None
    completed_at: float | None = None
    mpp: bool = False  # an amount over Q's htlcmax: xpay must split it


@dataclass
class Run:
    seed: int
    payments: list[Payment] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, kind, detail)
    blocks: int = 0
    started: float = 0.0
    faults_ended: float = 0.0
    settled_at: float | None = None

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e[1] == kind)


class Driver:
    def __init__(self, net: Network, seed: int, payments: int, duration: float):
        self.net, self.rng = net, random.Random(seed)
        self.target, self.duration = payments, duration
        self.run = Run(seed)
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self._polling = False

    # -- the fault phase ------------------------------------------------------

    def play(self) -> Run:
        self.run.started = time.monotonic()
        self._polling = True
        poller = threading.Thread(target=self._poll, daemon=True)
        poller.start()
        try:
            while len(self.run.payments) < self.target and time.monotonic() - self.run.started < self.duration:
                self.step()
        finally:
            self.run.faults_ended = time.monotonic()
        return self.run

    def step(self) -> None:
        self._wake_sleepers_over(MAX_SLEEP)
        if self.net.cluster is not None:  # at least one restart and one failover, under traffic
            done = len(self.run.payments)
            if not self.run.count("db_restart") and done >= self.target // 3:
                self.database_fault(failover=False)
            elif not self.run.count("db_failover") and done >= 2 * self.target // 3:
                self.database_fault(failover=True)
        roll = self.rng.random()
        if roll < 0.45:
            self.pay()
        elif roll < 0.62:
            self.toggle_wallet()
        elif roll < 0.70:
            self.kill()
        elif roll < 0.78:
            self.disconnect()
        elif roll < 0.86:
            self.mine()
        elif roll < 0.89 and self.net.cluster is not None:
            self.database_fault()
        else:
            time.sleep(self.rng.uniform(0.5, 3.0))
        self.net.heal()

    def _event(self, kind: str, detail: str) -> None:
        self.run.events.append((time.monotonic(), kind, detail))

    def pay(self) -> None:
        recipient = self.rng.choice(RECIPIENTS)
        r_awake = self.net[recipient].awake
        payers = ["P"] + (["S"] if self.net["S"].awake else []) + (["Q"] if r_awake else [])
        payer = self.rng.choice(payers)
        mpp = payer == "Q" and self.rng.random() < 0.3
        amount = (self.rng.randrange(Q_HTLC_MAX_MSAT + 2_000_000, 2 * Q_HTLC_MAX_MSAT - 2_000_000) if mpp
                  else self.rng.randrange(10_000, 3_000_000))
        p = Payment(len(self.run.payments), payer, recipient, amount, time.monotonic(), r_awake, mpp=mpp)
        self.run.payments.append(p)
        self._event("pay", f"{payer}->{recipient} {amount}")
        if payer == "Q":
            t = threading.Thread(target=self._pay_stock, args=(p,), daemon=True)
            self.threads.append(t)
            t.start()
            return
        try:
            res = self.net[payer].rpc("asyncpay-pay", {"offer": self.net.offers[recipient], "amount_msat": amount,
                                                       "timeout": 1})
        except Exception as e:  # refused before any row exists: nothing was attempted
            p.status, p.reason = "failed", f"asyncpay-pay error: {e}"
            return
        self._update(p, res)

    def _pay_stock(self, p: Payment) -> None:
        q = self.net["Q"].node
        try:
            inv = q.rpc.fetchinvoice(self.net.offers[p.recipient], amount_msat=p.amount_msat, timeout=30)
            p.payment_hash = q.rpc.decode(inv["invoice"])["invoice_payment_hash"]
            res = q.rpc.call("xpay", {"invstring": inv["invoice"], "retry_for": 30})
            with self.lock:
                p.status, p.preimage, p.completed_at = "complete", res["payment_preimage"], time.monotonic()
        except Exception as e:
            with self.lock:
                # Known at the end from listsendpays when an invoice was fetched.
                p.status = "failed" if p.payment_hash is None else "unknown"
                p.reason = _one_line(e)

    def _update(self, p: Payment, view: dict) -> None:
        with self.lock:
            p.id = view.get("id", p.id)
            p.payment_hash = view.get("payment_hash") or p.payment_hash
            status = view.get("status")
            if status == "complete" and p.status != "complete":
                p.status, p.preimage, p.completed_at = "complete", view.get("payment_preimage"), time.monotonic()
            elif status == "failed":
                p.status, p.reason = "failed", view.get("reason")
            elif status in ("pending", "held"):
                p.status = status

    def _poll(self) -> None:
        """Notes when each asyncpay payment completes (for the wake-to-complete
        figure); a node that is down is skipped."""
        while self._polling:
            for name in ("S", "P"):
                if not self.net[name].awake:
                    continue
                try:
                    pays = {x["id"]: x for x in self.net[name].rpc("asyncpay-listpays")["pays"]}
                except Exception:
                    continue
                for p in list(self.run.payments):
                    if p.payer == name and p.id in pays:
                        self._update(p, pays[p.id])
            time.sleep(0.5)

    def toggle_wallet(self) -> None:
        name = self.rng.choice(WALLETS)
        n = self.net[name]
        if n.awake:
            if n.transitions and time.monotonic() - n.transitions[-1][0] < MIN_AWAKE:
                return
            self.net.sleep(name)
            self._event("sleep", name)
        else:
            self.net.wake(name)
            self._event("wake", name)

    def _wake_sleepers_over(self, seconds: float) -> None:
        now = time.monotonic()
        for name in WALLETS:
            n = self.net[name]
            if not n.awake and now - n.transitions[-1][0] > seconds:
                self.net.wake(name)
                self._event("wake", name)

    def kill(self) -> None:
        name = self.rng.choice(self.net.awake())
        self.net.kill(name)
        self._event("kill", name)

    def disconnect(self) -> None:
        links = [(a, b) for a, b in self.net.links if self.net[a].awake and self.net[b].awake]
        if not links:
            return
        a, b = self.rng.choice(links)
        try:
            self.net.disconnect(a, b)
        except Exception:  # already apart
            return
        self._event("disconnect", f"{a}-{b}")

    def database_fault(self, failover: bool | None = None) -> None:
        """The LSPs' PostgreSQL primary restarts (``pg_ctl restart -m fast``), or, once,
        dies (SIGKILL) and its standby is promoted (Network.database_failover)."""
        if failover is None:
            failover = self.rng.random() < 0.3
        if failover and self.net.cluster.standby is not None:
            self.net.database_failover()
            self._event("db_failover", "primary killed, standby promoted, Ls and Lr moved")
            return
        self.net.cluster.restart_primary()
        self._event("db_restart", "primary restarted")
        time.sleep(2)
        for name in self.net.supervise():
            self._event("restart", f"{name}: lightningd exited with its database connection")

    def mine(self) -> None:
        n = min(self.rng.randint(1, 3), MAX_BLOCKS - self.run.blocks)
        if n <= 0:
            return
        self.net.bitcoind.generate_block(n)
        self.run.blocks += n
        self._event("mine", str(n))

    # -- settle -----------------------------------------------------------------

    def settle(self, timeout: float) -> bool:
        """Everyone up and connected until every payment is final and no HTLC
        is left; True when that happened within ``timeout`` seconds."""
        for name in WALLETS:
            if not self.net[name].awake:
                self.net.wake(name)
                self._event("wake", name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.net.heal()
            if self._quiet():
                self.run.settled_at = time.monotonic()
                break
            time.sleep(1)
        self._polling = False
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        return self.run.settled_at is not None

    def _quiet(self) -> bool:
        if any(t.is_alive() for t in self.threads):
            return False
        with self.lock:
            if any(p.status in ("pending", "held") for p in self.run.payments if p.payer != "Q"):
                return False
        for n in self.net.nodes.values():
            for c in n.node.rpc.listpeerchannels()["channels"]:
                if c.get("htlcs") or c["state"] != "CHANNELD_NORMAL" or not c.get("peer_connected"):
                    return False
        return True

    def last_fault(self) -> float:
        faults = [t for t, kind, _ in self.run.events if kind in FAULTS]
        return max(faults, default=self.run.started)


def _one_line(e: Exception) -> str:
    err = getattr(e, "error", None)  # pyln's RpcError: {"code": ..., "message": ...}
    text = str(err.get("message") if isinstance(err, dict) else e)
    found = re.search(r"'message': '([^']*)'", text)  # an RpcError's text carries its payload first
    text = found.group(1) if found else text
    return text.splitlines()[0][:160] if text else type(e).__name__
