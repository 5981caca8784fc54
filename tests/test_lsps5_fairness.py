"""No client can starve another's wake-up (docs/lsps5.md, "How long an
honest client waits"): 50 hostile clients with trickling, 102-forever,
silent, just-in-time and slow-DNS push services, full queues and reconnect
storms, and one honest client whose HTLC is held for its wake-up. Its
payment_incoming must reach its push service within the stated bound and
its payment must go on, every round."""

from __future__ import annotations

from lsps5_storm import run, wait_bound

HOSTILE, SENDERS, TIMEOUT = 50, 8, 1


def test_an_honest_wake_up_arrives_within_the_bound_despite_50_hostile_clients(tmp_path):
    result = run(tmp_path, hostile=HOSTILE, rounds=3, timeout=TIMEOUT, senders=SENDERS)
    worst = max(result.delays, default=float("inf"))
    print(f"\nhonest payment_incoming: worst {worst:.2f} s, all {[round(d, 2) for d in result.delays]}, "
          f"bound {result.bound:.0f} s ({HOSTILE} hostile clients, {SENDERS} senders, {TIMEOUT} s timeout); "
          f"hostile calls made {result.hostile_calls}, calls dropped by the bounds {result.dropped}")
    assert result.bound == wait_bound(TIMEOUT, SENDERS, HOSTILE) == 9
    assert result.rounds == 3 and len(result.delays) == 3, "a payment_incoming never arrived"
    assert worst <= result.bound
    assert result.completed == 3, "the honest payment did not go on"
    # The storm was one: hostile services were called and the queue was full.
    assert result.hostile_calls > SENDERS and result.dropped > 0
    assert result.stopped_cleanly
