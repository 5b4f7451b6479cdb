"""Which addresses a delivery may reach: the policy, and the resolver that enforces it."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tillhook.errors import BlockedAddress
from tillhook.targets import AddressPolicy, GuardedResolver, target_refusal

net = ipaddress.ip_network


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 is judged as the IPv4 inside
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("169.254.0.1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),  # with a zone index
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "private"),  # AWS's IPv6 metadata address
        ("100.64.0.1", "private"),  # carrier-grade NAT: not on the internet either
        ("100.100.100.200", "private"),  # Alibaba Cloud's metadata address sits there
        ("0.1.2.3", "private"),  # "this network"
        ("192.0.2.1", "private"),  # documentation ranges
        ("2001:db8::1", "private"),
        ("198.18.0.1", "private"),  # benchmarking
        ("240.0.0.1", "private"),  # reserved
        ("255.255.255.255", "private"),  # broadcast
        ("64:ff9b::7f00:1", "private"),  # NAT64 of 127.0.0.1
    ],
)
def test_refused_by_default(address: str, kind: str) -> None:
    refusal = AddressPolicy().refusal(address)
    assert refusal is not None
    assert f"it is a {kind} address" in refusal
    assert "delivery.allow_networks" in refusal  # says how to allow it


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.32.0.1",
        "172.15.255.255",
        "192.169.0.1",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(address) is None


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        (["192.168.1.0/24"], "192.168.1.5", True),
        (["192.168.1.0/24"], "::ffff:192.168.1.5", True),
        (["192.168.1.0/24"], "192.168.2.5", False),  # only what is listed
        (["192.168.1.0/24"], "10.0.0.1", False),
        (["192.168.1.0/24"], "127.0.0.1", False),
        (["192.168.1.5/32"], "192.168.1.5", True),
        (["192.168.1.5/32"], "192.168.1.6", False),
        (["127.0.0.0/8"], "127.0.0.1", True),
        (["127.0.0.0/8"], "::1", False),  # an IPv4 network says nothing about IPv6
        (["::1/128"], "::1", True),
        (["fd00::/8"], "fd12:3456::1", True),
        (["fe80::/10"], "fe80::1%eth0", True),
        (["10.0.0.0/8", "172.16.0.0/12"], "172.20.1.1", True),
        (["169.254.169.254/32"], "169.254.169.254", True),  # allowing even the metadata address is the user's call
        (["0.0.0.0/0"], "10.1.2.3", True),
    ],
)
def test_allow_networks(allow: list[str], address: str, allowed: bool) -> None:
    policy = AddressPolicy([net(n) for n in allow])
    assert (policy.refusal(address) is None) is allowed


def test_allow_networks_do_not_open_other_kinds() -> None:
    policy = AddressPolicy([net("192.168.1.0/24")])
    assert policy.refusal("169.254.169.254") is not None
    assert policy.refusal("8.8.8.8") is None  # public stays allowed with a list, too


@pytest.mark.parametrize("host", ["example.com", "localhost", "0177.0.0.1", "2130706433", ""])
def test_names_are_left_to_the_resolver(host: str) -> None:
    # refusal() judges addresses only; a name (however it would resolve) is checked once
    # resolved, by GuardedResolver.
    assert AddressPolicy().refusal(host) is None


# -- when an endpoint is created: the URL's host ---------------------------------------------


_SAMPLE_ADDRESSES = [
    "127.0.0.1",
    "127.5.0.1",
    "::1",
    "::ffff:127.0.0.1",
    "169.254.169.254",
    "fe80::1",
    "10.0.0.1",
    "192.168.1.5",
    "::ffff:192.168.1.5",
    "fd00::1",
    "0.0.0.0",
    "224.0.0.1",
    "100.64.0.1",
    "8.8.8.8",
    "2606:4700:4700::1111",
    "2002:7f00:1::",
]


@pytest.mark.parametrize("allow", [[], ["127.0.0.0/8"], ["192.168.1.0/24", "::1/128"], ["0.0.0.0/0"], ["fe80::/10"]])
@pytest.mark.parametrize("address", _SAMPLE_ADDRESSES)
def test_create_time_and_connect_time_agree_on_literal_addresses(allow: list[str], address: str) -> None:
    policy = AddressPolicy([net(n) for n in allow])
    assert (target_refusal(address, policy) is None) is (policy.refusal(address) is None)


@pytest.mark.parametrize(
    ("host", "allow", "said"),
    [
        (
            "127.0.0.1",
            [],
            (
                "127.0.0.1 is a loopback address: add a network covering it to delivery.allow_networks,"
                ' like "127.0.0.1/32"'
            ),
        ),
        ("::1", [], 'like "::1/128"'),
        (
            "::ffff:10.1.2.3",
            [],
            (
                "::ffff:10.1.2.3 is a private address: add a network covering it to"
                ' delivery.allow_networks, like "10.1.2.3/32"'
            ),
        ),
        ("fe80::1%25eth0", [], "link-local address"),
        ("localhost", [], "localhost is a loopback name: add a network covering 127.0.0.1 to delivery.allow_networks"),
        ("a.b.localhost", ["10.0.0.0/8"], "loopback name"),
        ("localhost", ["0.0.0.0/0"], None),
        ("localhost", ["::1/128"], None),
        ("localhost.example", [], None),  # only the localhost domain itself is special
        ("mylocalhost", [], None),
        ("127.1", ["127.0.0.0/8"], "127.1 is read as the IPv4 address 127.0.0.1: write the address as a.b.c.d"),
        ("0177.0.0.1", ["127.0.0.0/8"], "write the address as a.b.c.d"),
        ("8.8.8.8", [], None),
        ("example.com", [], None),
        ("256.1.1.1", [], None),  # not an address in any spelling: a name the resolver will fail on
    ],
)
def test_target_refusal(host: str, allow: list[str], said: str | None) -> None:
    refusal = target_refusal(host, AddressPolicy([net(n) for n in allow]))
    if said is None:
        assert refusal is None
    else:
        assert refusal is not None and said in refusal


# -- the resolver ------------------------------------------------------------------------


@pytest.fixture
async def real() -> AsyncIterator[AbstractResolver]:
    resolver = DefaultResolver()
    yield resolver
    await resolver.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "0177.0.0.1", "2130706433"])
async def test_names_resolving_to_loopback_are_blocked(real: AbstractResolver, host: str) -> None:
    # However the loopback address is spelled, the check sees what getaddrinfo returned.
    assert [r["host"] for r in await real.resolve(host, 443, socket.AF_INET)] == ["127.0.0.1"]
    guarded = GuardedResolver(AddressPolicy(), real)
    with pytest.raises(BlockedAddress) as caught:
        await guarded.resolve(host, 443, socket.AF_INET)
    assert caught.value.errno == errno.EACCES
    assert isinstance(caught.value, OSError)  # so aiohttp reports it like any connect failure
    assert host in str(caught.value) and "loopback" in str(caught.value)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_allowed_networks_pass_through_the_resolver(real: AbstractResolver, host: str) -> None:
    guarded = GuardedResolver(AddressPolicy([net("127.0.0.0/8")]), real)
    (found,) = await guarded.resolve(host, 8443, socket.AF_INET)
    assert (found["host"], found["port"], found["family"]) == ("127.0.0.1", 8443, socket.AF_INET)


async def test_the_default_inner_resolver_is_real() -> None:
    guarded = GuardedResolver(AddressPolicy([net("127.0.0.0/8")]))
    try:
        assert [r["host"] for r in await guarded.resolve("localhost", 80, socket.AF_INET)] == ["127.0.0.1"]
    finally:
        await guarded.close()


class FixedAnswers(AbstractResolver):
    """DNS that answers from a table: the real thing would need the internet."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.answers.get(host, [])
        ]

    async def close(self) -> None:
        self.closed = True


