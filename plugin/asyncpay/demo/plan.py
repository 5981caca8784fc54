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


def step_line(index: int, step: Step) -> str:
    """The line announcing a step: ``[ 3/11] <title>  (at <nodes>)``."""
    width = len(str(len(STEPS)))
    return f"[{index + 1:>{width}}/{len(STEPS)}] {step.title}  (at {step.nodes})"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="asyncpay-demo",
        description="Run an async payment on a private regtest network (bitcoind and four lightningd "
                    "nodes on loopback, in a temporary directory) and explain each step.")
    parser.add_argument("--keep", action="store_true",
                        help="leave the network running at the end and print how to reach and stop each node")
    parser.add_argument("--limit", type=_positive, default=DEFAULT_LIMIT, metavar="SECONDS",
                        help=f"give up after this many seconds in all (default {DEFAULT_LIMIT})")
    parser.add_argument("--amount-msat", type=_positive, default=DEFAULT_AMOUNT_MSAT, metavar="MSAT",
                        help=f"amount of the async payment (default {DEFAULT_AMOUNT_MSAT})")
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
