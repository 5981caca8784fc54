"""What the demo does and says, without a daemon: its steps, its arguments,
the message when a binary is missing, and the summary table."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Exit codes: 0 the payment went through, 1 a step failed or the time limit
# passed, 2 the demo cannot run here (argparse uses 2 for bad arguments too).
EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_LIMIT = 240  # seconds for the whole run; it takes about 1-2 minutes on 2 cores
DEFAULT_AMOUNT_MSAT = 40_000


@dataclass(frozen=True)
class Step:
    key: str
    label: str  # its name in the summary table
    title: str  # what happens, as a person reads it
    nodes: str  # where it happens


STEPS: tuple[Step, ...] = (
    Step("start", "network up",
         "Start bitcoind and four lightningd nodes, each with the asyncpay plugin", "all"),
    Step("channels", "channels open",
         "Fund the LSPs and S, open S-Ls, Ls-Lr (public) and Lr-R, mine", "S, Ls, Lr"),
    Step("gossip", "gossip",
         "Wait until the wallets S and R know the public channel Ls-Lr", "S, R"),
    Step("offer", "R's async offer",
         "R gets an async offer: paths from its LSP Lr, a static invoice stored at Lr", "Lr, R"),
    Step("r_sleeps", "R sleeps",
         "R goes to sleep (its lightningd stops)", "R"),
    Step("pay", "S pays",
         "S pays R's offer with asyncpay-pay: Lr hands out R's static invoice", "S"),
    Step("s_sleeps", "S sleeps",
         "S goes to sleep too (its lightningd stops)", "S"),
    Step("held", "held at Ls",
         "Ls holds S's HTLC; Lr's mailbox keeps held_htlc_available for R", "Ls, Lr"),
    Step("r_wakes", "R wakes, claims",
         "R wakes: it releases the payment, Ls forwards the HTLC, R claims it", "R, Ls"),
    Step("s_wakes", "S wakes, complete",
         "S wakes: its payment is complete, with the preimage", "S"),
    Step("stock", "stock CLN payment",
         "For comparison, R online: S pays R the stock CLN way (fetchinvoice + xpay)", "S, R"),
)


@dataclass(frozen=True)
class Channel:
    opener: str  # funds it
    peer: str
    announce: bool
    sat: int


@dataclass(frozen=True)
class Topology:
    """A network the demo can run (docs/architecture.md, "Topologies")."""

    name: str
    picture: str  # one line, as the run's header shows it
    nodes: tuple[tuple[str, str], ...]  # (name, its part), in start order; S and R always
    channels: tuple[Channel, ...]
    servers: tuple[str, ...]  # R's static invoice servers
    holder: str | None  # S's holding LSP (asyncpay-payer-lsp); None: S stays online and holds its own HTLC
    down: str | None  # a server that stops for good before R sleeps
    steps: tuple[Step, ...]

    @property
    def survivor(self) -> str:
        """The server R reaches when it wakes (its mailbox keeps R's mail)."""
        return next(x for x in reversed(self.servers) if x != self.down)


TWO_LSPS = Topology(
    "two-lsps", "S (wallet) -- Ls (LSP) -- Lr (LSP) -- R (wallet); S-Ls and Lr-R unannounced",
    (("S", "wallet that pays (its LSP is Ls)"), ("Ls", "S's LSP: holds S's HTLC"),
     ("Lr", "R's LSP: static invoice server and mailbox"), ("R", "wallet that is paid, often asleep")),
    (Channel("Ls", "Lr", True, 1_000_000), Channel("S", "Ls", False, 500_000), Channel("Lr", "R", False, 500_000)),
    ("Lr",), "Ls", None, STEPS)

ONE_LSP = Topology(
    "one-lsp", "S (wallet) -- L (LSP) -- R (wallet); both channels unannounced",
    (("S", "wallet that pays (its LSP is L)"),
     ("L", "the LSP of both: holds S's HTLC, static invoice server and mailbox for R"),
     ("R", "wallet that is paid, often asleep")),
    (Channel("S", "L", False, 500_000), Channel("L", "R", False, 500_000)),
    ("L",), "L", None, (
        Step("start", "network up", "Start bitcoind and three lightningd nodes, each with the asyncpay plugin",
             "all"),
        Step("channels", "channels open", "Fund L and S, open S-L and L-R (both unannounced), mine", "S, L"),
        Step("gossip", "L's update", "Wait until R has L's channel_update (its payment path's fees)", "R"),
        Step("offer", "R's async offer",
             "R gets an async offer: paths from L, a static invoice stored at L", "L, R"),
        Step("r_sleeps", "R sleeps", "R goes to sleep (its lightningd stops)", "R"),
        Step("pay", "S pays", "S pays R's offer with asyncpay-pay: L hands out R's static invoice", "S"),
        Step("s_sleeps", "S sleeps", "S goes to sleep too (its lightningd stops)", "S"),
        Step("held", "held at L",
             "L holds S's HTLC in its hop of R's blinded path; its mailbox keeps held_htlc_available for R", "L"),
        Step("r_wakes", "R wakes, claims",
             "R wakes: it releases the payment, L forwards the HTLC over R's path, R claims it", "R, L"),
        Step("s_wakes", "S wakes, complete", "S wakes: its payment is complete, with the preimage", "S"),
        Step("stock", "stock CLN payment",
             "For comparison, R online: S pays R the stock CLN way (fetchinvoice + xpay)", "S, R"),
    ))

REDUNDANT = Topology(
    "redundant", "S (payer) == L1 (LSP) -- R (wallet) and S == L2 (LSP) -- R; R's channels unannounced",
    (("S", "payer, online"), ("L1", "one of R's two LSPs (stops for good)"),
     ("L2", "R's other LSP: static invoice server and mailbox"), ("R", "wallet that is paid, often asleep")),
    (Channel("S", "L1", True, 500_000), Channel("S", "L2", True, 500_000), Channel("L1", "R", False, 500_000),
     Channel("L2", "R", False, 500_000)),
    ("L1", "L2"), None, "L1", (
        Step("start", "network up", "Start bitcoind and four lightningd nodes, each with the asyncpay plugin",
             "all"),
        Step("channels", "channels open",
             "Fund S, L1 and L2, open S-L1, S-L2 (public), L1-R and L2-R, mine", "S, L1, L2"),
        Step("gossip", "gossip", "Wait until R knows S's public channels and both LSPs' updates", "R"),
        Step("offer", "R's async offer",
             "R registers one offer at both LSPs: paths from each, the static invoice stored at each", "L1, L2, R"),
        Step("lsp_down", "L1 down", "L1 stops for good", "L1"),
        Step("r_sleeps", "R sleeps", "R goes to sleep (its lightningd stops)", "R"),
        Step("pay", "S pays",
             "S pays R's offer with asyncpay-pay over both offer paths: L2 hands out R's static invoice", "S"),
        Step("held", "mail at L2", "S waits for the release; L2's mailbox keeps held_htlc_available for R", "S, L2"),
        Step("r_wakes", "R wakes, claims",
             "R wakes reaching L2 only: it releases, S pays over the path through L2, R claims it", "R, L2"),
        Step("s_wakes", "complete", "S's payment is complete, with the preimage", "S"),
    ))

TOPOLOGIES = {t.name: t for t in (TWO_LSPS, ONE_LSP, REDUNDANT)}
DEFAULT_TOPOLOGY = TWO_LSPS.name


def step_line(index: int, step: Step, steps: Sequence[Step] = STEPS) -> str:
    """The line announcing a step: ``[ 3/11] <title>  (at <nodes>)``."""
    width = len(str(len(steps)))
    return f"[{index + 1:>{width}}/{len(steps)}] {step.title}  (at {step.nodes})"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="asyncpay-demo",
        description="Run an async payment on a private regtest network (bitcoind and three or four "
                    "lightningd nodes on loopback, in a temporary directory) and explain each step.")
    parser.add_argument("--keep", action="store_true",
                        help="leave the network running at the end and print how to reach and stop each node")
    parser.add_argument("--limit", type=_positive, default=DEFAULT_LIMIT, metavar="SECONDS",
                        help=f"give up after this many seconds in all (default {DEFAULT_LIMIT})")
    parser.add_argument("--amount-msat", type=_positive, default=DEFAULT_AMOUNT_MSAT, metavar="MSAT",
                        help=f"amount of the async payment (default {DEFAULT_AMOUNT_MSAT})")
    parser.add_argument("--topology", choices=list(TOPOLOGIES), default=DEFAULT_TOPOLOGY,
                        help="two-lsps: S -- Ls -- Lr -- R (the payer's LSP holds, the recipient's keeps the "
                             "mail); one-lsp: S -- L -- R (one LSP serves both wallets); redundant: R's offer "
                             "at two LSPs, one of which stops for good (default %(default)s)")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


