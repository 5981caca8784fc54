#!/usr/bin/env python3
"""Test-only plugin: the client side of LSPS0 in miniature. It records
every LSPS0 custom message (type 37913) a peer sends us, decoded, so that a
test can read the answer to a request it sent with ``sendcustommsg``. The
hook always continues."""

import json
import threading

from pyln.client import Plugin

plugin = Plugin()
lock = threading.Lock()
replies: list = []


@plugin.hook("custommsg")
def on_custommsg(plugin, peer_id=None, payload=None, **kwargs):
    try:
        raw = bytes.fromhex(payload or "")
        if raw[:2] == (37913).to_bytes(2, "big"):
            with lock:
                replies.append({"peer_id": peer_id, "message": json.loads(raw[2:])})
    except Exception:
        pass
    return {"result": "continue"}


@plugin.method("lsps-replies")
def lsps_replies(plugin):
    with lock:
        return {"replies": list(replies)}


plugin.run()