DNS = FixedAnswers(
    {
        "mixed.example": ["10.0.0.7", "93.184.216.34", "169.254.169.254", "2606:4700::1", "::1"],
        "public.example": ["93.184.216.34", "93.184.216.35"],
        "rebind.example": ["127.0.0.1", "169.254.169.254"],
        "lan.example": ["192.168.1.20"],
        "nothing.example": [],
    }
)


@pytest.mark.parametrize(
    ("host", "allow", "kept"),
    [
        ("mixed.example", [], ["93.184.216.34", "2606:4700::1"]),  # only the public ones, in order
        ("public.example", [], ["93.184.216.34", "93.184.216.35"]),
        ("mixed.example", ["10.0.0.0/8"], ["10.0.0.7", "93.184.216.34", "2606:4700::1"]),
        ("lan.example", ["192.168.1.0/24"], ["192.168.1.20"]),
        ("nothing.example", [], []),  # nothing found is the inner resolver's to report, not a refusal
    ],
)
async def test_resolved_addresses_are_filtered(host: str, allow: list[str], kept: list[str]) -> None:
    guarded = GuardedResolver(AddressPolicy([net(n) for n in allow]), DNS)
    found = await guarded.resolve(host, 443)
    assert [r["host"] for r in found] == kept
    assert all(r["hostname"] == host and r["port"] == 443 for r in found)


@pytest.mark.parametrize(("host", "kind"), [("rebind.example", "loopback"), ("lan.example", "private")])
async def test_a_name_with_only_refused_addresses_is_blocked(host: str, kind: str) -> None:
    with pytest.raises(BlockedAddress, match=f"{host} resolves to a refused address.*{kind}"):
        await GuardedResolver(AddressPolicy(), DNS).resolve(host, 443)


async def test_closing_closes_the_inner_resolver() -> None:
    inner = FixedAnswers({})
    await GuardedResolver(AddressPolicy(), inner).close()
    assert inner.closed


# -- through a real aiohttp session, as deliveries use it -------------------------------------


@pytest.fixture
async def local_server() -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="reached")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def get_via(policy: AddressPolicy, url: str) -> str:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy))
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as response:
        return await response.text()


async def test_a_session_cannot_reach_localhost_by_name(local_server: int) -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        await get_via(AddressPolicy(), f"http://localhost:{local_server}/")
    assert isinstance(caught.value.os_error, BlockedAddress)


async def test_a_session_reaches_localhost_when_allowed(local_server: int) -> None:
    assert await get_via(AddressPolicy([net("127.0.0.0/8")]), f"http://localhost:{local_server}/") == "reached"


@pytest.mark.parametrize(
    ("address", "kind"),
    [("2002:7f00:1::", "loopback"), ("2002:0a00:0001::", "private"), ("fec0::1", "site-local")],
)
def test_ipv4_wrapped_in_6to4_and_site_local_ipv6_are_refused(address: str, kind: str) -> None:
    refusal = AddressPolicy().refusal(address)
    assert refusal is not None and kind in refusal


def test_6to4_of_a_public_address_is_allowed() -> None:
    assert AddressPolicy().refusal("2002:0808:0808::") is None
