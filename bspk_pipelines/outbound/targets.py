"""Where webhooks may go: to public addresses, never into the deployment's own networks unless
it says so.

An address is refused when it is loopback, private (RFC 1918, carrier-grade NAT), link-local,
unique-local or site-local IPv6, unspecified, multicast, reserved, or a cloud metadata service;
an IPv6 address carrying an IPv4 one (mapped, 6to4, NAT64) is judged as the IPv4 address. A
deployment allows networks of its own (`TargetPolicy.parse`, from BSPK_WEBHOOK_ALLOW_NETWORKS):
the demo and the tests allow 127.0.0.0/8 for their local receivers.

It is checked twice. `check_url` judges a URL's host as written (an address in any notation the
resolver accepts, or a `localhost` name) when an endpoint is created or changed; other names are
judged when sent. `guarded_session` is what deliveries go through: each connection resolves its
host once, drops the refused addresses and connects to a checked one, so a name that answers
differently to a second look-up (DNS rebinding) reaches nothing it was not allowed to. Proxies
from the environment are not used: a proxy would resolve the name itself, out of our sight.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NameResolutionError, NewConnectionError
from urllib3.util import connection, parse_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The first network an address is in names its kind: metadata services before the ranges they sit in.
REFUSED_NETWORKS: tuple[tuple[Network, str], ...] = tuple((ipaddress.ip_network(net), kind) for net, kind in (
    ("169.254.169.254/32", "metadata"),  # AWS, GCP, Azure, OpenStack, Oracle
    ("169.254.170.2/32", "metadata"),  # AWS ECS task credentials
    ("100.100.100.200/32", "metadata"),  # Alibaba Cloud
    ("fd00:ec2::254/128", "metadata"),  # AWS over IPv6
    ("0.0.0.0/8", "unspecified"), ("::/128", "unspecified"),
    ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"),
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "private"),  # carrier-grade NAT (RFC 6598)
    ("169.254.0.0/16", "link-local"), ("fe80::/10", "link-local"),
    ("fc00::/7", "unique-local"), ("fec0::/10", "site-local"),
    ("224.0.0.0/4", "multicast"), ("ff00::/8", "multicast"),
    ("192.0.0.0/24", "reserved"), ("198.18.0.0/15", "reserved"), ("240.0.0.0/4", "reserved"),
    ("::/96", "reserved"), ("100::/64", "reserved"),  # IPv4-compatible (deprecated), discard-only
))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCALHOST = ("127.0.0.1", "::1")  # what a `localhost` name means (RFC 6761), whatever a resolver says


class RefusedTarget(ValueError):
    """A receiver's host is, or resolves only to, addresses webhooks are not sent to."""

    def __init__(self, host: str, refused: list[tuple[str, str]], numeric: bool):
        self.host, self.refused, self.numeric = host, refused, numeric
        [(address, kind), *_] = refused
        if numeric:
            a_kind = ("an " if kind[0] in "aeiou" else "a ") + kind
            text = f"{host} is {a_kind} address" if host == address else f"{host} is {address}, {a_kind} address"
        else:
            text = f"{host} resolves to " + ", ".join(f"{a} ({k})" for a, k in refused)
        super().__init__(text)


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _numeric_addresses(host: str) -> list[str] | None:
    """The addresses `host` stands for if it is written as one (`10.0.0.1`, `::1`, `2130706433`, ...)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):  # a name (or not even that: sending will say so)
        return None
    return [info[4][0] for info in found]


@dataclass(frozen=True)
class TargetPolicy:
    """Which addresses deliveries may connect to: every public one, and those in `allowed`."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TargetPolicy:
        """Networks (`127.0.0.0/8`, `fd00::/8`) or single addresses, separated by commas or spaces."""
        networks = []
        for item in text.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not a network (like 127.0.0.0/8) or an address") from None
        return cls(tuple(networks))

    def refusal(self, address: Address) -> str | None:
        """The kind of address it is, if deliveries may not connect to it; None if they may."""
        judged = (_carried_ipv4(address) if address.version == 6 else None) or address
        if any(a in network for a in (address, judged) for network in self.allowed):
            return None
        return next((kind for network, kind in REFUSED_NETWORKS if judged in network), None)

    def permitted(self, host: str, addresses: Iterable[str], numeric: bool = False) -> list[str]:
        """The addresses of `host` that may be connected to, in the resolver's order; raises
        RefusedTarget if there are none."""
        allowed, refused = [], []
        for address in dict.fromkeys(addresses):
            kind = self.refusal(ipaddress.ip_address(address))
            if kind:
                refused.append((address.partition("%")[0], kind))
            else:
                allowed.append(address)
        if not allowed and refused:
            raise RefusedTarget(host, refused, numeric)
        return allowed

    def check_url(self, url: str) -> None:
        """Raise RefusedTarget if the URL's host is written as a refused address or is a
        `localhost` name; any other name is judged when sent, on what it resolves to then."""
        try:
            host = (parse_url(url).host or "").strip("[]").rstrip(".").lower()
        except LocationParseError:
            return  # no host to judge: sending fails as it always did
        if host == "localhost" or host.endswith(".localhost"):
            self.permitted(host, LOCALHOST)
        elif (addresses := _numeric_addresses(host)) is not None:
            self.permitted(host, addresses, numeric=True)


class _Guarded:
    """A urllib3 connection that resolves its host once and connects only to an address `policy`
    permits (the first that answers); errors are urllib3's own, so requests reports them as usual."""

    policy: TargetPolicy

    def _new_conn(self) -> socket.socket:
        host = self._dns_host.strip("[]")
        try:
            found = socket.getaddrinfo(host, self.port, connection.allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        except UnicodeError:  # as urllib3 reports a name it cannot encode
            raise LocationParseError(f"'{host}', label empty or too long") from None
        numeric = _is_address(host)
        error: Exception = NewConnectionError(self, f"no address found for {self.host}")
        for address in self.policy.permitted(self.host, [info[4][0] for info in found], numeric):
            try:
                return connection.create_connection((address, self.port), self.timeout,
                                                    source_address=self.source_address, socket_options=self.socket_options)
            except TimeoutError as e:
                error = ConnectTimeoutError(self, f"connection to {self.host} ({address}) timed out "
                                                  f"(connect timeout={self.timeout})")
                error.__cause__ = e
            except OSError as e:
                error = NewConnectionError(self, f"failed to connect to {self.host} ({address}): {e}")
                error.__cause__ = e
        raise error


def _pool_classes(policy: TargetPolicy) -> dict[str, type[HTTPConnectionPool]]:
    def guarded(pool: type[HTTPConnectionPool], conn: type[HTTPConnection]) -> type[HTTPConnectionPool]:
        connection_class = type(f"Guarded{conn.__name__}", (_Guarded, conn), {"policy": policy})
        return type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": connection_class})

    return {"http": guarded(HTTPConnectionPool, HTTPConnection), "https": guarded(HTTPSConnectionPool, HTTPSConnection)}


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: TargetPolicy, **kwargs):
        self.policy = policy  # before HTTPAdapter.__init__, which makes the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self.policy)


def guarded_session(policy: TargetPolicy, pool_size: int) -> requests.Session:
    """An HTTP session whose every connection goes through `policy`: no proxy, no retry."""
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter(policy, pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
