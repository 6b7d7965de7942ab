"""Step 5: fetch a URL on the event loop: robots.txt, retries, redirects, limits, each
attempt through the host's slot (`politeness`).

aiohttp's exceptions are translated into the `FetchError` tree here and nowhere else.
"""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol
from urllib.parse import urljoin

import aiohttp
import python_socks
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .clock import utc_iso
from .decoding import BodyDecoder, Overflow, codings
from .errors import (
    Blocked,
    ContentError,
    FetchConnection,
    FetchError,
    FetchTimeout,
    FetchTLS,
    ProxyFailure,
    RedirectError,
    TooLarge,
)
from .models import Request, Response
from .politeness import HostSlot, Politeness
from .robots import ROBOTS_MAX_BYTES, Robots, origin_of
from .settings import Settings
from .stats import Stats
from .transport import Secrets, Sessions, auth_secrets, mask_header, parse_auth
from .urls import LinkPolicy, address_class, host_of, ip_literal, normalize

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


Download = Callable[[str], Awaitable[tuple[int, bytes]]]


class RobotsVia(Protocol):
    """Another way to get robots.txt than downloading it each time (a fleet's, shared)."""

    def __call__(self, url: str, download: Download) -> Awaitable[tuple[int, bytes]]:
        """robots.txt at `url`, calling `download` when it must come from the host."""

    def mine(self, origin: str) -> bool:
        """Whether this process downloaded the origin's robots.txt."""


class Disallowed(Exception):
    """Control flow, not an error: robots.txt forbids the URL itself, so it gets no record."""


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header, given as seconds or as an HTTP date; None if bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


