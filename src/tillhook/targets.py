"""Which addresses a delivery may connect to. The check runs on the addresses the resolver
returns, which are the only ones aiohttp then connects to, so a name that resolves to a
private address is caught however it is spelled."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tillhook.errors import BlockedAddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressPolicy:
    def __init__(self, allow_networks: Sequence[Network] = ()) -> None:
        self.allow_networks = tuple(allow_networks)

    def judge(self, host: str) -> tuple[Address, str] | None:
        """The address judged and its kind when `host` (an IP address) is refused, else None."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address):
            # An IPv4 address wrapped in IPv6 (mapped, or 6to4) is judged as that IPv4 address.
            wrapped = address.ipv4_mapped or address.sixtofour
            if wrapped is not None:
                address = wrapped
        if any(address in network for network in self.allow_networks):
            return None
        kind = _kind(address)
        return None if kind is None else (address, kind)

    def refusal(self, host: str) -> str | None:
        """Why `host` (an IP address) is refused, or None when it may be used."""
        judged = self.judge(host)
        if judged is None:
            return None
        address, kind = judged
        return (
            f"refused to connect to {address}: it is a {kind} address (list it in delivery.allow_networks to allow it)"
        )


def target_refusal(host: str, policy: AddressPolicy) -> str | None:
    """Why a URL's host can never be delivered to, judged when an endpoint is created or
    loaded; None for a name, which is judged on the addresses it resolves to when used."""
    bare = host.rstrip(".").lower()
    if bare == "localhost" or bare.endswith(".localhost"):
        # Resolvers answer *.localhost with loopback addresses without asking DNS (RFC 6761).
        if policy.judge("127.0.0.1") is None or policy.judge("::1") is None:
            return None
        return (
            f"{host} is a loopback name: add a network covering 127.0.0.1 to delivery.allow_networks,"
            ' like "127.0.0.1/32"'
        )
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return _non_canonical_ipv4(host, bare)
    judged = policy.judge(bare)
    if judged is None:
        return None
    address, kind = judged
    single = f"{address}/{address.max_prefixlen}"
    return f'{host} is a {kind} address: add a network covering it to delivery.allow_networks, like "{single}"'


def _non_canonical_ipv4(host: str, bare: str) -> str | None:
    # "127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1": the resolver reads them as IPv4
    # addresses (inet_aton), which hides what is meant from whoever reads the URL.
    try:
        packed = socket.inet_aton(bare)
    except OSError:
        return None
    return f"{host} is read as the IPv4 address {socket.inet_ntoa(packed)}: write the address as a.b.c.d"


def _kind(address: Address) -> str | None:
    if address.is_loopback:
        return "loopback"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_private or address.is_reserved or not address.is_global:
        return "private"
    return None


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then drops every address the policy refuses."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [info for info in found if self._policy.refusal(info["host"]) is None]
        if not allowed and found:
            reason = self._policy.refusal(found[0]["host"]) or "refused"
            raise BlockedAddress(errno.EACCES, f"{host} resolves to a refused address; {reason}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:  # pragma: no cover - pass-through for aiohttp extras
        return getattr(self._inner, name)
