"""What the LSPS5 adapter (cln/lsps5.py) sees of the node, without CLN: a
fake lightningd (custom messages, signmessage by a fixed key,
listpeerchannels) and the ``role.Host`` surface, for the adapter tests and
the fairness bench."""

from __future__ import annotations

import threading

from coincurve import PrivateKey

import ln_message
from asyncpay.lsps.config import Lsps5Config
from asyncpay.store import Store

SECRET = bytes([5]) * 32
LSP_ID = PrivateKey(SECRET).public_key.format()
CLIENT = "02" + "44" * 32
STRANGER = "03" + "55" * 32
SCID = "103x1x0"


class FakeRpc:
    def __init__(self, host: FakeHost) -> None:
        self.host, self.sent = host, []

    def getinfo(self) -> dict:
        return {"id": LSP_ID.hex(), "blockheight": self.host.height}

    def call(self, method: str, params: dict | None = None) -> dict:
        params = params or {}
        if method == "listconfigs":
            return {"configs": self.host.configs_shown}
        if method == "sendcustommsg":
            self.sent.append((params["node_id"], bytes.fromhex(params["msg"])))
            return {"status": "sent"}
        if method == "signmessage":
            return {"zbase": ln_message.sign(SECRET, params["message"])}
        if method == "listpeerchannels":
            return {"channels": self.host.channels}
        raise AssertionError(f"unexpected RPC {method}")


class FakeHost:
    """What Lsps5Role sees of the node (role.Host)."""

    def __init__(self, db: str, **cfg) -> None:
        self.store = Store(db)
        self.lock = threading.RLock()
        self.node_id = LSP_ID
        self.online: set[str] = set()
        self.height = 800_000
        self.cltv_delta = 34  # lightningd's default
        self.configs_shown: dict = {}
        self.channels = [{"peer_id": CLIENT, "short_channel_id": SCID, "state": "CHANNELD_NORMAL",
                          "spendable_msat": 10_000_000, "htlcs": []}]
        self.logged: list[str] = []
        self.config = Lsps5Config(**cfg)
        self.rpc = FakeRpc(self)

    def log(self, msg: str, level: str = "info") -> None:
        self.logged.append(msg)

    def current_height(self) -> int:
        return self.height

    def saw_height(self, height: int) -> None:
        self.height = max(self.height, height)

    def notify(self, topic: str, params: dict) -> None:
        pass

    def config_for(self, cls):
        assert cls is Lsps5Config
        return self.config

    def channel_peers(self) -> dict[str, set[str]]:
        return {c["peer_id"]: {c["short_channel_id"]} for c in self.channels}

    def peer_channels(self) -> list[dict]:
        return self.channels

    def connected_peers(self) -> frozenset[str]:
        return frozenset(self.online)

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self.online

    def peer_for_scid(self, scid: str) -> str | None:
        return next((p for p, s in self.channel_peers().items() if scid.split("/")[0] in s), None)
