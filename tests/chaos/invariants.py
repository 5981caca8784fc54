"""The books at the end of a chaos run (docs/chaos.md): each check gives a
row (name, ok, detail); ``table`` prints them with the run's figures."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import statistics
from collections import Counter
from pathlib import Path

from .driver import FAULTS, Run
from .network import RATELIMIT_WARNING, Network

DOCS_RPC = Path(__file__).resolve().parents[2] / "docs" / "rpc.md"


def balances(net: Network) -> dict[str, int]:
    """Each node's side of all its channels, in msat."""
    return {name: sum(c["to_us_msat"] for c in n.node.rpc.listpeerchannels()["channels"])
            for name, n in net.nodes.items()}


def _sendpays(node) -> list[dict]:
    return node.rpc.listsendpays()["payments"]


def resolve_stock(net: Network, run: Run) -> None:
    """Q's payments whose xpay call did not come back (Q killed under it):
    their outcome is what listsendpays says."""
    parts = _sendpays(net["Q"].node)
    # A part lightningd recorded but had not committed when it was killed stays
    # "pending" with no HTLC for ever (CLN v26.06): Q has no plugin to fail it
    # (asyncpay's payer does, cln/payer.py ORPHAN_LOOKS), so the run does.
    out = {h["payment_hash"] for c in net["Q"].node.rpc.listpeerchannels()["channels"] for h in c.get("htlcs") or []}
    for x in parts:
        if x["status"] == "pending" and x["payment_hash"] not in out:
            x["status"] = "failed"
    for p in run.payments:
        if p.payer == "Q" and p.status == "unknown":
            mine = [x for x in parts if x["payment_hash"] == p.payment_hash]
            if any(x["status"] == "complete" for x in mine):
                p.status = "complete"
                p.preimage = next(x["payment_preimage"] for x in mine if x["status"] == "complete")
            elif mine and all(x["status"] == "failed" for x in mine):
                p.status, p.reason = "failed", (p.reason or "") + " (parts failed)"
            elif not mine:
                p.status = "failed"


