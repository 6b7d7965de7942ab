"""URL normalization, scope and address rules: the frontier's admission checks."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import ada_url

__all__ = [
    "ADDRESS_CLASSES",
    "LinkPolicy",
    "absolute",
    "address_class",
    "host_of",
    "ip_literal",
    "normalize",
    "registrable_domain",
    "repeats_segments",
    "validate_pattern",
]

# every class but "public"; the order is the order of the checks in address_class
ADDRESS_CLASSES = ("loopback", "reserved", "link_local", "unique_local", "private")
_SCOPES = ("host", "domain", "any")
_SESSION_NAMES = frozenset({"jsessionid", "phpsessid", "sid", "sessionid"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# a run of 1 to 3 path segments repeated this many times in a row is a crawler trap, the mark
# of a relative link that grows the path (Heritrix's PathologicalPath rule, widened)
TRAP_REPEATS = 3
_TRAP_WIDTHS = (1, 2, 3)


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# an escape, or a character outside RFC 3986 pchar (unreserved, sub-delims, ":", "@") and
# the component's own delimiters; a "%" that starts no escape is itself escaped
_PATH_UNSAFE = re.compile(r"%([0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/]")
_QUERY_UNSAFE = re.compile(r"%([0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]")

# what DNS can look up (RFC 1035 lengths); WHATWG lets more through
_HOST_RE = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
_HOST_MAX = 253
# a URL that normalization leaves as ada gave it: http(s), a DNS name (no trailing dot) or an
# IPv4 address, a port that is not 0, a path of pchars with no escape, no `;` (a session id
# may hide behind one), no query
_PLAIN = re.compile(r"https?://([a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*)(?::[1-9][0-9]*)?"
                    r"(/[A-Za-z0-9\-._~!$&'()*+,=:@/]*)")

_PRIVATE_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def normalize(url: str, base: str | None = None) -> str | None:
    """Give every spelling of a page one key, so dedup works; None for what is not fetched.

    Never raises: hrefs come from arbitrary pages, and a bad one must cost only itself.
    """
    try:
        return _normalize(url, base)
    except ValueError:  # ada's refusal, or a lone surrogate it cannot encode
        return None


def absolute(url: str, base: str) -> str | None:
    """A URL of any scheme made absolute as a browser would (WHATWG), not normalized: for
    fields recorded as written, such as a `file:` canonical. None if browsers refuse it."""
    try:
        return ada_url.join_url(base, url)
    except ValueError:
        return None


def _normalize(url: str, base: str | None) -> str | None:
    # the WHATWG URL parser (ada) resolves as browsers do: tabs and newlines, backslashes,
    # `http:page.html`, IPv4 number forms, UTS #46 hosts; it raises ValueError for a URL
    # (or a host) that browsers refuse
    href = ada_url.join_url(base, url) if base is not None else ada_url.normalize_url(url)
    href = href.partition("#")[0]
    plain = _PLAIN.fullmatch(href)
    if plain is not None and plain.end(1) - plain.start(1) <= _HOST_MAX and "/." not in href:
        return href  # what the steps below would give it back unchanged, at a third the cost
    scheme, sep, rest = href.partition("://")
    if scheme not in _DEFAULT_PORTS or not sep:
        return None
    rest = rest.partition("#")[0]
    cut = rest.find("/")  # a special URL always has a path
    authority, rest = rest[:cut], rest[cut:]
    authority = authority.rpartition("@")[2]  # userinfo is dropped
    if authority.startswith("["):  # ada gives IPv6 compressed, and refuses zone IDs
        host, port = authority.partition("]")[0] + "]", authority.partition("]")[2]
    else:
        host, colon, port = authority.partition(":")
        host, port = host.removesuffix("."), colon + port  # `a.com.` is `a.com` to DNS
        if len(host) > _HOST_MAX or not _HOST_RE.fullmatch(host):
            return None  # WHATWG lets `$`, `!` or 64-letter labels into a name; DNS does not
    if port == ":0":
        return None  # WHATWG accepts it; no server listens there
    path, mark, query = rest.partition("?")
    path = _escape(path, _PATH_UNSAFE)
    if ";" in path:
        path = _strip_path_sessions(path)
    if "/." in path:  # an escape decoded to "." can make a dot-segment
        path = _remove_dot_segments(path)
    if mark:
        query = _strip_query_sessions(_escape(query, _QUERY_UNSAFE))
    return f"{scheme}://{host}{port}{path}" + (f"?{query}" if query else "")


def _escape(text: str, unsafe: re.Pattern[str]) -> str:
    def fix(match: re.Match[str]) -> str:
        if match[1]:
            char = chr(int(match[1], 16))
            return char if char in _UNRESERVED else match[0].upper()
        return "".join(f"%{byte:02X}" for byte in match[0].encode("utf-8"))

    return unsafe.sub(fix, text)


def _strip_path_sessions(path: str) -> str:
    segments = []
    for segment in path.split("/"):
        name, *params = segment.split(";")
        kept = [p for p in params if p.partition("=")[0].lower() not in _SESSION_NAMES]
        segments.append(";".join([name, *kept]))
    return "/".join(segments)


def _strip_query_sessions(query: str) -> str:
    pairs = query.split("&")
    return "&".join(p for p in pairs if p.partition("=")[0].lower() not in _SESSION_NAMES)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 5.2.4 for an absolute path; ".." above the root stays at the root
    segments = path.split("/")[1:]
    out: list[str] = []
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
            continue
        if last:
            out.append("")
    return "/" + "/".join(out)


def host_of(url: str) -> str:
    """Scope and politeness key on the host name alone, port aside (contract 4a): urlsplit's
    `hostname`, remembered by the URL's `scheme://netloc` (the host is that part's alone), as
    every admitted, scheduled and fetched URL asks it (urlsplit was 40 % of the admission)."""
    start = url.find("://") + 3
    if start < 3:
        return _hostname(url)
    end = len(url)
    for mark in "/?#":  # where urlsplit ends the netloc
        at = url.find(mark, start)
        if 0 <= at < end:
            end = at
    return _origin_host(url[:end])


@functools.lru_cache(maxsize=4096)
def _origin_host(origin: str) -> str:
    return _hostname(origin)


def _hostname(url: str) -> str:
    return urlsplit(url).hostname or ""


@functools.cache
def _extractor() -> Any:
    # imported here: tldextract (and the requests it loads) costs 80 ms at each process start,
    # and a crawl whose seeds are addresses or one-label names never asks it anything.
    # The bundled snapshot only: no fetch of the suffix list, no cache file under ~/.cache;
    # private suffixes (github.io, ...) included, so one user's site is not its whole host
    import tldextract

    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
    )


@functools.lru_cache(maxsize=65536)
def registrable_domain(host: str) -> str:
    """Group a site's hosts (www., shop., ...) under one key for the "domain" scope.

    A host under no known suffix falls to the Public Suffix List's default rule (its last
    label is the suffix); a host that is itself a suffix stands for itself.
    """
    if "." not in host or ip_literal(host) is not None:
        return host
    found = _extractor()(host)
    if found.top_domain_under_public_suffix:
        return str(found.top_domain_under_public_suffix)
    if not found.suffix:
        return ".".join(host.split(".")[-2:])
    return host


@functools.lru_cache(maxsize=4096)
def ip_literal(host: str) -> str | None:
    """Tell an address-valued host, checkable before any lookup, from a name to resolve."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)  # asked before every request; hosts have few addresses
