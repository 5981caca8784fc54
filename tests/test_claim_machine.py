"""The recipient's claim as a state machine (recipient/claim.py): random
interleavings of HTLC parts, blocks, clock ticks, restarts and new offers
against the sans-IO ``Claimer``, with lightningd played by the test.

lightningd here: an HTLC handed to the plugin waits until it gets a verdict;
a verdict for an HTLC the current process was not handed (it was handed to
a process that restarted) is lost, as the adapter drops it; on a restart
every HTLC without a verdict is handed again (``replay``), in any order and
interleaved with new ones, and without its path key (CLN v26.06 does not
store it), so the plugin cannot decrypt its hop. The store fails too
(tests/store_faults.py: the server gone for a while, the lock lost until a
restart, a commit rolled back, a commit that landed but raised), with the
adapter's side modelled as ``cln/recipient.py`` does it: an HTLC the store
could not decide stays open and is decided again by the timer; with the
store gone, a call whose time came is resolved from memory if a preimage of
its payment went out in this process, else failed. Invariants checked after
every step:

* every HTLC gets exactly one verdict (and, in the end, one at all);
* a preimage is revealed only when, at the moment it is first decided,
  every HTLC it resolves is more than the claim margin from its expiry, and
  those HTLCs still wait in lightningd and pay at least the total;
* an HTLC of a payment whose preimage was revealed is never failed (but
  for one whose store stayed unreadable until its expiry less the claim
  margin, and whose preimage went out in an earlier process: the channel
  comes first);
* no open call is past its time after a timer pass;
* a payment is recorded received once.

The CI profile runs a few dozen machines; HYPOTHESIS_PROFILE=thorough runs
10,000 (slow: run it in the background).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from asyncpay.blinded_path import EncryptedData, PaymentConstraints
from asyncpay.crypto import pubkey_of
from asyncpay.offers import InvoiceRequest, Offer
from asyncpay.open_calls import AnswerBy
from asyncpay.payment import HopPayload
from asyncpay.recipient import PAYMENT, Claimer, Fail, Htlc, RecipientConfig, Resolve, Wait
from asyncpay.recipient.claim import failure
from asyncpay.recipient.config import HTLC_FAIL_BACK_BUFFER
from asyncpay.recipient.records import READY, OfferRow
from asyncpay.storage import StoreError
from asyncpay.store import Store
from store_faults import SERVER_GONE, faulty

AMOUNT = 10_000  # the offers' amount: what a payment must cover
MARGIN = HTLC_FAIL_BACK_BUFFER


def _h(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


@dataclass(frozen=True)
class Pay:
    """A payment a payer makes: its preimage and the total its parts announce."""

    preimage: bytes
    total: int

    @property
    def payment_hash(self) -> bytes:
        return hashlib.sha256(self.preimage).digest()


class Bench:
    """A recipient's store with an offer in slot 0 and a static-invoice payment
    path for it, and HTLCs over such paths; deterministic (no randomness)."""

    def __init__(self, path: str = ":memory:", **config: int) -> None:
        self.store = Store(path, synchronous="NORMAL")
        self.config = RecipientConfig(**{"recipient_mpp_timeout": 60, **config})
        self.claimer = Claimer(self.store, self.config)
        self.records = self.claimer.records
        self.height, self.now = 800_000, 1_700_000_000
        self.paths: list[tuple[bytes, bytes]] = []  # (path_id, an invoice_request for its offer)
        self.next_id = 0
        self.live: set[tuple[str, int]] = set()  # parts handed to this process, waiting (the adapter's open calls)
        self.new_offer("coffee")

    def restart(self) -> None:
        """The process restarts: the store is kept, everything in memory is dropped."""
        self.claimer = Claimer(self.store, self.config)
        self.live = set()

    def new_offer(self, description: str) -> int:
        """``asyncpay-offer`` on slot 0 with another description: the slot's row
        now holds a new offer, whose static invoice has its own payment path.
        Returns the index of that path."""
        n = len(self.paths)
        secret = _h("issuer", description, n)
        offer = Offer(offer_amount=AMOUNT, offer_description=description, offer_issuer_id=pubkey_of(secret))
        raw = offer.encode()
        oid = self.records.issue_offer(0, raw, offer.to_string(), _h("nonce", n)[:16], self.now)
        self.records.offer_valid_until(oid, self.now + 14 * 86400)
        self.records.put_offer(OfferRow(slot=0, state=READY, description=description, amount_msat=AMOUNT,
                                        nonce=_h("nonce", n)[:16], offer=raw, bolt12=offer.to_string(),
                                        created_at=self.now, updated_at=self.now))
        path_id = _h("path", n)
        self.store.add_context(path_id, PAYMENT, oid.hex(), 0, self.now + 15 * 86400, self.now)
        payer = _h("payer", n)
        req = InvoiceRequest.from_records(offer.to_records() + [(0, _h("meta", n)[:16]), (88, pubkey_of(payer))],
                                          check=False)
        req.sign(payer)
        self.paths.append((path_id, req.encode()))
        return n

    def htlc(self, pay: Pay, amount: int, cltv_offset: int, path: int = -1, *, wrong_preimage: bool = False,
             foreign: bool = False, total: int | None = None) -> Htlc:
        """A final-hop HTLC paying ``pay`` over one of our paths (or a path not ours)."""
        path_id, req = self.paths[path]
        if foreign:
            path_id = _h("foreign", self.next_id)
        preimage = _h("wrong", pay.preimage) if wrong_preimage else pay.preimage
        payload = HopPayload(total_amount_msat=total or pay.total, invoice_request=req, keysend_preimage=preimage)
        data = EncryptedData(path_id=path_id, payment_constraints=PaymentConstraints(800_000 + 4032, 1))
        key = ("100x1x0", self.next_id)
        self.next_id += 1
        return Htlc(key, pay.payment_hash, amount, self.height + cltv_offset, payload, data)

    def next_key(self, back: int = 0) -> tuple[str, int]:
        """The key of the HTLC made ``back`` before the next one (-1: the last one)."""
        return ("100x1x0", self.next_id + back)

    def decide(self, htlc: Htlc):
        self.live.add(htlc.key)
        return self._answered(self.claimer.decide(htlc, self.height, self.now, self.live))

    def expire(self):
        return self._answered(self.claimer.expire(self.height, self.now))

    def _answered(self, verdicts):
        self.live -= {k for k, v in verdicts if not isinstance(v, Wait)}
        return verdicts


class ClaimMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.b = Bench(recipient_max_pending_payments=2, recipient_max_pending_parts=4)
        self.pays = [Pay(_h("pay", i), total) for i, total in enumerate((10_000, 10_000, 12_000, 20_000) * 2)]
        self.htlcs: dict[tuple[str, int], Htlc] = {}
        self.verdict: dict[tuple[str, int], str] = {}  # what lightningd did with each: resolve, fail, continue
        self.live: set[tuple[str, int]] = set()  # handed to the current process, no verdict yet
        self.unreplayed: list[tuple[str, int]] = []  # to be handed again after a restart
        self.revealed: set[bytes] = set()  # payment hashes whose preimage the claimer gave out
        self.steps = 0
        self.faults = faulty(self.b.store)
        self.paid: dict[bytes, bytes] = {}  # preimages handed out by this process (the adapter's memory)
        self.by: dict[tuple[str, int], AnswerBy] = {}  # live HTLC -> when it is answered at the latest
        self.retry: dict[tuple[str, int], tuple[Htlc, bool]] = {}  # the store could not decide them yet
        self.forced: set[tuple[str, int]] = set()  # failed from memory at their expiry less the margin
        self.from_memory: set[tuple[str, int]] = set()  # failed without the store
        self.decided_before: set[bytes] = set()  # claims recorded by a commit that raised

    # -- lightningd -------------------------------------------------------------------

    def deliver(self, key: tuple[str, int], replay: bool = False) -> None:
        """Hand an HTLC to the plugin. A replay comes without its path key (lightningd v26.06 does
        not store it), so the adapter cannot decrypt our hop: it asks ``knows`` instead."""
        h = self.htlcs[key]
        if replay:
            h = dataclasses.replace(h, data=EncryptedData())
        if h.payment_hash in self.paid:
            self.live.add(key)
            self.apply([(key, Resolve(self.paid[h.payment_hash]))])
            return
        try:
            ours = self._ours(h)
        except StoreError:
            ours = None
        if ours is False:
            self._not_ours(key)
            return
        self.live.add(key)
        self.by[key] = AnswerBy(2**62, h.cltv_expiry - MARGIN - 1)
        self._decide(h, ours is not None)

    def _ours(self, h: Htlc) -> bool:
        if h.data.path_id is None:  # a replay without its path key
            return self.b.claimer.knows(h.key, h.payment_hash)
        return self.b.claimer.is_ours(h.data, h.payment_hash, self.b.now)

    def _not_ours(self, key) -> None:
        assert key not in self.verdict
        # lightningd's other plugins, then lightningd, fail it: never one whose preimage is out.
        assert self.htlcs[key].payment_hash not in self.revealed, "a part of a revealed payment left to lightningd"
        self.live.discard(key)
        self.verdict[key] = "continue"

    def _decide(self, h: Htlc, checked: bool) -> None:
        """The adapter's decision for an open call; a store error keeps it open for the timer."""
        try:
            if not checked and not self._ours(h):
                self.retry.pop(h.key, None)
                self._not_ours(h.key)
                return
            # A claim recorded already (a commit that landed but raised, then maybe a restart):
            # its preimage was decided in time and is handed out now, however near the expiry.
            if self.faults.truth(lambda: self.b.claimer.preimage_out(h.payment_hash)):
                self.decided_before.add(h.payment_hash)
            verdicts = self.b.claimer.decide(h, self.b.height, self.b.now, self.live)
        except StoreError:
            event("claim: store failed, kept open")
            self.retry[h.key] = (h, True if checked else False)
            self._from_memory()  # one whose time came already is answered now
            return
        self.retry.pop(h.key, None)
        for k, v in verdicts:
            if isinstance(v, Wait) and k in self.by:
                self.by[k] = AnswerBy(min(self.by[k].seconds, v.deadline), self.by[k].height)
        self.apply(verdicts)

    def apply(self, verdicts) -> None:
        keys = [k for k, _ in verdicts]
        assert len(keys) == len(set(keys)), f"two verdicts in one batch: {verdicts}"
        for k, _ in verdicts:
            # A verdict for an HTLC that has one already: the claimer counted an HTLC that is gone
            # (its row stays after an answer from memory: the adapter has no call for it then).
            assert k not in self.verdict or k in self.from_memory, f"{k} answered twice"
        resolved: dict[bytes, list[Htlc]] = {}
        for k, v in verdicts:
            if isinstance(v, Resolve):
                h = self.htlcs[k]
                assert hashlib.sha256(v.preimage).digest() == h.payment_hash
                resolved.setdefault(h.payment_hash, []).append(h)
        for ph, hs in resolved.items():
            if ph in self.revealed:
                continue
            if ph in self.decided_before:
                self.revealed.add(ph)
                continue
            # First decision for this payment: every part it resolves leaves the margin, and pays the total.
            assert all(h.cltv_expiry - self.b.height > MARGIN for h in hs), "preimage revealed too close to expiry"
            pay = next(p for p in self.pays if p.payment_hash == ph)
            assert sum(h.amount_msat for h in hs) >= max(pay.total, AMOUNT), "claimed for less than the total"
            self.revealed.add(ph)
        for k, v in verdicts:
            event(f"verdict {type(v).__name__} {getattr(v, 'reason', '')}".strip())
            if isinstance(v, Resolve):
                self.paid[self.htlcs[k].payment_hash] = v.preimage
            if isinstance(v, Fail) and k not in self.forced:
                assert self.htlcs[k].payment_hash not in self.revealed, "failed a part of a revealed payment"
            if isinstance(v, Wait) or k not in self.live or k in self.verdict:
                continue  # waits; or the adapter has no responder for it (lightningd will replay it)
            self.live.discard(k)
            self.by.pop(k, None)
            self.verdict[k] = "resolve" if isinstance(v, Resolve) else "fail"

    # -- rules --------------------------------------------------------------------------

    @rule(p=st.integers(0, 7), amount=st.sampled_from([3_000, 4_000, 5_000, 10_000, 12_000]),
          offset=st.one_of(st.integers(MARGIN - 2, MARGIN + 12), st.sampled_from([MARGIN + 3, 144, 400])),
          path=st.integers(0, 7),
          variant=st.sampled_from(["good"] * 6 + ["wrong_preimage", "foreign", "other_total"]))
    def part(self, p: int, amount: int, offset: int, path: int, variant: str) -> None:
        pay = self.pays[p]
        h = self.b.htlc(pay, amount, offset, path % len(self.b.paths), wrong_preimage=variant == "wrong_preimage",
                        foreign=variant == "foreign", total=pay.total + 1_000 if variant == "other_total" else None)
        self.htlcs[h.key] = h
        self.deliver(h.key)

    @rule(n=st.integers(1, 6))
    def block(self, n: int) -> None:
        self.b.height += n
        self._timer()

    @rule(seconds=st.sampled_from([1, 20, 59, 61, 300]))
    def tick(self, seconds: int) -> None:
        """The adapter's MPP timer."""
        self.b.now += seconds
        self._timer()

    def _timer(self) -> None:
        """As the adapter's expire: claims the store failed tried again, then the sets
        due failed; with the store gone, the calls whose time came answered from memory."""
        for key, (h, checked) in sorted(self.retry.items()):
            if key not in self.retry:
                continue  # answered from memory meanwhile
            if key in self.live:
                self._decide(h, checked)
            else:
                self.retry.pop(key)
        try:
            verdicts = self.b.claimer.expire(self.b.height, self.b.now)
        except StoreError:
            self._from_memory()
        else:
            self.apply(verdicts)
            self._from_memory(store_up=True)  # a call the store said nothing of by its time
        for k in self.live:
            assert not self.by[k].due(self.b.height, self.b.now), f"{k} open past its time after a timer pass"

    def _from_memory(self, store_up: bool = False) -> None:
        """The store cannot be used: each call whose time came is resolved if a preimage of its
        payment went out in this process, else failed (cln/recipient.py ``_from_memory``)."""
        for k in sorted(self.live):
            if not self.by[k].due(self.b.height, self.b.now):
                continue
            h = self.htlcs[k]
            if h.payment_hash not in self.paid and store_up:
                preimage = self.b.claimer.preimage_out(h.payment_hash)
                if preimage is not None:
                    self.decided_before.add(h.payment_hash)
                    self.paid[h.payment_hash] = preimage
            if h.payment_hash in self.paid:
                self.apply([(k, Resolve(self.paid[h.payment_hash]))])
                continue
            if self.b.height > self.by[k].height:
                self.forced.add(k)
            event("failed from memory")
            self.retry.pop(k, None)
            self.from_memory.add(k)
            self.apply([(k, Fail("store_unavailable", failure(h.amount_msat, self.b.height)))])

    # -- store faults ---------------------------------------------------------------------

    @rule(seconds=st.sampled_from([5, 30, 61, 300, 3600]), blocks=st.integers(0, 12))
    def server_gone_for_a_while(self, seconds: int, blocks: int) -> None:
        """Every statement raises for ``seconds`` (``blocks`` come meanwhile); the timer runs."""
        down, self.faults.down = self.faults.down, SERVER_GONE
        for i in range(4):
            self.b.now += seconds // 4
            self.b.height += blocks // 4 + (1 if i < blocks % 4 else 0)
            self._timer()
        self.faults.down = down

    @rule(kind=st.sampled_from(["lock_lost", "commit_fails", "commit_outcome_unknown"]))
    def store_fault(self, kind: str) -> None:
        self.faults.inject(kind)  # a lost lock: until the plugin restarts and takes it again

    @rule(replay_now=st.booleans())
    def restart(self, replay_now: bool) -> None:
        self.faults.down = None  # it starts once the store can be used
        self.faults.fail_commits = self.faults.unknown_commits = 0
        self.b.restart()
        self.live.clear()
        self.paid.clear()
        self.by.clear()
        self.retry.clear()
        self.unreplayed = [k for k in self.htlcs if k not in self.verdict]
        if replay_now:
            while self.unreplayed:
                self.deliver(self.unreplayed.pop(0), replay=True)

    @precondition(lambda self: self.unreplayed)
    @rule(i=st.integers(0, 20))
    def replay(self, i: int) -> None:
        self.deliver(self.unreplayed.pop(i % len(self.unreplayed)), replay=True)

    @precondition(lambda self: len(self.b.paths) > 1)
    @rule()
    def forget_oldest_path(self) -> None:
        """The oldest offer's payment context expires and is purged."""
        self.faults.truth(lambda: self.b.store.conn.execute("DELETE FROM path_contexts WHERE path_id = ?",
                                                      (self.b.paths[0][0],)))

    @precondition(lambda self: len(self.b.paths) < 4)
    @rule()
    def new_offer(self) -> None:
        self.faults.truth(lambda: self.b.new_offer(f"offer {len(self.b.paths)}"))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def waiting_parts_leave_the_margin(self) -> None:
        pending = self.faults.truth(self.b.claimer.pending)
        for parts in pending.values():
            for part in parts:
                if part.key in self.live:
                    assert part.cltv_expiry - self.b.height > MARGIN, "a waiting part reached the margin"
        assert len(pending) <= 2 and sum(len(v) for v in pending.values()) <= 4

    @invariant()
    def received_once(self) -> None:
        self.faults.truth(self._received_once)

    def _received_once(self) -> None:
        counters = self.b.store.counters()
        received = {r[0] for r in self.b.store.conn.execute(
            "SELECT payment_hash FROM recipient_payments WHERE status = 'received'")}
        assert counters.get("recipient_payments_received", 0) == len(received)
        for ph in self.revealed:
            row = self.b.records.payment(ph)
            assert row is not None and row["status"] == "received"
        # Recorded but not revealed: only a claim whose commit raised (its parts open for the
        # timer, or failed from memory: no preimage went out).
        for ph in received - self.revealed:
            keys = {k for k, h in self.htlcs.items() if h.payment_hash == ph}
            assert keys & (set(self.retry) | self.from_memory | self.live | set(self.unreplayed)), \
                f"{ph.hex()} recorded, never revealed"

    def teardown(self) -> None:
        """lightningd replays what is left; the MPP timer runs out: every HTLC has its verdict."""
        self.restart(replay_now=True)
        self.tick(self.b.config.recipient_mpp_timeout + 1)
        missing = [k for k in self.htlcs if k not in self.verdict]
        assert not missing, f"HTLCs never answered: {missing}"
        assert not self.faults.truth(self.b.claimer.pending)
        self.b.store.close()


_ci = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci"
ClaimMachine.TestCase.settings = settings(settings.default, max_examples=40 if _ci else settings.default.max_examples,
                                          stateful_step_count=40)
TestClaimMachine = ClaimMachine.TestCase
