"""Shared test set-up: where the vectors live, and hypothesis profiles.

Vectors are read in place from ``../shared/vectors`` next to the repository,
or from ``$ASYNCPAY_VECTORS`` when set. They are never copied in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("ASYNCPAY_VECTORS", ROOT.parent / "shared" / "vectors"))

# "ci" keeps the default run short; "thorough" is the 10,000-example profile
# (pytest --hypothesis-profile=thorough tests/test_properties.py).
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def load_vector(rel: str):
    path = VECTORS / rel
    if not path.exists():
        # Missing vectors are a broken checkout, not a reason to skip.
        raise FileNotFoundError(f"test vectors not found at {path} (set ASYNCPAY_VECTORS)")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def ldk():
    return load_vector("ldk/async-payments.json")


def h(s: str) -> bytes:
    return bytes.fromhex(s)