class AddressGuard(AbstractResolver):
    """DNS for the crawler: keeps private, loopback and link-local addresses out unless the
    settings allow them, checked on the resolved address, and caches answers for the run."""

    def __init__(self, policy: LinkPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()
        self._cache: dict[tuple[str, int], list[ResolveResult]] = {}
        self.trusted: set[str] = set()  # the proxies: the user's own choice, wherever they are

    async def check(self, host: str, port: int) -> None:
        """Raise `Blocked` or `FetchConnection` unless `host` may be fetched."""
        literal = ip_literal(host)
        if literal is not None:
            if not self._policy.address_allowed(literal):
                raise Blocked(f"{host} is a {address_class(literal)} address; "
                              "private_networks does not allow it")
            return
        await self.resolve(host, port, socket.AF_UNSPEC)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        key = (host, port)
        if key not in self._cache:
            try:
                answers = await self._inner.resolve(host, port, socket.AF_UNSPEC)
            except OSError as exc:
                raise FetchConnection(f"cannot resolve {host}: {exc}") from None
            allowed = [a for a in answers
                       if host in self.trusted or self._policy.address_allowed(a["host"])]
            if not allowed:
                kinds = sorted({address_class(a["host"]) for a in answers})
                raise Blocked(f"{host} resolves to {'/'.join(kinds)} addresses only; "
                              "private_networks does not allow them")
            self._cache[key] = allowed
        return self._cache[key]

    async def close(self) -> None:
        await self._inner.close()


@dataclass(slots=True)
class _Attempt:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    request_headers: tuple[tuple[str, str], ...] = ()
    raw_headers: tuple[tuple[str, str], ...] = ()


def _as_received(raw: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[str, str], ...]:
    # latin-1 gives back every byte a server sent, as warcio writes it again
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


class Fetcher:
    """One URL in, one `Response` out (or a `FetchError`), over the run's one ClientSession."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings, policy: LinkPolicy,
                 guard: AddressGuard, stats: Stats, politeness: Politeness,
                 robots_via: RobotsVia | None = None) -> None:
        self._session = session
        self._s = settings
        self._policy = policy
        self._guard = guard
        self._stats = stats
        self.politeness = politeness
        self._via = robots_via
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout, sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout)
        self.robots = Robots(self._robots_txt, settings.user_agent, obey=settings.robots)
        self._sessions = Sessions(session, settings)
        self._robots_failures: dict[str, FetchError] = {}  # origin -> why no robots.txt came
        self._auth = parse_auth(settings.auth)  # host -> Authorization value
        self._secrets = Secrets(self._sessions.routes.secrets + auth_secrets(settings.auth))
        for proxy in self._sessions.routes.proxies:
            guard.trusted.add(proxy.host or "")

    async def close(self) -> None:
        await self._sessions.close()

    def slot(self, host: str) -> HostSlot:
        return self.politeness.slot(host)

    # -- robots.txt -----------------------------------------------------------------------

    def reads_sitemaps(self, origin: str) -> bool:
        """Whether this process reads the sitemaps the origin's robots.txt names: always,
        unless robots.txt is shared and another process downloaded it (and reads them)."""
        return self._via is None or self._via.mine(origin)

    async def _robots_txt(self, url: str) -> tuple[int, bytes]:
        if self._via is None:
            return await self._download_robots(url)
        return await self._via(url, self._download_robots)

    async def _download_robots(self, url: str) -> tuple[int, bytes]:
        """robots.txt, following up to five redirects (RFC 9309 2.3.1.2). A failing proxy or
        TLS handshake is remembered: the origin stays unfetched (robots.txt unreachable), and
        its URLs get that error record rather than a silent robots refusal."""
        try:
            return await self._robots_hops(url)
        except (ProxyFailure, FetchTLS) as exc:
            self._robots_failures[origin_of(url)] = exc
            raise

    async def _robots_hops(self, url: str) -> tuple[int, bytes]:
        for _ in range(6):
            await self._guard.check(host_of(url), 0)
            async with self.slot(host_of(url)):
                attempt = await self._attempt(url, {}, ROBOTS_MAX_BYTES, truncate=True)
            location = attempt.headers.get("location")
            if attempt.status in REDIRECT_STATUSES and location:
                target = normalize(location, url)
                if target is None:
                    return 404, b""
                url = target
                continue
            return attempt.status, attempt.body
        return 404, b""  # too many redirects: RFC 9309 says treat as unavailable

    async def _robots_allow(self, url: str) -> bool:
        if not self._s.robots:
            return True
        allowed = self.robots.known(url)
        if allowed is None:
            rules = await self.robots.rules(url)
            slot = self.slot(host_of(url))
            if rules.crawl_delay and rules.crawl_delay > slot.delay:
                slot.delay = min(rules.crawl_delay, self._s.max_crawl_delay)
            allowed = rules.allows(url, self._s.user_agent)
        failure = self._robots_failures.get(origin_of(url))
        if failure is not None:
            raise type(failure)(str(failure))
        return allowed

    # -- one URL --------------------------------------------------------------------------

    async def fetch(self, request: Request) -> Response:
        """Follow redirects hop by hop; every hop passes scope, address and robots checks."""
        url = request.url
        seen = {url}
        conditional = {}
        if request.etag:
            conditional["If-None-Match"] = request.etag
        if request.last_modified:
            conditional["If-Modified-Since"] = request.last_modified
        await self._guard.check(host_of(url), 0)
        if not await self._robots_allow(url):
            raise Disallowed(url)
        hops = 0
        total_s = 0.0
        while True:
            attempt, attempts, fetched_at = await self._with_retries(url, conditional)
            total_s += attempt.elapsed_s
            location = attempt.headers.get("location")
            if attempt.status not in REDIRECT_STATUSES or not location:
                return self._response(request, url, attempt, attempts, fetched_at, total_s)
            target = normalize(location, url)
            absolute = target or urljoin(url, location.strip())
            if target is None or self._policy.refusal(target) or not await self._hop_allowed(
                    target):
                return self._response(request, url, attempt, attempts, fetched_at, total_s,
                                      location=absolute)
            # a hop that set a cookie may lead back to a URL already seen (a log-in step)
            if target in seen and not (self._s.cookies and "set-cookie" in attempt.headers):
                raise RedirectError(f"redirect loop: {url} -> {target}", attempts)
            hops += 1
            if hops > self._s.max_redirects:
                raise RedirectError(f"more than {self._s.max_redirects} redirects", attempts)
            seen.add(target)
            url = target
            conditional = {}

    async def document(self, url: str) -> tuple[int, bytes]:
        """A file the crawler reads for itself (a sitemap): no record, no redirects."""
        attempt, _, _ = await self._with_retries(url, {})
        return attempt.status, attempt.body

    async def _hop_allowed(self, url: str) -> bool:
        try:
            await self._guard.check(host_of(url), 0)
        except Blocked:
            return False
        except FetchConnection:
            return True  # unresolvable: let the hop fail as a connection error
        return await self._robots_allow(url)

    def _response(self, request: Request, url: str, attempt: _Attempt, attempts: int,
                  fetched_at: float, total_s: float, location: str | None = None) -> Response:
        return Response(url=request.url, final_url=url, status=attempt.status,
                        headers=attempt.headers, body=attempt.body,
                        elapsed_ms=round(total_s * 1000), attempts=attempts,
                        fetched_at=utc_iso(fetched_at), location=location,
                        request_headers=attempt.request_headers,
                        raw_headers=attempt.raw_headers)

    async def _with_retries(self, url: str,
                            headers: dict[str, str]) -> tuple[_Attempt, int, float]:
        host = host_of(url)
        slot = self.slot(host)
        attempts = 0
        while True:
            attempts += 1
            await self._guard.check(host, 0)
            fetched_at = time.time()
            try:
                async with slot:
                    attempt = await self._attempt(url, headers, self._s.max_bytes)
            except (FetchTimeout, FetchConnection) as exc:
                exc.attempts = attempts
                slot.failed()
                if attempts > self._s.retries:
                    raise
                self._back_off(slot, attempts, None)
                continue
            if attempt.status >= 500:
                slot.failed()
            elif attempt.status != 429:
                slot.succeeded()
            if attempt.status in RETRY_STATUSES and attempts <= self._s.retries:
                self._back_off(slot, attempts, attempt.headers.get("retry-after"))
                continue
            return attempt, attempts, fetched_at

    def _back_off(self, slot: HostSlot, attempts: int, retry_after: str | None) -> None:
        self._stats.count("retries")
        wait = self._s.backoff * 2 ** (attempts - 1) * random.uniform(0.5, 1.5)
        asked = retry_after_s(retry_after, time.time())
        if asked is not None:
            wait = max(wait, min(asked, self._s.max_retry_after))
        slot.defer(wait)

    async def _attempt(self, url: str, headers: dict[str, str], max_bytes: int,
                       truncate: bool = False) -> _Attempt:
        start = time.perf_counter()
        session, proxy, via = self._sessions.route(url)
        credentials = self._auth.get(host_of(url))  # only this host's, on every hop
        if credentials is not None:
            headers = {**headers, "Authorization": credentials}
        try:
            # auto_decompress off: BodyDecoder undoes every coding under the byte limit
            async with session.get(url, headers=headers, allow_redirects=False, proxy=proxy,
                                   timeout=self._timeout, auto_decompress=False) as resp:
                if proxy is not None and resp.status == 407 and url.startswith("http:"):
                    resp.close()
                    raise ProxyFailure(f"proxy {via} refused the request: 407 "
                                          "Proxy Authentication Required")
                head = {k.lower(): v for k, v in resp.headers.items()}
                for name in ("set-cookie", "content-encoding"):
                    if len(resp.headers.getall(name, ())) > 1:
                        head[name] = ", ".join(resp.headers.getall(name))
                try:
                    layers = codings(resp.headers.getall("content-encoding", []))
                except ContentError:
                    resp.close()
                    raise
                declared = resp.content_length
                if declared is not None and declared > max_bytes and not layers and not truncate:
                    resp.close()
                    raise TooLarge(f"Content-Length {declared} is over max_bytes ({max_bytes})")
                self._stats.responses += 1
                body = await self._read(resp, BodyDecoder(layers, max_bytes), truncate)
                return _Attempt(resp.status, head, body, time.perf_counter() - start,
                                tuple((k, mask_header(k, v))
                                      for k, v in resp.request_info.headers.items()),
                                _as_received(resp.raw_headers))
        except FetchError as exc:
            exc.args = (self._secrets.mask(str(exc)),)
            raise
        except Exception as exc:
            error = self._fetch_error(exc, via)
            if error is exc:
                raise
            error.args = (self._secrets.mask(str(error)),)
            raise error from None

    def _fetch_error(self, exc: Exception, via: URL | None) -> Exception:
        """aiohttp's (and aiohttp-socks') exception as the FetchError of its kind; a failure of
        the proxy itself names the proxy. Anything else is returned as it is."""
        if isinstance(exc, aiohttp.ClientProxyConnectionError | python_socks.ProxyConnectionError):
            return ProxyFailure(f"proxy {via} unreachable: {exc}")
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            return ProxyFailure(f"proxy {via} refused: {exc.status} {exc.message}")
        if isinstance(exc, python_socks.ProxyTimeoutError):
            return ProxyFailure(f"proxy {via} did not answer: {exc}")
        if isinstance(exc, python_socks.ProxyError):
            return ProxyFailure(f"proxy {via} refused: {exc}")
        if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
            return FetchTLS(f"TLS: {exc}")
        if isinstance(exc, TimeoutError):
            return FetchTimeout(f"no complete answer within {self._s.timeout:g} s")
        if isinstance(exc, aiohttp.ClientPayloadError):  # cut short, or broken chunked framing
            return FetchConnection(f"body cut short: {exc}")
        if isinstance(exc, aiohttp.ClientError | OSError):
            return FetchConnection(f"{type(exc).__name__}: {exc}")
        if isinstance(exc, ValueError | UnicodeError):  # yarl or aiohttp refusing a URL/header
            return FetchError(f"{type(exc).__name__}: {exc}")
        return exc

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse, decoder: BodyDecoder, truncate: bool) -> bytes:
        """The decoded body; past the limit, refused (or, with `truncate`, cut there)."""
        try:
            async for chunk in resp.content.iter_chunked(1 << 16):
                decoder.feed(chunk)
        except Overflow:
            resp.close()
            if truncate:
                return decoder.truncated()
            raise TooLarge(f"body over max_bytes ({decoder.limit}) after decompression") from None
        return decoder.body(complete=True)
