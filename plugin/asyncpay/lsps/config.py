"""Settings of the LSPS5 webhook service and of hold-for-wake-up; each is a
plugin option ``asyncpay-<name with dashes>`` (docs/configuration.md,
docs/lsps5.md)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DAY, node_ids, option
from .url_guard import AllowList

AUTO, ON, OFF = "auto", "on", "off"
CHANNEL, ANY = "channel", "any"
SPEC, LDK = "spec", "ldk"


@dataclass
class Lsps5Config:
    # Who answers LSPS0 itself (lsps0.list_protocols, unknown methods, bad
    # messages): two LSPS plugins answering the same request would give the
    # client two answers. auto: we do, unless CLN's own LSPS service is on.
    lsps0_server: str = option(
        AUTO, "Answer lsps0.list_protocols, unknown LSPS methods and malformed LSPS messages: on, off (another "
              "LSPS plugin on this node does) or auto (off when CLN's experimental-lsps2-service is enabled).")
    lsps5_max_webhooks: int = option(5, "Webhooks one client may register (LSPS5 max_webhooks).")
    # LDK's service accepts set_webhook only from a peer with prior activity
    # (a channel or an LSPS1/LSPS2 request): a stranger must not make us
    # store URLs and call them.
    lsps5_clients: str = option(
        CHANNEL, "Who may register webhooks: channel (peers with a channel with us) or any (any peer; "
                 "asyncpay-lsps5-max-clients bounds them).")
    lsps5_max_clients: int = option(10_000, "Clients with registered webhooks, at most, in all.")
    lsps5_set_burst: int = option(5, "lsps5.set_webhook and remove_webhook calls one client may make at once.")
    lsps5_set_per_hour: int = option(60, "lsps5.set_webhook and remove_webhook calls per hour for one client.")
    lsps5_retention: int = option(
        7 * DAY, "Seconds a client's webhooks are kept after its last channel with us is gone (LSPS5: 7 days).")
    # LSPS5 "Rate-limiting Notifications By method": hours or days, reset
    # when the client comes online. (LDK's service uses one minute.)
    lsps5_notify_cooldown: int = option(
        3600, "Seconds before a notification of the same method goes again to a client that has not connected.")
    lsps5_retry_first: int = option(5, "Seconds before a failed webhook call is tried again; the wait doubles.")
    lsps5_retry_max_interval: int = option(300, "Longest wait in seconds between two tries of one webhook call.")
    lsps5_retry_attempts: int = option(5, "Tries of one webhook call, at most (the first included).")
    lsps5_queue_max: int = option(1000, "Webhook calls waiting to be made, at most, in all; more are dropped.")
    lsps5_queue_max_per_client: int = option(20, "Webhook calls waiting for one client, at most; more are dropped.")
    lsps5_http_timeout: int = option(
        5, "Seconds one webhook call may take in all (name lookup, connect, TLS, request, response head), at most.")
    # Fair delivery (docs/lsps5.md, "How long an honest client waits").
    lsps5_senders: int = option(16, "Webhook calls made at once, at most (threads sending them).")
    lsps5_senders_per_client: int = option(1, "Webhook calls to one client's webhooks made at once, at most.")
    lsps5_senders_per_host: int = option(4, "Webhook calls to one host name made at once, at most.")
    lsps5_allow_hosts: str = option(
        "", "Comma-separated host names or CIDRs a webhook may reach even when the address is loopback, "
            "private, link-local or otherwise refused (tests and private deployments).")
    lsps5_allow_ports: str = option(
        "443", "Comma-separated ports a webhook may use, or any; hosts and networks in asyncpay-lsps5-allow-hosts "
               "may use any port.")
    lsps5_ca_file: str = option(None, "File of extra CA certificates (PEM) trusted for webhook HTTPS.")
    # LSPS0.datetime is "YYYY-MM-DDThh:mm:ss.uuuZ"; LDK's service and its
    # LSPS5Validator sign chrono's to_rfc3339 ("...+00:00"), and the
    # validator re-formats the header before checking.
    lsps5_timestamp_style: str = option(
        SPEC, "Timestamp format signed and sent in x-lsps5-timestamp: spec (2023-05-04T10:52:58.395Z) or ldk "
              "(2023-05-04T10:52:58.395+00:00, what LDK's LSPS5Validator re-creates).")
    lsps5_expiry_soon_blocks: int = option(
        24, "Blocks before an HTLC with an offline client times out at which lsps5.expiry_soon is sent (LSPS5: 24).")

    # Hold for wake-up (eclair's peer-wake-up waits 60 s).
    wake_timeout: int = option(
        60, "Seconds an HTLC for an offline client with a webhook (or marked a wallet) waits for it to connect.")
    wake_min_blocks: int = option(
        6, "Blocks an HTLC held for wake-up must keep before its CLTV budget; one closer is not held (or failed).")
    wake_max_per_peer: int = option(30, "HTLCs held for wake-up at once for one client.")
    wake_max_total: int = option(1000, "HTLCs held for wake-up at once in all.")
    wake_channel_share: int = option(
        25, "Percent of an incoming channel's HTLC slots (its max_accepted_htlcs, CLN's default 30) that HTLCs "
            "held for wake-up may take at once.")
    wake_wallets: str = option(
        "", "Comma-separated node ids held for wake-up even without a webhook (wallets woken another way).")

    def validate(self) -> None:
        """Checks beyond each option's type (``cln/options.load`` calls it)."""
        if self.lsps0_server not in (AUTO, ON, OFF):
            raise ValueError(f"asyncpay-lsps0-server: must be auto, on or off, got {self.lsps0_server!r}")
        if self.lsps5_clients not in (CHANNEL, ANY):
            raise ValueError(f"asyncpay-lsps5-clients: must be channel or any, got {self.lsps5_clients!r}")
        if self.lsps5_timestamp_style not in (SPEC, LDK):
            raise ValueError(f"asyncpay-lsps5-timestamp-style: must be spec or ldk, got {self.lsps5_timestamp_style!r}")
        if self.lsps5_retry_max_interval < self.lsps5_retry_first:
            raise ValueError("asyncpay-lsps5-retry-max-interval must be at least asyncpay-lsps5-retry-first")
        if not 1 <= self.wake_channel_share <= 100:
            raise ValueError(f"asyncpay-wake-channel-share: must be 1 to 100, got {self.wake_channel_share}")
        for name in ("lsps5_http_timeout", "lsps5_senders", "lsps5_senders_per_client", "lsps5_senders_per_host"):
            if getattr(self, name) < 1:
                raise ValueError(f"asyncpay-{name.replace('_', '-')}: must be at least 1")
        AllowList.parse(self.lsps5_allow_hosts, self.lsps5_allow_ports)
        self.wallet_ids()

    def wallet_ids(self) -> frozenset[str]:
        return frozenset(node_ids(self.wake_wallets or "", "wake-wallets"))