def check(net: Network, run: Run, before: dict[str, int]) -> list[tuple[str, bool, str]]:
    rows: list[tuple[str, bool, str]] = []
    received = {r: {x["payment_hash"]: x for x in net[r].rpc("asyncpay-listreceived")["payments"]}
                for r in ("R1", "R2")}
    sends = {name: _sendpays(net[name].node) for name in ("S", "P", "Q")}
    plugin_pays = {name: {x["id"]: x for x in net[name].rpc("asyncpay-listpays")["pays"]} for name in ("S", "P")}

    # 1. every asyncpay-pay final; the plugin's view agrees with ours.
    open_ = [p.n for p in run.payments if p.payer != "Q" and p.id
             and plugin_pays[p.payer][p.id]["status"] not in ("complete", "failed")]
    extra = [i for name in ("S", "P") for i, x in plugin_pays[name].items()
             if x["status"] not in ("complete", "failed")]
    rows.append(("every asyncpay-pay complete or failed", not open_ and not extra,
                 f"{sum(len(v) for v in plugin_pays.values())} pays, pending: {open_ or extra or 'none'}"))
    for p in run.payments:  # the final word is the plugin's
        if p.payer != "Q" and p.id:
            view = plugin_pays[p.payer][p.id]
            p.status, p.reason = view["status"], view.get("reason")
            p.preimage, p.payment_hash = view.get("payment_preimage"), view.get("payment_hash")
    unresolved = [p.n for p in run.payments if p.status not in ("complete", "failed")]
    rows.append(("every payment resolved (Q's by listsendpays)", not unresolved, f"unresolved: {unresolved or 'none'}"))

    # 2. each complete: preimage hashes to the hash, the recipient has it.
    bad = []
    for p in run.payments:
        if p.status != "complete":
            continue
        got = received[p.recipient].get(p.payment_hash)
        if (p.preimage is None or hashlib.sha256(bytes.fromhex(p.preimage)).hexdigest() != p.payment_hash
                or got is None or got["payment_preimage"] != p.preimage or got["amount_msat"] < p.amount_msat):
            bad.append(p.n)
    done = sum(p.status == "complete" for p in run.payments)
    rows.append(("complete => preimage ok, recipient has it", not bad, f"{done} complete, bad: {bad or 'none'}"))

    # 3. debited iff credited, per payment; nothing paid twice; no stray receipt.
    mismatch, twice = [], []
    ours = {p.payment_hash for p in run.payments if p.payment_hash}
    for p in run.payments:
        if not p.payment_hash:
            continue
        parts = [x for x in sends[p.payer] if x["payment_hash"] == p.payment_hash]
        debited = any(x["status"] == "complete" for x in parts)
        credited = p.payment_hash in received[p.recipient]
        if debited != credited or debited != (p.status == "complete"):
            mismatch.append(f"#{p.n} debited={debited} credited={credited} status={p.status}")
        if len({x.get("groupid") for x in parts if x["status"] == "complete"}) > 1:
            twice.append(p.n)
    stray = [h for r in received.values() for h in r if h not in ours]
    hashes = [p.payment_hash for p in run.payments if p.payment_hash]
    dup = [h for h, k in Counter(hashes).items() if k > 1]
    rows.append(("payer debited iff recipient credited", not mismatch, "; ".join(mismatch) or "all agree"))
    rows.append(("nothing paid twice, no stray receipt", not (twice or stray or dup),
                 f"twice: {twice or 'none'}, stray: {len(stray)}, reused hash: {len(dup)}"))

    # 4. money: each node's channel balance moved by exactly what it paid,
    # received or earned in fees.
    after = balances(net)
    expect = {name: 0 for name in net.nodes}
    for name in ("S", "P", "Q"):
        expect[name] -= sum(x["amount_sent_msat"] for x in sends[name] if x["status"] == "complete")
    for r in ("R1", "R2"):
        expect[r] += sum(x["amount_msat"] for x in received[r].values())
    for lsp in ("Ls", "Lr"):
        fwd = net[lsp].node.rpc.listforwards(status="settled")["forwards"]
        expect[lsp] += sum(x["in_msat"] - x["out_msat"] for x in fwd)
    off = {k: (after[k] - before[k], expect[k]) for k in net.nodes if after[k] - before[k] != expect[k]}
    total = sum(after.values()) - sum(before.values())
    rows.append(("balances move by sent / received / fees", not off and total == 0,
                 f"off: {off or 'none'}, total drift {total} msat"))

    # 5. channels: all normal, no HTLC left.
    states, htlcs = Counter(), 0
    for n in net.nodes.values():
        for c in n.node.rpc.listpeerchannels()["channels"]:
            states[c["state"]] += 1
            htlcs += len(c.get("htlcs") or [])
    rows.append(("every channel CHANNELD_NORMAL, no HTLC left", set(states) == {"CHANNELD_NORMAL"} and htlcs == 0,
                 f"states {dict(states)}, htlcs {htlcs}"))

    # 6. stores: integrity, and counters that explain every drop.
    documented = set(re.findall(r"`([a-z_]+)`", DOCS_RPC.read_text()))
    problems, drops = [], Counter()
    for n in net.nodes.values():
        if not n.asyncpay:
            continue
        st = n.rpc("asyncpay-status")
        for reason, v in ((st.get("recipient") or {}).get("claims_failed") or {}).items():
            drops[f"{n.name}:claim {reason}"] += v  # HTLCs of ours we failed, and why
        ok, counters, queued = _store_books(st["database"])
        if ok != "ok":
            problems.append(f"{n.name}: integrity {ok}")
        buffered = counters.get("mailbox_buffered", 0)
        out = sum(counters.get(k, 0) for k in ("mailbox_flushed", "mailbox_expired", "mailbox_evicted")) + queued
        if buffered != out:
            problems.append(f"{n.name}: mailbox buffered {buffered} != flushed+expired+evicted+queued {out}")
        for k, v in counters.items():
            for prefix in ("dropped_", "mailbox_dropped_"):
                if k.startswith(prefix) and v:
                    reason = k[len(prefix):]
                    drops[f"{n.name}:{reason}"] += v
                    if reason not in documented:
                        problems.append(f"{n.name}: undocumented drop reason {reason}")
    rows.append(("stores intact, every drop counted and documented", not problems,
                 "; ".join(problems) or f"drops: {dict(drops) or 'none'}"))
    return rows


def _store_books(database: str) -> tuple[str, dict[str, int], int]:
    """(integrity, counters, queued mail) of a node's store, read as another client."""
    if database.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(database) as db:  # PostgreSQL checks its pages itself: nothing to run
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            return "ok", counters, db.execute("SELECT COUNT(*) FROM mailbox").fetchone()[0]
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        return ok, counters, db.execute("SELECT COUNT(*) FROM mailbox").fetchone()[0]
    finally:
        db.close()


