from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from connectors.webhooks import DestinationPolicy, GuardedResolver, check_url, parse_ip_literal
from connectors.webhooks._ssrf import refusal_reason
from connectors.webhooks.errors import UnsafeDestinationError

REFUSED = {
    "127.0.0.1": "loopback",
    "127.9.9.9": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "cloud_metadata",
    "169.254.1.1": "link_local",
    "100.64.0.1": "cgnat",
    "100.127.255.254": "cgnat",
    "198.18.0.1": "benchmarking",
    "198.19.255.1": "benchmarking",
    "224.0.0.1": "multicast",
    "239.1.1.1": "multicast",
    "240.0.0.1": "reserved",
    "0.0.0.0": "unspecified",
    "255.255.255.255": "reserved",
    "192.0.2.1": "private",  # TEST-NET-1 documentation range
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link_local",
    "fc00::1": "private",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "ipv4_mapped_loopback",
    "::ffff:169.254.169.254": "ipv4_mapped_cloud_metadata",
    "::ffff:10.0.0.1": "ipv4_mapped_private",
    "64:ff9b::7f00:1": "nat64",
    "2002:7f00:1::": "6to4",
}


@pytest.mark.parametrize(("ip", "reason"), REFUSED.items())
def test_refused_ranges(ip: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(ip)) == reason


@pytest.mark.parametrize("ip", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(ip: str) -> None:
    assert refusal_reason(ipaddress.ip_address(ip)) is None


@pytest.mark.parametrize(
    "spelling",
    ["2130706433", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "127.1", "0177.1", "017700000001"],
)
def test_odd_loopback_spellings_decode(spelling: str) -> None:
    assert parse_ip_literal(spelling) == ipaddress.IPv4Address("127.0.0.1")
    with pytest.raises(UnsafeDestinationError):
        check_url(f"http://{spelling}:8080/hook", DestinationPolicy())


@pytest.mark.parametrize("name", ["example.com", "hooks.partner.io", "1password.com"])
def test_names_are_not_literals(name: str) -> None:
    assert parse_ip_literal(name) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "/relative",
        "http://[::1]/",
        "http://[::ffff:7f00:1]/",
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(UnsafeDestinationError):
        check_url(url, DestinationPolicy())


def test_allow_list_opts_ranges_in() -> None:
    policy = DestinationPolicy.allowing(["127.0.0.0/8"])
    check_url("http://127.0.0.1:9/x", policy)
    check_url("http://[::ffff:127.0.0.1]:9/x", policy)
    with pytest.raises(UnsafeDestinationError):
        check_url("http://10.0.0.1/x", policy)
    with pytest.raises(UnsafeDestinationError):
        check_url("http://[::1]/x", policy)


class _ScriptedDNS(AbstractResolver):
    """DNS answers from a script: a different answer per lookup (what a rebinding attacker does)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answer = self.answers[min(self.lookups, len(self.answers) - 1)]
        self.lookups += 1
        return [
            ResolveResult(hostname=host, host=ip, port=port, family=family, proto=0, flags=0)
            for ip in answer
        ]

    async def close(self) -> None:
        pass


async def test_resolver_checks_every_lookup() -> None:
    dns = _ScriptedDNS(["93.184.216.34"], ["127.0.0.1"])
    guarded = GuardedResolver(DestinationPolicy(), dns)
    first = await guarded.resolve("rebind.example", 80)
    assert [a["host"] for a in first] == ["93.184.216.34"]
    with pytest.raises(UnsafeDestinationError, match="loopback"):
        await guarded.resolve("rebind.example", 80)


async def test_resolver_refuses_if_any_answer_is_refused() -> None:
    guarded = GuardedResolver(DestinationPolicy(), _ScriptedDNS(["93.184.216.34", "10.0.0.7"]))
    with pytest.raises(UnsafeDestinationError, match="private"):
        await guarded.resolve("mixed.example", 443)


async def test_real_resolver_refuses_localhost() -> None:
    guarded = GuardedResolver(DestinationPolicy())
    with pytest.raises(UnsafeDestinationError):
        await guarded.resolve("localhost", 80)
