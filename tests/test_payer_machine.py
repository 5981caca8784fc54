"""The sans-IO payer under random events (hypothesis state machine).

A fake adapter carries out the payer's actions as ``cln/payer.py`` does:
``PayInvoice`` goes to "xpay", ``PayStatic`` tries each path with a route
from an askrene-like model (honest, or greedy: ignoring the limits it was
given) checked with ``payer/budget.py`` before it would inject. A fake
lightningd keeps its ledger of HTLCs across restarts of the plugin.

After every step:

* nothing was ever sent above the payment's amount plus the cap computed
  here from the settings (not from the action), nor locked for more blocks
  than ``payer_max_cltv``;
* no payment ever had two payments in flight, and none started after it
  completed; no payment completed twice;
* every invoice paid was bound to our request (its request records, its
  amount, its issuer), every static payment carried our request and amount.

Runs small under the "ci" profile; HYPOTHESIS_PROFILE=thorough for many
examples (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from asyncpay.actions import InjectOnion
from asyncpay.blinded_path import BlindedPayInfo
from asyncpay.crypto import pubkey_of
from asyncpay.endpoint import Delivered, Dropped, Endpoint
from asyncpay.offers import Invoice, InvoiceRequest, Offer
from asyncpay.offers.invoice_error import InvoiceError
from asyncpay.onion_message import OnionMessagePayload, ReleaseHeldHtlc
from asyncpay.payer import Payer, PayerConfig, PayError, PayInvoice, PayStatic
from asyncpay.payer.budget import OverBudget, check_route, check_sent, screen
from asyncpay.payer.payer import KNOWN_INVOICE_FEATURES, RELEASE, REPLY, invreq_records, required_unknown
from asyncpay.payment.route import RouteHop
from asyncpay.store import Store
from test_payer import ISSUER, NOW, an_offer, invoice_for, static_with

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")

CI = os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci"
LSP = pubkey_of(bytes([0x44]) * 32)

# Mostly payable paths; some over the fee cap, over the CLTV cap, or with
# unknown required payinfo features (bit 0, or bit 20).
payinfos = st.builds(
    BlindedPayInfo,
    fee_base_msat=st.one_of(st.integers(0, 2000), st.integers(0, 3_000_000)),
    fee_proportional_millionths=st.one_of(st.integers(0, 1000), st.integers(0, 100_000)),
    cltv_expiry_delta=st.one_of(st.integers(0, 300), st.integers(0, 4000)),
    htlc_minimum_msat=st.just(1),
    htlc_maximum_msat=st.just(10**12),
    features=st.sampled_from([b"", b"", b"", b"\x02", b"\x01", b"\x10\x00\x00"]),
)
# None, optional bits, basic_mpp required (known), unknown required bits.
invoice_features = st.sampled_from([None, None, None, b"\x02", bytes([0x01, 0, 0]), bytes([0x10, 0, 0]), b"\x01"])
# (offer amount, amount asked): mostly payable, sometimes refused (below the offer, none at all).
amounts = st.one_of(
    st.tuples(st.none(), st.integers(1, 10**8)),
    st.tuples(st.integers(1, 10**8), st.none()),
    st.tuples(st.one_of(st.none(), st.integers(1, 10**8)), st.one_of(st.none(), st.integers(1, 10**8))),
)


class PayerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.path = os.path.join(self.dir.name, "payer.sqlite3")
        self.now, self.height = NOW, 800_000
        self.requests: dict[str, tuple[bytes, int]] = {}  # payment id -> (our invoice_request, amount)
        self.ledger: dict[bytes, tuple[str, bytes | None]] = {}  # lightningd's HTLCs: hash -> (status, preimage)
        self.inflight: dict[str, bytes] = {}  # payment id -> payment hash of the one payment out
        self.completed: dict[str, int] = {}  # payment id -> times completed
        self.preimages: dict[bytes, bytes] = {}  # the recipients' invoice preimages, by hash
        self.sent = 0
        # Payment ids, nonces and preimages from a seeded generator: the same
        # choices give the same run (hypothesis replays and shrinks runs).
        self.rng = random.Random(0).randbytes

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    # -- set-up and restarts -----------------------------------------------------

    @initialize(lsp=st.booleans(), base=st.integers(0, 10_000), ppm=st.integers(0, 20_000),
                max_cltv=st.integers(50, 3000), hold=st.integers(0, 1500), grace=st.sampled_from([0, 2]),
                rnd=st.randoms(use_true_random=False))
    def setup(self, lsp, base, ppm, max_cltv, hold, grace, rnd):
        self.rnd = rnd  # askrene's choices
        hold = min(hold, max_cltv - 2)
        self.config = PayerConfig(payer_max_fee_base_msat=base, payer_max_fee_ppm=ppm, payer_max_cltv=max_cltv,
                                  payer_hold_blocks=hold, payer_invoice_grace=grace,
                                  payer_lsp=LSP.hex() if lsp else None)
        self.config.validate()
        self.store = Store(self.path, synchronous="NORMAL")  # no fsync per step: a test
        self.boot()

    def boot(self) -> None:
        endpoint = Endpoint(self.store, pubkey_of(bytes([0x33]) * 32), bytes([0x55]) * 32, self.rng)
        self.payer = Payer(self.store, endpoint, self.config, bytes([0x66]) * 32, lambda intro: intro.node_id)

    @rule(data=st.data())
    def restart(self, data):
        """The plugin stops (memory dropped, store kept); lightningd may
        settle or fail our HTLCs meanwhile; on start the adapter's resume."""
        for pid, h in list(self.inflight.items()):
            status = data.draw(st.sampled_from(["pending", "complete", "failed"]))
            self.ledger[h] = (status, self.ledger[h][1])
            if status != "pending":
                del self.inflight[pid]
        self.store.close()
        self.store = Store(self.path, synchronous="NORMAL")  # no fsync per step: a test
        self.boot()
        for row in self.payer.paying():  # PayerRole.resume
            status, preimage = self.ledger.get(row.payment_hash, ("absent", None))
            if status == "complete":
                self._complete(row.id, preimage)
            elif status != "pending":
                self.execute([self.payer.retry(row)])
        self.execute(self.payer.resume_holds(self.now))

    # -- payments and answers --------------------------------------------------------

    @rule(amounts=amounts)
    def start(self, amounts):
        offer_amount, amount = amounts
        offer = an_offer(offer_amount=offer_amount)
        try:
            row, actions = self.payer.start(offer.to_string(), amount, None, self.now)
        except PayError:
            assert amount is None and offer_amount is None or (amount or 0) < (offer_amount or 0)
            return
        self.requests[row.id] = (row.invreq, row.amount_msat)
        self.execute(actions)

    def _deliver(self, kind: str, pid: str, **payload) -> None:
        d = Delivered(kind, pid, None, OnionMessagePayload(**payload), os.urandom(32))
        try:
            self.execute(self.payer.handle(d, self.now))
        except Dropped as e:
            event(f"dropped {e.reason}")

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), variant=st.sampled_from(["good", "good", "good", "other_request", "tampered_amount",
                                                           "other_signer"]),
          features=invoice_features)
    def answer_invoice(self, data, variant, features):
        pid = data.draw(st.sampled_from(sorted(self.requests)))
        req, amount = self.requests[pid]
        if variant == "other_request":
            others = [r for p, (r, _) in self.requests.items() if p != pid]
            req = others[0] if others else self._foreign_request()
        preimage = os.urandom(32)
        self.preimages[hashlib.sha256(preimage).digest()] = preimage
        inv = invoice_for(req, bytes([8]) * 32 if variant == "other_signer" else ISSUER,
                          amount + 1 if variant == "tampered_amount" else amount, invoice_features=features,
                          invoice_payment_hash=hashlib.sha256(preimage).digest())
        self._deliver(REPLY, pid, invoice=inv.encode())

    @staticmethod
    def _foreign_request() -> bytes:
        secret = os.urandom(32)
        req = InvoiceRequest.from_records(an_offer().to_records() + [(0, os.urandom(16)), (88, pubkey_of(secret))],
                                          check=False)
        req.sign(secret)
        return req.encode()

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), infos=st.lists(payinfos, min_size=1, max_size=3), features=invoice_features,
          same_offer=st.sampled_from([True, True, True, False]))
    def answer_static(self, data, infos, features, same_offer):
        pid = data.draw(st.sampled_from(sorted(self.requests)))
        row = self.payer.records.get(pid)
        offer = Offer.decode(row.offer) if same_offer else an_offer(offer_description="another")
        self._deliver(REPLY, pid, static_invoice=static_with(offer, infos, features=features).encode())

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def answer_invoice_error(self, data):
        pid = data.draw(st.sampled_from(sorted(self.requests)))
        self._deliver(REPLY, pid, invoice_error=InvoiceError(error="no").encode())

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), how=st.sampled_from(["own", "own", "over_reply_path", "unknown_payment"]))
    def release(self, data, how):
        """Own: over a release path we minted (replays included). Foreign:
        over a reply path, or for a payment we never made."""
        minted = [r[0] for r in self.store.conn.execute(
            "SELECT DISTINCT recipient_id FROM path_contexts WHERE kind = ?", (RELEASE,)).fetchall()]
        if how == "own" and minted:
            self._deliver(RELEASE, data.draw(st.sampled_from(sorted(minted))), release_held_htlc=ReleaseHeldHtlc())
        elif how == "over_reply_path":
            pid = data.draw(st.sampled_from(sorted(self.requests)))
            self._deliver(REPLY, pid, release_held_htlc=ReleaseHeldHtlc())
        else:
            self._deliver(RELEASE, os.urandom(16).hex(), release_held_htlc=ReleaseHeldHtlc())

    @precondition(lambda self: self.inflight)
    @rule(data=st.data(), outcome=st.sampled_from(["success", "wrong_preimage", "failure", "held"]))
    def settle(self, data, outcome):
        pid = data.draw(st.sampled_from(sorted(self.inflight)))
        h = self.inflight[pid]
        if outcome == "success":
            del self.inflight[pid]
            self.ledger[h] = ("complete", self.ledger[h][1])
            self._complete(pid, self.ledger[h][1])
        elif outcome == "wrong_preimage":
            state = self.payer.records.get(pid).state
            with pytest.raises(ValueError):
                self.payer.paid(pid, os.urandom(32), self.now)
            assert self.payer.records.get(pid).state == state
        elif outcome == "failure":
            del self.inflight[pid]
            self.ledger[h] = ("failed", None)
            self.payer.pay_failed(pid, "failed", self.now)
        elif self.config.payer_lsp is not None:  # our HTLC locked in at our LSP
            self.payer.held(pid, self.now)

    def _complete(self, pid: str, preimage: bytes | None) -> None:
        assert preimage is not None
        event("completed")
        if self.payer.paid(pid, preimage, self.now) is not None:
            self.completed[pid] = self.completed.get(pid, 0) + 1

    @rule(seconds=st.sampled_from([1, 1, 2, 3, 30, 600, 3600, 86_400, 700_000]), blocks=st.integers(0, 10))
    def clock(self, seconds, blocks):
        self.now += seconds
        self.height += blocks
        actions, _failed = self.payer.tick(self.now)
        self.execute(actions)

    # -- the fake adapter -------------------------------------------------------------

    def execute(self, actions) -> None:
        for a in actions:
            if isinstance(a, InjectOnion):
                continue
            assert a.payment_id not in self.inflight, "a second payment while one is in flight"
            assert a.payment_id not in self.completed, "a payment after it completed"
            req, amount = self.requests[a.payment_id]
            if isinstance(a, PayInvoice):
                self._xpay(a, req, amount)
            else:
                self._pay_static(a, req, amount)

    def cap(self, amount: int) -> int:
        return self.config.payer_max_fee_base_msat + amount * self.config.payer_max_fee_ppm // 1_000_000

    def _xpay(self, a: PayInvoice, req: bytes, amount: int) -> None:
        inv = Invoice.from_string(a.invoice)
        # Bound to our request: its records, our amount, the offer's issuer.
        assert invreq_records(inv.to_records()) == invreq_records(InvoiceRequest.decode(req).to_records())
        assert inv.invoice_amount == amount and inv.invoice_node_id == pubkey_of(ISSUER) and inv.signature_ok()
        assert required_unknown(inv.invoice_features, KNOWN_INVOICE_FEATURES) is None
        # xpay keeps to maxfee and maxdelay: ours.
        assert a.max_fee_msat <= self.cap(amount) and a.max_delay <= self.config.payer_max_cltv
        self._send(a.payment_id, inv.invoice_payment_hash, None)

    def _pay_static(self, a: PayStatic, req: bytes, amount: int) -> None:
        assert a.invoice_request == req and a.amount_msat == amount
        assert hashlib.sha256(a.preimage).digest() == a.payment_hash
        assert (a.lsp is not None) == (self.config.payer_lsp is not None)
        for path in a.paths:
            try:
                limits = screen(path, a.amount_msat, a.budget)
                route = self._askrene(path, limits, a)
                check_route(path, a.amount_msat, a.budget, route, self.height)
                sent = check_sent(route[0].amount_msat, route[0].cltv_expiry, a.amount_msat, a.budget, self.height)
            except OverBudget as e:
                event(f"path refused: {str(e).split(' ')[0]} {'cap' if 'cap' in str(e) else ''}")
                continue
            # What would be injected: within the amount plus the cap, and the CLTV cap.
            assert sent.sent_msat - amount <= self.cap(amount)
            assert route[0].cltv_expiry - self.height <= self.config.payer_max_cltv
            self._send(a.payment_id, a.payment_hash, a.preimage)
            return
        self.payer.pay_failed(a.payment_id, "every payment path failed", self.now)

    def _askrene(self, path, limits, a: PayStatic) -> list[RouteHop]:
        """One to three channels to the introduction node; honest routes keep
        to maxfee_msat and maxdelay, greedy ones do not."""
        rnd = self.rnd
        greedy = rnd.random() < 0.3
        hops = [(rnd.choice([0, rnd.randint(0, 10_000), rnd.randint(0, 10**7)]), rnd.randint(0, 300))
                for _ in range(rnd.randint(0, 2))]
        if not greedy:
            while hops and (sum(f for f, _ in hops) > limits.maxfee_msat
                            or sum(d for _, d in hops) + limits.final_cltv > limits.maxdelay):
                hops.pop()
        amount = limits.amount_msat
        cltv = a.budget.final_cltv(self.height) + limits.final_cltv
        route = [RouteHop(9, path.path.introduction.node_id or b"", amount, cltv)]
        for fee, delta in hops:  # each node before the introduction node charges its fee
            amount, cltv = amount + fee, cltv + delta
            route.insert(0, RouteHop(9, LSP, amount, cltv))
        return route

    def _send(self, pid: str, payment_hash: bytes, preimage: bytes | None) -> None:
        """The HTLC is out: lightningd's ledger has it pending (an invoice's
        preimage is the recipient's, released on success)."""
        event("paid: invoice" if preimage is None else "paid: static")
        self.inflight[pid] = payment_hash
        self.ledger[payment_hash] = ("pending", preimage or self.preimages[payment_hash])
        self.sent += 1

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def one_payment_at_a_time(self):
        for pid in self.inflight:
            row = self.payer.records.get(pid)
            assert row.state in ("paying", "held_at_lsp"), row.state
        assert all(n == 1 for n in self.completed.values())
        for pid in self.completed:
            assert self.payer.records.get(pid).state == "complete"


PayerMachine.TestCase.settings = settings(
    max_examples=40 if CI else settings.default.max_examples, stateful_step_count=30 if CI else 50,
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestPayerMachine = PayerMachine.TestCase
