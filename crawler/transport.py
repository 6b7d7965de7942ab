"""How requests travel: proxies, per-host credentials, TLS and cookies, and masking secrets.

aiohttp does the work (`proxy=`, `CookieJar`, `encode_basic_auth`, `ssl=`), aiohttp-socks the SOCKS
proxies. Written here is only what they do not do: choosing a proxy per URL the way curl does
(`--proxy`, else `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`, with `NO_PROXY` in both cases),
credentials sent only to their own host, and one mask for every secret before it can reach a
message. aiohttp's own `trust_env` is not used: it knows no `ALL_PROXY` and no SOCKS, cannot
apply `NO_PROXY` to an explicit proxy, and would send `~/.netrc` passwords to any host in it.
"""

from __future__ import annotations

import re
import ssl
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from yarl import URL

from .errors import ConfigError

if TYPE_CHECKING:
    import aiohttp

    from .settings import Settings

HTTP_PROXY_SCHEMES = ("http", "https")
SOCKS_SCHEMES = ("socks5", "socks5h", "socks4", "socks4a")
MASK = "***"
# the request headers whose values are secrets: archived as "Basic ***" (contract section 7)
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", re.I)


def mask_url(url: str) -> str:
    """`url` with the password of its user part replaced by ***."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)


def mask_header(name: str, value: str) -> str:
    """A request header's value as it may be archived: credentials become `Basic ***`."""
    if name.lower() not in SECRET_HEADERS:
        return value
    scheme, _, _ = value.partition(" ")
    return f"{scheme} {MASK}"


def parse_proxy(value: str, key: str) -> URL:
    """A proxy URL, or a ConfigError naming `key` (with the password masked)."""
    if "://" not in value:
        value = "http://" + value  # curl reads a bare host:port as an HTTP proxy
    problem = None
    try:
        url = URL(value)
        port = url.explicit_port  # curl would guess 1080; a proxy's port is better said
    except ValueError as exc:
        problem = str(exc)
    else:
        if url.scheme not in (*HTTP_PROXY_SCHEMES, *SOCKS_SCHEMES):
            problem = f"the scheme is not one of {', '.join((*HTTP_PROXY_SCHEMES, 'socks5'))}"
        elif not url.host:
            problem = "it has no host"
        elif port is None:
            problem = "it names no port"
        elif url.path not in ("", "/") or url.query_string or url.fragment:
            problem = "a proxy URL has no path, query or fragment"
    if problem:
        raise ConfigError(f"{key}: {mask_url(value)!r} is not a proxy URL ({problem}; expected "
                          "http://[user:password@]host:port or socks5://host:port)")
    return url


def parse_auth(table: Mapping[str, str]) -> dict[str, str]:
    """`auth` as host -> `Authorization` value; a ConfigError names the host, never the value."""
    headers = {}
    for host, credentials in table.items():
        name = host.strip().lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9._\-]+|\[[0-9a-f:.]+\]", name):
            raise ConfigError(f"auth: key {host!r} is not a host name (write the bare host, "
                              "without scheme, port or path)")
        user, colon, password = credentials.partition(":")
        if not colon or not user:
            raise ConfigError(f"auth: the value for {host!r} is not \"user:password\"")
        headers[name] = basic_credentials(user, password)
    return headers


def basic_credentials(user: str, password: str) -> str:
    """The `Authorization` value: aiohttp's encoder (3.14 deprecates BasicAuth for it)."""
    import aiohttp  # here and below, not at the top: checking the settings needs none of it

    encode = getattr(aiohttp, "encode_basic_auth", None)
    if encode is not None:
        value: str = encode(user, password)
        return value
    return aiohttp.BasicAuth(user, password, encoding="utf-8").encode()


def check_headers(headers: Mapping[str, str]) -> None:
    for name in headers:
        if name.lower() == "user-agent":
            raise ConfigError("headers: User-Agent is set by the user_agent setting")
        if name.lower() in SECRET_HEADERS:
            raise ConfigError(f"headers: {name} would go to every host; use the auth table")
        if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
            raise ConfigError(f"headers: {name!r} is not a header name")


def check_ca_file(ca_file: str) -> str:
    """The CA bundle's absolute path (a relative one is read from the current directory)."""
    path = Path(ca_file).absolute()
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ca_file: cannot load {str(path)!r} as PEM certificates: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    return str(path)


def tls(settings: Settings) -> ssl.SSLContext | bool:
    """What aiohttp's `ssl=` gets: True (its default context), False, or one with `ca_file`."""
    if not settings.verify_tls:
        return False
    if not settings.ca_file:
        return True
    context = ssl.create_default_context()  # the system's CAs, and the extra bundle
    context.load_verify_locations(cafile=settings.ca_file)
    return context


