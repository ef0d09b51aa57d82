"""The SSRF guard for outbound deliveries (after Svix's server and stripe/smokescreen).

A destination is judged by the addresses its name *resolves to*, never by its spelling, and the
connection is made to exactly the address that was judged: :class:`GuardedResolver` is the resolver
of the delivery client's connector, so a DNS answer that changes between check and connect (DNS
rebinding) cannot slip through. IP literals never reach a resolver in aiohttp, so
:func:`check_url` judges them before a request is made; legacy spellings (``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``127.1``) are decoded the way ``inet_aton`` would and judged too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from connectors.webhooks.errors import UnsafeDestinationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Ranges refused on top of everything Python does not consider globally routable.
_ALWAYS_REFUSED: tuple[tuple[str, IPNetwork], ...] = (
    ("cgnat", ipaddress.ip_network("100.64.0.0/10")),
    ("benchmarking", ipaddress.ip_network("198.18.0.0/15")),
    ("cloud_metadata", ipaddress.ip_network("169.254.169.254/32")),
    ("nat64", ipaddress.ip_network("64:ff9b::/96")),
    ("6to4", ipaddress.ip_network("2002::/16")),
    ("teredo", ipaddress.ip_network("2001::/32")),
)


def refusal_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or ``None`` if it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        mapped = refusal_reason(ip.ipv4_mapped)
        return f"ipv4_mapped_{mapped}" if mapped else None
    for name, net in _ALWAYS_REFUSED:
        if ip.version == net.version and ip in net:
            return name
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link_local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for name, hit in checks:
        if hit:
            return name
    return None if ip.is_global else "not_global"


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes literally, including legacy IPv4 spellings."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text) and text[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses deliveries may reach. ``allow`` opts refused ranges back in (tests, demos)."""

    allow: tuple[IPNetwork, ...] = field(default=())
    #: Verdicts already reached. Judging an address is a pure function of the address and this
    #: policy (no DNS involved), and ``ipaddress``'s range tests are slow enough to show up per
    #: delivery; names are still resolved at every attempt, only the judgement is remembered.
    _verdicts: dict[IPAddress, str | None] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def allowing(cls, networks: Iterable[str]) -> DestinationPolicy:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def refusal(self, ip: IPAddress) -> str | None:
        try:
            return self._verdicts[ip]
        except KeyError:
            pass
        verdict = self._judge(ip)
        if len(self._verdicts) >= 4096:  # bounded: a flood of distinct addresses cannot grow it
            self._verdicts.clear()
        self._verdicts[ip] = verdict
        return verdict

    def _judge(self, ip: IPAddress) -> str | None:
        if any(ip.version == net.version and ip in net for net in self.allow):
            return None
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if mapped is not None and any(mapped in net for net in self.allow if net.version == 4):
            return None
        return refusal_reason(ip)

    def check_ip(self, ip: IPAddress, host: str) -> None:
        if reason := self.refusal(ip):
            raise UnsafeDestinationError(f"{host} -> {ip} refused ({reason})")


def check_url(url: str | URL, policy: DestinationPolicy) -> URL:
    """Refuse bad schemes and refused IP literals before any connection is attempted."""
    parsed = URL(url) if isinstance(url, str) else url
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeDestinationError(f"{parsed} is not an absolute http(s) URL")
    ip = parse_ip_literal(parsed.raw_host or parsed.host)
    if ip is not None:
        policy.check_ip(ip, parsed.host)
    return parsed


class GuardedResolver(AbstractResolver):
    """Resolves like the OS, then refuses the whole name if any answer is a refused address."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = parse_ip_literal(host)
        if literal is not None:
            self._policy.check_ip(literal, host)
        try:
            answers = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise UnsafeDestinationError(f"cannot resolve {host}: {exc}") from exc
        if not answers:
            raise UnsafeDestinationError(f"{host} resolves to nothing")
        for answer in answers:
            self._policy.check_ip(ipaddress.ip_address(answer["host"].split("%")[0]), host)
        return answers

    async def close(self) -> None:
        await self._inner.close()