def address_class(ip: str) -> str:
    """Say where an address lies so links from public pages cannot reach inner networks.

    Raises ValueError for anything that is not an IP address. Addresses that are not
    globally routable and fit no named class count as "reserved".
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return "loopback"
    if addr.is_unspecified or addr.is_multicast or addr.is_reserved:
        return "reserved"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _THIS_NETWORK:
        return "reserved"
    if addr.is_link_local:
        return "link_local"
    if isinstance(addr, ipaddress.IPv6Address) and addr in _UNIQUE_LOCAL:
        return "unique_local"
    if isinstance(addr, ipaddress.IPv4Address) and any(addr in n for n in _PRIVATE_V4):
        return "private"
    return "public" if addr.is_global else "reserved"


def _host_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.path


def repeats_segments(path: str) -> bool:
    """Whether a run of path segments repeats TRAP_REPEATS times in a row (`/a/b/a/b/a/b/`)."""
    segments = [s for s in path.split("/") if s]
    if len(segments) < TRAP_REPEATS or len(set(segments)) == len(segments):
        return False  # a repeat needs some segment twice, and most paths have none: 0.5 us
    for width in _TRAP_WIDTHS:
        span = width * TRAP_REPEATS
        for start in range(len(segments) - span + 1):
            block = segments[start : start + width]
            if all(segments[start + k * width : start + (k + 1) * width] == block
                   for k in range(1, TRAP_REPEATS)):
                return True
    return False


def validate_pattern(pattern: str) -> str | None:
    """Let settings reject a bad allow/deny regex at start, naming it, not mid-crawl."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"invalid regular expression {pattern!r}: {exc}"
    return None


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    # compiled here, not held by the policy, so the policy stays plain picklable data
    return tuple(re.compile(p) for p in patterns)


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """Which normalized URLs the crawler may follow; picklable, so parse workers can filter.

    `private_allowed` names the address classes (see ADDRESS_CLASSES) fetchable besides
    "public"; the fetcher checks resolved addresses with `address_allowed`.
    """

    scope: str
    seed_hosts: frozenset[str]
    seed_domains: frozenset[str]
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    max_url_length: int = 2048
    private_allowed: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.scope not in _SCOPES:
            raise ValueError(f"scope {self.scope!r}: expected one of {', '.join(_SCOPES)}")
        unknown = self.private_allowed - set(ADDRESS_CLASSES)
        if unknown:
            raise ValueError(f"private_allowed {sorted(unknown)}: not address classes")
        for pattern in self.allow + self.deny:
            error = validate_pattern(pattern)
            if error:
                raise ValueError(error)

    def refusal(self, url: str) -> str | None:
        """Say why a link is not followed, so stats can count refusals by reason."""
        if len(url) > self.max_url_length:
            return "length"
        plain = _PLAIN.fullmatch(url)  # host and path read once (host_of's rule, contract 4a)
        host, path = (plain[1], plain[2]) if plain is not None else _host_and_path(url)
        if self.scope == "host" and host not in self.seed_hosts:
            return "scope"
        if self.scope == "domain" and registrable_domain(host) not in self.seed_domains:
            return "scope"
        ip = ip_literal(host)
        if ip is not None and not self.address_allowed(ip):
            return "private"
        if self.allow and not any(p.search(url) for p in _compiled(self.allow)):
            return "allow"
        if self.deny and any(p.search(url) for p in _compiled(self.deny)):
            return "deny"
        if repeats_segments(path):
            return "trap"
        return None

    def address_allowed(self, ip: str) -> bool:
        """Check a resolved address at connect time, where DNS tricks cannot hide it.

        Fails closed: a string that is not an address is not allowed.
        """
        try:
            kind = address_class(ip)
        except ValueError:
            return False
        return kind == "public" or kind in self.private_allowed

    @classmethod
    def for_seeds(
        cls,
        seeds: Iterable[str],
        *,
        scope: str,
        private_networks: str,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        max_url_length: int = 2048,
        resolved: Mapping[str, Iterable[str]] | None = None,
    ) -> LinkPolicy:
        """Derive scope and private-network rights from the seeds, the one trusted input.

        With private_networks "seeds", a seed in a private range opens that range only.
        Raises ValueError for a seed that is not an http(s) URL or an unknown mode.
        """
        hosts: set[str] = set()
        for seed in seeds:
            url = normalize(seed)
            if url is None:
                raise ValueError(f"seed {seed!r} is not an http(s) URL")
            hosts.add(host_of(url))
        if private_networks == "allow":
            allowed = frozenset(ADDRESS_CLASSES)
        elif private_networks == "deny":
            allowed = frozenset()
        elif private_networks == "seeds":
            allowed = frozenset(_seed_classes(hosts, resolved or {})) - {"public"}
        else:
            raise ValueError(
                f"private_networks {private_networks!r}: expected seeds, allow or deny"
            )
        return cls(
            scope=scope,
            seed_hosts=frozenset(hosts),
            seed_domains=frozenset(registrable_domain(h) for h in hosts),
            allow=tuple(allow),
            deny=tuple(deny),
            max_url_length=max_url_length,
            private_allowed=allowed,
        )


def _seed_classes(hosts: Iterable[str], resolved: Mapping[str, Iterable[str]]) -> Iterable[str]:
    for host in hosts:
        ip = ip_literal(host)
        if ip is not None:
            yield address_class(ip)
            continue
        if host == "localhost" or host.endswith(".localhost"):  # RFC 6761
            yield "loopback"
        for address in resolved.get(host, ()):
            literal = ip_literal(address)
            if literal is not None:
                yield address_class(literal)
