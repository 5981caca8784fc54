"""What a webhook URL may reach. The URL is chosen by the client (LSPS5
``lsps5.set_webhook``), so an attacker could point our HTTP client at our
own machine or network (server-side request forgery).

* ``parse_webhook``: LSPS5 "set_webhook" rules: at most 1024 ASCII
  characters, a URL (RFC 1738; no spaces or control characters), the
  ``https`` scheme (``unsupported_protocol`` otherwise, as LDK's
  ``lsps5/url_utils.rs``); we also refuse user names and passwords in it.
* ``address_refusal``: after DNS resolution, every address must be a global
  unicast one: loopback, private, link-local, multicast, reserved,
  unspecified, shared (CGNAT) and cloud metadata addresses are refused,
  including IPv4 inside IPv6 (mapped, 6to4, Teredo, NAT64).
* ``AllowList``: host names and CIDRs the operator exempts
  (``asyncpay-lsps5-allow-hosts``: tests, a push service on a private network),
  and the ports a webhook may use (``asyncpay-lsps5-allow-ports``, 443: a
  TLS ClientHello to a mail or database port of a public host is not ours
  to send).

The adapter connects to the checked address itself (no second lookup that a
rebinding DNS server could answer differently), never follows redirects,
and bounds time and body (``cln/lsps5.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 1024  # LSPS5 set_webhook
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services, whatever class their address is in: AWS
# (IPv4 and IPv6), GCP and Azure (169.254.169.254), Azure's wire server,
# Alibaba Cloud, Oracle Cloud.
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "fd00:ec2::254", "168.63.129.16", "100.100.100.200", "192.0.0.192"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

# Kinds of refusal: the LSPS5 error each maps to (cln/lsps5.py, webhooks.py).
TOO_LONG, PARSE, PROTOCOL = "too_long", "url_parse_error", "unsupported_protocol"


class UrlRefused(Exception):
    """A URL we will not call: ``kind`` (TOO_LONG, PARSE, PROTOCOL, or
    ``address_<class>`` after resolution) and a one-line reason."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


@dataclass(frozen=True)
class WebhookUrl:
    url: str  # as registered: what we POST to (fragment dropped)
    host: str  # lower-case name or address, IPv6 without brackets
    port: int

    @property
    def ip_literal(self) -> IpAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_webhook(url: str) -> WebhookUrl:
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(TOO_LONG, f"webhook longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise UrlRefused(PARSE, "webhook must be ASCII without spaces or control characters")
    if "://" not in url:
        raise UrlRefused(PARSE, "webhook is not an absolute URL")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as e:
        raise UrlRefused(PARSE, f"webhook does not parse: {e}") from None
    if parts.scheme.lower() != "https":
        raise UrlRefused(PROTOCOL, f"webhook scheme {parts.scheme!r} is not https")
    if not host:
        raise UrlRefused(PARSE, "webhook has no host")
    if "@" in parts.netloc:
        raise UrlRefused(PARSE, "webhook must not carry a user name or password")
    if port == 0:
        raise UrlRefused(PARSE, "webhook port 0")
    return WebhookUrl(url.split("#", 1)[0], host.lower().rstrip("."), port or 443)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IpAddress) -> str | None:
    """Why a webhook must not reach this address (None: a global unicast one)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return address_refusal(inner)
    if ip in METADATA:
        return "metadata"
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind
    if not ip.is_global:
        return "not_global"  # shared address space (100.64/10), documentation ranges, ...
    return None


HTTPS_PORT = 443
ANY_PORT = "any"


def parse_ports(text: str | None) -> frozenset[int] | None:
    """``asyncpay-lsps5-allow-ports``: comma-separated ports, or ``any`` (None)."""
    if (text or "").strip().lower() == ANY_PORT:
        return None
    ports = set()
    for item in (x.strip() for x in (text or "").split(",")):
        if not item:
            continue
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise ValueError(f"asyncpay-lsps5-allow-ports: {item!r} is not a port (1-65535) nor 'any'")
        ports.add(int(item))
    return frozenset(ports)


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str] = frozenset()
    networks: tuple[IpNetwork, ...] = ()
    # Ports a webhook may use (None: any). The operator's exempt host names,
    # and literal addresses in its exempt networks, may use any port
    # (docs/security.md, "Webhook ports").
    ports: frozenset[int] | None = frozenset({HTTPS_PORT})

    @classmethod
    def parse(cls, text: str | None, ports: str | None = str(HTTPS_PORT)) -> AllowList:
        hosts, nets = set(), []
        for item in (x.strip() for x in (text or "").split(",")):
            if not item:
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            name = item.lower().rstrip(".")
            if not name or any(c in name for c in "/ @:[]") or not name.isascii():
                raise ValueError(f"asyncpay-lsps5-allow-hosts: {item!r} is neither a host name nor a CIDR")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(nets), parse_ports(ports))

    def allows_port(self, port: int) -> bool:
        return self.ports is None or port in self.ports

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_ip(self, ip: IpAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)


def check_static(url: WebhookUrl, allow: AllowList) -> None:
    """Registration-time check: a literal address or local name we would
    refuse anyway is refused now (the client hears it in its answer)."""
    if allow.allows_host(url.host):
        return
    ip = url.ip_literal
    if url.host in LOCAL_NAMES or url.host.endswith(".localhost"):
        raise UrlRefused("address_loopback", f"webhook host {url.host} is this machine")
    if ip is not None and not allow.allows_ip(ip):
        why = address_refusal(ip)
        if why is not None:
            raise UrlRefused(f"address_{why}", f"webhook address {ip} is {why.replace('_', '-')}")
    if not allow.allows_port(url.port) and not (ip is not None and allow.allows_ip(ip)):
        raise UrlRefused("port", f"webhook port {url.port} is not one this LSP calls (asyncpay-lsps5-allow-ports)")


Resolver = Callable[[str, int], Iterable[str]]  # (host, port) -> addresses as text


def pick_address(url: WebhookUrl, allow: AllowList, resolve: Resolver) -> str:
    """The first address to connect to (see ``checked_addresses``)."""
    return checked_addresses(url, allow, resolve)[0]


def checked_addresses(url: WebhookUrl, allow: AllowList, resolve: Resolver) -> list[str]:
    """The addresses to connect to, in the resolver's order: every address
    the name resolves to must be allowed (a name with one private address
    among public ones is refused: which one a client picks is not ours to
    know). Raises UrlRefused."""
    check_static(url, allow)
    host_allowed = allow.allows_host(url.host)
    literal = url.ip_literal
    try:
        found = [literal] if literal is not None else [ipaddress.ip_address(a.split("%", 1)[0])
                                                       for a in resolve(url.host, url.port)]
    except (OSError, ValueError) as e:
        raise UrlRefused("resolve", f"cannot resolve {url.host}: {e}") from None
    if not found:
        raise UrlRefused("resolve", f"{url.host} has no address")
    for ip in found:
        if host_allowed or allow.allows_ip(ip):
            continue
        why = address_refusal(ip)
        if why is not None:
            raise UrlRefused(f"address_{why}", f"{url.host} resolves to {ip}, which is {why.replace('_', '-')}")
    return list(dict.fromkeys(str(ip) for ip in found))