# The daemons, and bitcoin-cli, which lightningd's bcli plugin runs.
REQUIRED = ("lightningd", "bitcoind", "bitcoin-cli")


def plugin_script(executable: str = sys.executable) -> str | None:
    """The ``asyncpay`` console script installed with this package: next to
    this interpreter (a venv), else on PATH."""
    beside = Path(executable).parent / "asyncpay"
    return str(beside) if beside.is_file() else shutil.which("asyncpay")


def missing_binaries(which: Callable[[str], str | None] = shutil.which,
                     plugin: str | None = "asyncpay") -> list[str]:
    missing = [b for b in REQUIRED if which(b) is None]
    return missing + ([] if plugin else ["asyncpay"])


def missing_message(missing: Sequence[str]) -> str:
    """Which programs are missing and how to get each; the demo then exits 2."""
    how = {
        "lightningd": "Core Lightning v26: build it from source (https://github.com/ElementsProject/lightning, "
                      "tag v26.x: ./configure && make && sudo make install; see doc/getting-started)",
        "bitcoind": "Bitcoin Core (or Knots): your distribution's package or https://bitcoincore.org/en/download/",
        "bitcoin-cli": "comes with bitcoind (lightningd runs it to talk to bitcoind)",
        "asyncpay": "the plugin's console script: pip install . in the asyncpay repository (same venv as this)",
    }
    lines = [f"asyncpay-demo cannot run: {', '.join(missing)} not found on PATH."]
    lines += [f"  {name}: {how.get(name, 'install it')}" for name in missing]
    lines.append("Then put the directory holding them first on PATH, e.g. "
                 "PATH=/opt/regtest/bin:$PATH asyncpay-demo")
    return "\n".join(lines)


def seconds(value: float) -> str:
    return f"{value:.1f} s"


def summary_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Columns padded to their widest cell, a rule under the headers."""
    cells = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def shorten(text: str, keep: int = 24) -> str:
    """A long id or bolt12 string as its head and tail."""
    return text if len(text) <= 2 * keep + 3 else f"{text[:keep]}...{text[-8:]}"