def cookie_jar(settings: Settings) -> aiohttp.abc.AbstractCookieJar:
    """RFC 6265 jar for the invocation. `unsafe=True` only lets IP-address hosts keep cookies
    (as browsers do, host-only: a Domain attribute never matches an address); aiohttp's safe
    mode would drop them, and an intranet reached by address could never log in."""
    import aiohttp

    if not settings.cookies:
        return aiohttp.DummyCookieJar()
    return aiohttp.CookieJar(unsafe=True)


class Routes:
    """Which proxy a URL goes through: `proxy`, else the environment's, unless NO_PROXY."""

    def __init__(self, settings: Settings) -> None:
        # urllib's reading (aiohttp's too): either case, lower case winning; under CGI
        # (REQUEST_METHOD set) HTTP_PROXY is a request header and is ignored
        env = urllib.request.getproxies_environment()
        self._no_proxy = env.pop("no", "")
        self._by_scheme: dict[str, URL] = {}
        if settings.proxy:
            explicit = parse_proxy(settings.proxy, "proxy")
            self._by_scheme = {"http": explicit, "https": explicit}
        else:
            for scheme in ("http", "https"):
                value = env.get(scheme) or env.get("all")
                if value:
                    name = f"{scheme if env.get(scheme) else 'all'}_proxy"
                    self._by_scheme[scheme] = parse_proxy(
                        value, f"{name.upper()} or {name} (environment)")
        self.secrets = [u.password for u in self._by_scheme.values() if u.password]
        self.proxies = list(dict.fromkeys(self._by_scheme.values()))

    def proxy_for(self, url: URL) -> URL | None:
        proxy = self._by_scheme.get(url.scheme)
        if proxy is None or not url.host:
            return None
        if self._no_proxy and urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
                url.host, {"no": self._no_proxy}):
            return None
        return proxy


class Secrets:
    """Every password the settings and the environment hold, and one way to hide them."""

    def __init__(self, values: list[str]) -> None:
        # a password of one or two characters would mask half of every message; inside a URL
        # mask_url hides it whatever its length
        self._values = sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        text = mask_url(text)
        for value in self._values:
            text = text.replace(value, MASK)
        return text


def auth_secrets(table: Mapping[str, str]) -> list[str]:
    found = []
    for credentials in table.values():
        user, _, password = credentials.partition(":")
        found += [password, basic_credentials(user, password).removeprefix("Basic ")]
    return [s for s in found if s]


class Sessions:
    """The run's direct session (an HTTP proxy is named per request) and, made when first
    needed, one session per SOCKS proxy, sharing the direct one's cookie jar and headers."""

    def __init__(self, direct: aiohttp.ClientSession, settings: Settings) -> None:
        self._direct = direct
        self._s = settings
        self.routes = Routes(settings)
        self._socks: dict[URL, aiohttp.ClientSession] = {}

    def route(self, url: str) -> tuple[aiohttp.ClientSession, URL | None, URL | None]:
        """(session, `proxy=` for it, the proxy used: named in error messages)."""
        if not self.routes.proxies:  # the common case: no URL parsing per request
            return self._direct, None, None
        proxy = self.routes.proxy_for(URL(url))
        if proxy is None:
            return self._direct, None, None
        if proxy.scheme in HTTP_PROXY_SCHEMES:
            return self._direct, proxy, proxy
        session = self._socks.get(proxy)
        if session is None:
            session = self._socks[proxy] = self._socks_session(proxy)
        return session, None, proxy

    def _socks_session(self, proxy: URL) -> aiohttp.ClientSession:
        import aiohttp
        from aiohttp_socks import ProxyConnector, ProxyType

        kind = ProxyType.SOCKS4 if proxy.scheme.startswith("socks4") else ProxyType.SOCKS5
        # socks5h / socks4a: the proxy resolves the name (curl's reading); the crawler has
        # resolved and checked it already either way (the private-network guard)
        connector = ProxyConnector(
            host=proxy.host or "", port=proxy.port or 1080, proxy_type=kind,
            username=proxy.user, password=proxy.password,
            rdns=proxy.scheme in ("socks5h", "socks4a"),
            limit=self._s.concurrency, limit_per_host=0, ssl=tls(self._s))
        return aiohttp.ClientSession(
            connector=connector, headers=self._direct.headers, auto_decompress=True,
            cookie_jar=self._direct.cookie_jar)

    async def close(self) -> None:
        for session in self._socks.values():
            await session.close()
        self._socks.clear()


def open_session(settings: Settings, resolver: aiohttp.abc.AbstractResolver) -> (
        aiohttp.ClientSession):
    """The run's direct ClientSession: `headers`, the cookie jar and the TLS settings."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=0,
                                     resolver=resolver, use_dns_cache=False, ssl=tls(settings))
    return aiohttp.ClientSession(
        connector=connector, headers={**settings.headers, "User-Agent": settings.user_agent},
        auto_decompress=True, cookie_jar=cookie_jar(settings))
