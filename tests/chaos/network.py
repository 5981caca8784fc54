"""The chaos network (docs/chaos.md), on pyln-testing's NodeFactory:

    S (wallet) -- Ls (LSP) ==== Lr (LSP) -- R1 (wallet)
                  ||             |  \\
                  Q (stock CLN)  P   R2 (wallet)

S-Ls and Lr-R* are unannounced; Ls-Lr, P-Lr and Q's two to Ls are public. Every
node but Q runs asyncpay. S hands its static-invoice payments to Ls to hold
(asyncpay-payer-lsp); R1 and R2 keep their static invoices at Lr."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from regtest import ASYNCPAY, wait_for
from test_regtest_recipient import connect_to_server, ready_offer

# Q's two channels to Ls each carry HTLCs of at most this much (setchannel
# htlcmax; askrene also caps a channel's whole flow at it), so a payment from
# Q over it must be split (MPP) by xpay over both.
Q_HTLC_MAX_MSAT = 20_000_000

# An HTLC an LSP forwarded before a kill -9 is reloaded from lightningd's
# database without its onion payload, and when it is fulfilled lightningd
# logs this BROKEN line (lightningd/coin_mvts.c new_channel_mvt_routed_hin
# returns nothing without hin->payload): CLN's coin-movement log only, after
# a fault we injected; the balances row checks the money. Only on Ls and Lr,
# the forwarding nodes we kill.
RELOADED_HTLC_BROKEN = "Unable to calculate fees collected. Not logging an inbound HTLC"

# pyln-testing fails a node with any " WARNING:" line; the run allows one
# kind, checked by invariants.peer_warnings instead: CLN's connectd lets a
# peer send one onion message per 250 ms and warns the sender when it sends
# more. A woken wallet answers its flushed mailbox at once and Lr relays two
# wallets' and P's traffic to Ls over one connection, so bursts pass it.
# Every other warning still fails the run.
RATELIMIT_WARNING = "Ratelimited onion_message"

# Options shortened so that a lost message is sent again within the settle
# time (the defaults re-send after 30-60 s, doubling); everything else is the
# plugin's default.
LSP_HOLD_OPTS = {"asyncpay-hold-check-seconds": 5, "asyncpay-hold-resend-first": 20}
PAYER_OPTS = {"asyncpay-payer-held-resend-min": 15}


@dataclass
class ChaosNode:
    name: str
    node: object  # pyln.testing LightningNode
    kind: str  # "wallet", "lsp", "payer" or "stock"
    awake: bool = True
    # Every time the node went down or came up: (monotonic time, awake).
    transitions: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.node.info["id"]

    @property
    def asyncpay(self) -> bool:
        return self.kind != "stock"

    def rpc(self, method: str, params: dict | None = None):
        return self.node.rpc.call(method, params or {})

    def awake_since(self, t: float) -> float | None:
        """The first moment at or after t when the node was up."""
        up = self.transitions[0][1] if self.transitions else True
        for when, state in self.transitions:
            if when > t:
                if up:
                    return t
                if state:
                    return when
            up = state
        return t if up else None


class Network:
    """The seven nodes, their channels, and the faults the driver injects."""

    def __init__(self, node_factory, bitcoind, cluster=None):
        self.factory, self.bitcoind = node_factory, bitcoind
        # With a replicated PostgreSQL (tests/pg_replicated.py): Ls and Lr keep their wallets
        # and asyncpay's state on its primary, and the driver restarts or fails it over.
        self.cluster = cluster
        self.nodes: dict[str, ChaosNode] = {}
        # (client, server): the client connects to the server (a wallet to
        # its LSP, as a real one would), both ways are the same channel.
        self.links: list[tuple[str, str]] = []
        self.offers: dict[str, str] = {}

    # -- building -----------------------------------------------------------

    def build(self) -> None:
        f = self.factory
        on_db, broken = {"Ls": {}, "Lr": {}}, RELOADED_HTLC_BROKEN
        if self.cluster is not None:
            for name in on_db:
                self.cluster.create_database(name.lower())
                on_db[name] = self.cluster.lightningd_options(name.lower())
            from pg_replicated import DATABASE_GONE_BROKEN

            broken += "|" + DATABASE_GONE_BROKEN
        ls = f.get_node(options={"plugin": ASYNCPAY, **LSP_HOLD_OPTS, **on_db["Ls"]}, may_reconnect=True,
                        allow_warning=True, broken_log=broken, may_fail=self.cluster is not None)
        lr = f.get_node(options={"plugin": ASYNCPAY, **on_db["Lr"]}, may_reconnect=True, allow_warning=True,
                        broken_log=broken, may_fail=self.cluster is not None)
        r1 = f.get_node(options={"plugin": ASYNCPAY}, may_reconnect=True, allow_warning=True)
        r2 = f.get_node(options={"plugin": ASYNCPAY}, may_reconnect=True, allow_warning=True)
        s = f.get_node(options={"plugin": ASYNCPAY, "asyncpay-payer-lsp": ls.info["id"], **PAYER_OPTS},
                       may_reconnect=True, allow_warning=True)
        p = f.get_node(options={"plugin": ASYNCPAY, **PAYER_OPTS}, may_reconnect=True, allow_warning=True)
        q = f.get_node(may_reconnect=True, allow_warning=True)
        for name, n, kind in (("S", s, "wallet"), ("Ls", ls, "lsp"), ("Lr", lr, "lsp"), ("R1", r1, "wallet"),
                              ("R2", r2, "wallet"), ("P", p, "payer"), ("Q", q, "stock")):
            self.nodes[name] = ChaosNode(name, n, kind)
        # (funder, fundee, sat, announced)
        channels = [("S", "Ls", 1_000_000, False), ("Ls", "Lr", 2_000_000, True), ("R1", "Lr", 0, False),
                    ("R2", "Lr", 0, False), ("P", "Lr", 1_000_000, True), ("Q", "Ls", 1_000_000, True),
                    ("Q", "Ls", 1_000_000, True)]
        self.links = list(dict.fromkeys((a, b) for a, b, _, _ in channels))
        for a, b in self.links:
            self[a].node.rpc.connect(self[b].id, "localhost", self[b].node.port)
        # Lr opens towards the wallets (their inbound liquidity); one UTXO per channel.
        opens = [(b, a, 1_000_000, ann) if sat == 0 else (a, b, sat, ann) for a, b, sat, ann in channels]
        for funder, _, sat, _ in opens:
            addr = self[funder].node.rpc.newaddr("bech32")["bech32"]
            self.bitcoind.rpc.sendtoaddress(addr, (sat + 100_000) / 10**8)
        self.bitcoind.generate_block(1)
        for funder in {o[0] for o in opens}:
            need = sum(1 for o in opens if o[0] == funder)
            wait_for(lambda n=self[funder].node, k=need: len([o for o in n.rpc.listfunds()["outputs"]
                                                             if o["status"] == "confirmed"]) >= k,
                     what=f"{funder}'s funds", timeout=120)
        txids = [self[a].node.rpc.fundchannel(self[b].id, sat, announce=ann)["txid"] for a, b, sat, ann in opens]
        self.bitcoind.generate_block(1, wait_for_mempool=txids)
        for a, b in self.links:
            k = sum(1 for c in channels if c[:2] == (a, b))
            wait_for(lambda a=a, b=b, k=k: self.channel_states(a, b) == ["CHANNELD_NORMAL"] * k,
                     what=f"{a}-{b} normal", timeout=120)
        self.bitcoind.generate_block(5)  # announcement depth
        public = sum(1 for c in channels if c[3])
        for n in self.nodes.values():
            wait_for(lambda n=n: len([c for c in n.node.rpc.listchannels()["channels"] if c["public"]])
                     >= 2 * public, what=f"gossip at {n.name}", timeout=180)
        for wallet, lsp in (("R1", "Lr"), ("R2", "Lr"), ("S", "Ls")):
            wait_for(lambda w=wallet, x=lsp: any((c.get("updates") or {}).get("remote") for c in
                                                 self[w].node.rpc.listpeerchannels(self[x].id)["channels"]),
                     what=f"{lsp}'s update at {wallet}", timeout=120)
        self["Q"].node.rpc.setchannel(self["Ls"].id, htlcmax=Q_HTLC_MAX_MSAT)
        for r in ("R1", "R2"):
            connect_to_server(self["Lr"].node, self[r].node)
            self.offers[r] = ready_offer(self[r].node, description=f"chaos {r}")["bolt12"]

    def __getitem__(self, name: str) -> ChaosNode:
        return self.nodes[name]

    def channel_states(self, a: str, b: str) -> list[str]:
        return [c["state"] for c in self[a].node.rpc.listpeerchannels(self[b].id)["channels"]]

    # -- faults ---------------------------------------------------------------

    def sleep(self, name: str) -> None:
        """A wallet goes to sleep: a clean lightningd stop."""
        n = self[name]
        n.node.stop()
        n.awake = False
        n.transitions.append((time.monotonic(), False))

    def wake(self, name: str) -> None:
        n = self[name]
        self._start(n)
        n.awake = True
        n.transitions.append((time.monotonic(), True))
        self.heal(name)

    def kill(self, name: str) -> None:
        """kill -9 of lightningd (its subdaemons and plugins go with it), then
        lightningd again on the same directory."""
        n = self[name]
        n.node.daemon.proc.kill()
        n.node.daemon.proc.wait()
        now = time.monotonic()
        n.transitions += [(now, False), (now, True)]
        self._start(n)
        self.heal(name)

    def disconnect(self, a: str, b: str) -> None:
        self[a].node.rpc.disconnect(self[b].id, force=True)

    def _start(self, n: ChaosNode) -> None:
        # A killed lightningd's subdaemons may hold its port for a moment.
        for attempt in range(3):
            try:
                n.node.start()
                return
            except Exception:
                if attempt == 2:
                    raise
                if n.node.daemon.proc is not None and n.node.daemon.proc.poll() is None:
                    n.node.daemon.proc.kill()
                    n.node.daemon.proc.wait()
                time.sleep(2)

    def supervise(self) -> list[str]:
        """What a supervisor does for the LSPs on PostgreSQL: a lightningd that exited
        (its database connection broke) is started again. The names started."""
        started = []
        for name in ("Ls", "Lr") if self.cluster is not None else ():
            n = self[name]
            if n.awake and n.node.daemon.proc is not None and n.node.daemon.proc.poll() is not None:
                now = time.monotonic()
                n.transitions += [(now, False), (now, True)]
                n.node.daemon.proc = None
                self._start(n)
                started.append(name)
        return started

    def database_failover(self) -> None:
        """The primary killed, the standby promoted, Ls and Lr moved to it: the active
        lightningd is fenced (killed) and started on the new primary, same hsm_secret."""
        self.cluster.kill_primary_and_promote()
        for name in ("Ls", "Lr"):
            n = self[name]
            if n.node.daemon.proc is not None and n.node.daemon.proc.poll() is None:
                n.node.daemon.proc.kill()
            if n.node.daemon.proc is not None:
                n.node.daemon.proc.wait()
            n.node.daemon.proc = None
            n.node.daemon.opts.update(self.cluster.lightningd_options(name.lower()))
            now = time.monotonic()
            n.transitions += [(now, False), (now, True)]
            self._start(n)

    def heal(self, only: str | None = None) -> None:
        """Reconnect every channel whose two ends are up (the client side
        dials, as a wallet does on waking)."""
        self.supervise()
        for a, b in self.links:
            if only is not None and only not in (a, b):
                continue
            if not (self[a].awake and self[b].awake):
                continue
            try:
                peers = self[a].node.rpc.listpeers(self[b].id)["peers"]
                if not (peers and peers[0]["connected"]):
                    self[a].node.rpc.connect(self[b].id, "localhost", self[b].node.port)
            except Exception:  # the other end may be restarting; the next heal retries
                pass

    def awake(self) -> list[str]:
        return [k for k, n in self.nodes.items() if n.awake]