def peer_warnings(net: Network) -> tuple[tuple[str, bool, str], Counter]:
    """Every " WARNING:" line of every node's log (what pyln-testing would
    fail on) must be a peer's onion-message rate limit; those are counted."""
    other, limited = [], Counter()
    for name, n in net.nodes.items():
        for line in (Path(n.node.daemon.lightning_dir) / "log").read_text(errors="replace").splitlines():
            if " WARNING:" not in line:
                continue
            if RATELIMIT_WARNING in line:
                limited[name] += 1
            else:
                other.append(f"{name}: {line[line.index(' WARNING:'):][:120]}")
    return ("no peer warning but onion-message rate limits", not other, "; ".join(other[:3]) or "none"), limited


def figures(net: Network, run: Run, limited: Counter | None = None) -> list[tuple[str, str]]:
    pays = run.payments
    by_payer = Counter(p.payer for p in pays)
    failed = Counter(_reason(p.reason) for p in pays if p.status == "failed")
    parts = Counter()
    for x in net["Q"].node.rpc.listsendpays()["payments"]:
        if x["status"] == "complete":
            parts[x["payment_hash"]] += 1
    mpp_done = sum(1 for p in pays if p.payer == "Q" and parts.get(p.payment_hash, 0) > 1)
    waits = []
    for p in pays:
        if p.recipient_awake or p.status != "complete" or p.completed_at is None:
            continue
        r_up = net[p.recipient].awake_since(p.started)
        both = max(x for x in (r_up, net[p.payer].awake_since(r_up or p.started)) if x is not None)
        waits.append(max(0.0, p.completed_at - both))
    kills = Counter(d for _, k, d in run.events if k == "kill")
    settle = f"{run.settled_at - max(_last_fault(run), run.faults_ended):.1f} s" if run.settled_at else "not settled"
    return [
        ("payments tried", f"{len(pays)} ({', '.join(f'{k} {v}' for k, v in sorted(by_payer.items()))}); "
                           f"over Q's htlcmax: {sum(p.mpp for p in pays)}, paid in several parts: {mpp_done}"),
        ("completed", str(sum(p.status == "complete" for p in pays))),
        ("failed", f"{sum(failed.values())}" + (": " + "; ".join(f"{k} x{v}" for k, v in failed.items())
                                                 if failed else "")),
        ("crashes injected (kill -9)",
         f"{sum(kills.values())} ({', '.join(f'{k} {v}' for k, v in sorted(kills.items()))})"),
        ("sleeps / wakes / disconnects / blocks",
         f"{run.count('sleep')} / {run.count('wake')} / {run.count('disconnect')} / {run.blocks}"),
        ("recipient wake -> complete", _spread(waits)),
        *([("database restarts / failovers (lightningd restarted)",
            f"{run.count('db_restart')} / {run.count('db_failover')} ({run.count('restart')})")]
          if run.count("db_restart") or run.count("db_failover") else []),
        ("onion-message rate-limit warnings", ", ".join(f"{k} {v}" for k, v in sorted((limited or {}).items()))
         or "0"),
        ("fault phase", f"{run.faults_ended - run.started:.0f} s"),
        ("settle after the last fault", settle),
    ]


def _last_fault(run: Run) -> float:
    return max((t for t, k, _ in run.events if k in FAULTS), default=run.started)


def _spread(xs: list[float]) -> str:
    if not xs:
        return "n=0"
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]
    return f"median {statistics.median(xs):.1f} s, p99 {p99:.1f} s (n={len(xs)})"


def _reason(reason: str | None) -> str:
    # Ids, hashes and numbers vary between payments that failed alike.
    text = re.sub(r"[0-9a-f]{16,}", "…", reason or "no reason")
    return re.sub(r"\d+", "N", text)[:100]


def table(seed: int, payments: int, duration: float, rows: list[tuple[str, bool, str]],
          figs: list[tuple[str, str]]) -> str:
    w = max(len(r[0]) for r in rows + [(f[0], True, "") for f in figs])
    out = [f"chaos run: seed {seed}, payments {payments}, duration {duration:.0f} s", "",
           f"{'invariant':<{w}}  result  detail"]
    out += [f"{name:<{w}}  {'ok' if ok else 'FAIL':<6}  {detail}" for name, ok, detail in rows]
    out += ["", f"{'figure':<{w}}  value"]
    out += [f"{name:<{w}}  {value}" for name, value in figs]
    out.append("")
    out.append("PASS" if all(ok for _, ok, _ in rows) else "FAIL")
    return "\n".join(out)
