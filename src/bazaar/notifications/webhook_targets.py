"""Where a webhook may point: public addresses only, unless the operator allows private ones.

A URL is checked when the webhook is registered and again whenever the sender opens a
connection, because a name may resolve elsewhere by then (DNS rebinding); the sender then
connects to exactly the addresses it checked (webhook_transport.py). Every address a name
resolves to must pass, so a name answering with one public and one private address is refused.
"""

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from bazaar.notifications.settings import NotificationsSettings
from bazaar.platform.errors import FieldError, Unavailable, Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
"""Cloud instance-metadata services by name."""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
"""Cloud instance-metadata services (AWS, GCP, Azure, OpenStack; ECS tasks; AWS over IPv6;
Alibaba): refused even where private addresses are allowed, since a developer's receiver is
never one of them and on a cloud machine they hand out credentials."""

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NO_SUCH_NAME = {
    socket.EAI_NONAME,
    getattr(socket, "EAI_NODATA", socket.EAI_NONAME),
    getattr(socket, "EAI_ADDRFAMILY", socket.EAI_NONAME),
}


class TargetRefused(Exception):
    """The webhook's host is, or resolves to, an address webhooks may not reach."""


def host_and_port(url: str) -> tuple[str, int]:
    """The host and port of an absolute http(s) URL, else 422 naming `url`."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
    except ValueError:  # a bad port or bracketed host
        scheme, host, port = "", None, None
    if scheme not in ("http", "https") or not host or port == 0 or _has_space(url):
        raise Unprocessable(
            "The webhook URL is not valid",
            [FieldError(["body", "url"], "expected an absolute http or https URL")],
        )
    return host, port or (443 if scheme == "https" else 80)


async def check_url(url: str, settings: NotificationsSettings) -> str:
    """The URL if a webhook may point there: 422 naming `url` for a bad URL, a refused
    address or a name that does not exist, 503 when DNS does not answer now.

    Where private addresses are allowed, a name is not looked up here (only the metadata
    names are refused): the sender checks what it resolves to when it connects.
    """
    host, port = host_and_port(url)
    allowed = settings.webhook_allow_private
    if allowed and _literal(host) is None and _name_refusal(host, allow_private=True) is None:
        return url
    try:
        async with asyncio.timeout(settings.webhook_timeout):
            await checked_addresses(host, port, allow_private=allowed)
    except TargetRefused as refused:
        raise Unprocessable(
            "Webhooks may not point at this address", [FieldError(["body", "url"], str(refused))]
        ) from None
    except socket.gaierror as error:
        if error.errno in _NO_SUCH_NAME:
            raise Unprocessable(
                "The webhook's host does not resolve",
                [FieldError(["body", "url"], f"{host} has no address")],
            ) from None
        raise Unavailable(f"Could not resolve {host} now") from None
    except TimeoutError:
        raise Unavailable(f"Could not resolve {host} now") from None
    return url


async def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Every address `host` stands for, each one allowed, for the caller to connect to.

    Raises TargetRefused naming the first address (or name) that is not allowed; a failed
    look-up raises socket.gaierror. The caller bounds the look-up's time (asyncio.timeout).
    """
    reason = _name_refusal(host, allow_private=allow_private)
    if reason is not None:
        raise TargetRefused(f"{host} is {reason}")
    literal = _literal(host)
    addresses = [literal] if literal is not None else await resolve(host, port)
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            where = f"{address}" if literal is not None else f"{host} resolves to {address}, which"
            raise TargetRefused(f"{where} is {reason}")
    return addresses


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` resolves to, looked up by the event loop (in its thread pool, so
    the loop is never blocked)."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why webhooks may not reach `address`, or None if they may.

    An IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4, NAT64) is judged by the IPv4
    address it reaches.
    """
    address = _embedded_ipv4(address) or address
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private:
        return None
    for kind, matches in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a shared (carrier-grade NAT)", address in _SHARED),
        ("a reserved", address.is_reserved),
        ("a private", address.is_private),
        ("a site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("a non-public", not address.is_global),
    ):
        if matches:
            return f"{kind} address"
    return None


def _name_refusal(host: str, *, allow_private: bool) -> str | None:
    name = host.rstrip(".").lower()
    if name in METADATA_NAMES:
        return "a cloud metadata service"
    if not allow_private and (name == "localhost" or name.endswith(".localhost")):
        return "a loopback name"
    return None


def _has_space(url: str) -> bool:
    return any(character.isspace() for character in url)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
