"""Where a webhook may go, and a connection that goes exactly there (the SSRF guard).

A partner's URL is https (plain http only where ``webhook_allow_http`` is set, never in
production), carries no credentials, and its host must resolve only to public
addresses: loopback, private, link-local, shared (CGNAT), multicast, reserved and
unspecified addresses are refused, as are IPv6 forms that embed such an IPv4 address
(IPv4-mapped, 6to4, Teredo, NAT64). The check runs when an endpoint is registered or
changed and again before every attempt, and the attempt then connects to one of the
addresses just checked — never to a name resolved a second time — so DNS rebinding
has no window. TLS still verifies the certificate for the host name (SNI).
``webhook_allow_private_targets`` (development and tests only) skips the address
check, not the resolution or the pinning.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpcore
import structlog

from app.settings import Settings

MAX_URL_LENGTH = 2048
CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
USER_AGENT = "advocase-webhooks/1"

log = structlog.get_logger("app.webhooks")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Exception):
    """The URL, or an address its host resolves to, may not receive webhooks."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Target:
    url: str          # as given, checked
    scheme: str
    host: str         # ASCII (IDNA) host name or address literal, no brackets
    port: int
    target: str       # path and query sent in the request line
    addresses: tuple[str, ...]  # checked addresses, in the resolver's order


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    host: str
    port: int
    target: str


def parse_url(url: str, settings: Settings) -> ParsedUrl:
    """Check the form of ``url`` (no look-up); raises :class:`TargetRefused`."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise TargetRefused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused("The URL is not valid.") from exc
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if settings.webhook_allow_http else ("https",)
    if scheme not in allowed:
        raise TargetRefused("The URL must start with https://.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL must not contain a user name or password.")
    if parts.fragment:
        raise TargetRefused("The URL must not have a #fragment.")
    host = parts.hostname or ""
    if not host:
        raise TargetRefused("The URL has no host.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise TargetRefused("The URL's host name is not valid.") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return ParsedUrl(scheme, host, port or (443 if scheme == "https" else 80), target)


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a module attribute so tests can stand in a
    resolver of their own)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    embedded: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address (and so not one of ours or our neighbours')."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if not all(is_public(inner) for inner in _embedded_ipv4(address)):
            return False
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_loopback or address.is_private or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified)


def resolve_target(url: str, settings: Settings) -> Target:
    """Parse ``url``, resolve its host and check every address; raises TargetRefused."""
    parsed = parse_url(url, settings)
    try:
        literal: IPAddress | None = ipaddress.ip_address(parsed.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolve_addresses(parsed.host, parsed.port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused("The URL's host name does not resolve.") from exc
        if not addresses:
            raise TargetRefused("The URL's host name does not resolve.")
    if not settings.webhook_allow_private_targets:
        for text in addresses:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError as exc:
                raise TargetRefused("The URL's host resolves to an unusable address.") from exc
            if not is_public(address):
                raise TargetRefused(
                    "The URL's host resolves to a loopback, private, link-local or other "
                    "non-public address; webhooks go to public https addresses only.")
    return Target(url, parsed.scheme, parsed.host, parsed.port, parsed.target,
                  tuple(addresses))


# --- sending to a checked address ---------------------------------------------------------


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read and write ends by one overall deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _remaining(self, timeout: float | None, exc: type[Exception]) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise exc("the attempt took longer than its overall time limit")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname,
                                      self._remaining(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses whatever host name the request names, so the
    name is never resolved again between the check and the connection."""

    def __init__(self, addresses: tuple[str, ...], deadline: float) -> None:
        self._addresses = addresses
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        last: Exception = httpcore.ConnectError("no address to connect to")
        for address in self._addresses:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise httpcore.ConnectTimeout("the attempt ran out of time while connecting")
            try:
                stream = self._inner.connect_tcp(
                    address, port, timeout=min(timeout or CONNECT_TIMEOUT, remaining),
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(frozen=True)
class SendOutcome:
    status_code: int | None
    error: str | None  # an error class name, never a message
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _host_header(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def post(url: str, *, headers: dict[str, str], body: bytes, settings: Settings) -> SendOutcome:
    """POST ``body`` to ``url``: resolve and check the host now, connect to a checked
    address, follow no redirect, read no response body; connect within 3 s and finish
    within 10 s."""
    started = time.monotonic()
    deadline = started + TOTAL_TIMEOUT
    status: int | None = None
    error: str | None = None
    try:
        target = resolve_target(url, settings)
        request_headers = [("Host", _host_header(target)), ("User-Agent", USER_AGENT),
                           ("Content-Type", "application/json"),
                           ("Content-Length", str(len(body))), *headers.items()]
        with httpcore.ConnectionPool(
                ssl_context=_ssl_context(), max_connections=1, retries=0, http1=True,
                http2=False, network_backend=_PinnedBackend(target.addresses, deadline),
        ) as pool, pool.stream(
                "POST",
                httpcore.URL(scheme=target.scheme, host=target.host, port=target.port,
                             target=target.target),
                headers=request_headers, content=body,
                extensions={"timeout": {"connect": CONNECT_TIMEOUT, "read": TOTAL_TIMEOUT,
                                        "write": TOTAL_TIMEOUT, "pool": CONNECT_TIMEOUT}},
        ) as response:
            status = response.status  # the body is neither read nor kept
    except TargetRefused:
        error = "TargetRefused"
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
            httpcore.UnsupportedProtocol, ssl.SSLError, OSError) as exc:
        error = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - recorded as a failed attempt, retried on schedule
        # (the task's soft time limit lands here too); the class names what went wrong.
        log.warning("webhook_send_error", error=type(exc).__name__, exc_info=True)
        error = type(exc).__name__[:64]
    duration_ms = int((time.monotonic() - started) * 1000)
    return SendOutcome(status, error, duration_ms)
