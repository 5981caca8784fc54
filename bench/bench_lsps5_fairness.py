"""How long an honest LSPS5 client waits for its wake-up while hostile
clients do their worst (docs/lsps5.md, "How long an honest client waits").

The scenario is tests/lsps5_storm.py's: ``--hostile`` clients with five
webhooks each on loopback HTTPS push services that trickle their head, send
``102 Processing`` forever, never answer, answer just inside the timeout, or
sit behind a name look-up that hangs; reconnect storms, HTLCs held for them,
full queues. One honest client's HTLC is held for its wake-up; the figure is
the time from the HTLC being held to its push service getting
``payment_incoming``, worst of ``--rounds``, next to the bound. The
reference, in the same run, is the same honest wake-up without hostile
clients.

Run ``python bench/bench_lsps5_fairness.py`` (the plugin's defaults: 16
senders, 5 s timeout; about two minutes) or with ``--senders 8 --timeout 1``
(the test's figures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugin"))
sys.path.insert(0, str(ROOT / "tests"))

from asyncpay.lsps.config import Lsps5Config  # noqa: E402
from lsps5_storm import run  # noqa: E402


def main() -> None:
    d = Lsps5Config()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hostile", type=int, default=50)
    ap.add_argument("--senders", type=int, default=d.lsps5_senders)
    ap.add_argument("--timeout", type=int, default=d.lsps5_http_timeout)
    ap.add_argument("--per-host", type=int, default=d.lsps5_senders_per_host)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ref").mkdir()
        ref = run(Path(tmp) / "ref", hostile=0, rounds=a.rounds, timeout=a.timeout, senders=a.senders,
                  per_host=a.per_host, warm_up=0.2)
        (Path(tmp) / "storm").mkdir()
        res = run(Path(tmp) / "storm", hostile=a.hostile, rounds=a.rounds, timeout=a.timeout,
                  senders=a.senders, per_host=a.per_host)
    base = max(ref.delays, default=float("nan"))
    worst = max(res.delays, default=float("inf"))
    print(f"LSPS5 fairness: {a.hostile} hostile clients x 5 webhooks, {a.senders} senders, "
          f"{a.per_host} per host, 1 per client, {a.timeout} s timeout, {a.rounds} rounds")
    print(f"  reference (no hostile client): worst {base:.3f} s")
    print(f"  with the hostile clients:     worst {worst:.2f} s, each {[round(x, 2) for x in res.delays]}"
          f" ({worst / base:.0f}x the reference)")
    print(f"  bound T*(3 + H // P):         {res.bound:.0f} s  [{'met' if worst <= res.bound else 'NOT met'}]")
    print(f"  honest payments completed:    {res.completed} of {res.rounds}; hostile calls made "
          f"{res.hostile_calls}, hostile HTLCs {res.hostile_htlcs}, calls dropped by the queue bounds {res.dropped}")


if __name__ == "__main__":
    main()
