"""Step 3a: robots.txt per RFC 9309, fetched once per origin per run, parsed by protego.

protego matches rules to paths well, but picks groups unlike RFC 9309: it finds a group's
name anywhere in the User-Agent it is given (`crawl` in `crawler`, `github` in a URL of the
header), and ends a group at a user-agent line that follows any other line. So the groups
are chosen here (`_group_for`), by the product token alone (2.2.1) and ending only at a
user-agent line after rules (2.2.4), and protego gets that one group to match paths with.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from protego import Protego

log = logging.getLogger(__name__)

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least 500 KiB
# RFC 9309 2.2.1: the product token is the leading `[a-zA-Z_-]+`, matched case-insensitively
_TOKEN = re.compile(r"[a-zA-Z_-]*")
_AGENT_FIELDS = frozenset({"user-agent", "useragent", "user agent"})  # protego's spellings
_RULE_FIELDS = frozenset({"allow", "disallow"})  # the lines after which a user-agent ends
_SITEMAP_FIELDS = frozenset({"sitemap", "sitemaps", "site-map"})  # for every group

# (status, body) of a robots.txt download after its redirects; status 0 means unreachable.
Download = Callable[[str], Awaitable[tuple[int, bytes]]]


@dataclass(frozen=True, slots=True)
class RobotsRules:
    """What one origin's robots.txt says to us."""

    parser: Protego | None  # None: no rules (allow all) or `deny_all`
    deny_all: bool = False
    crawl_delay: float | None = None
    sitemaps: tuple[str, ...] = field(default=())

    def allows(self, url: str, user_agent: str) -> bool:
        """Whether `url` may be fetched; the parser holds our group only (`rules_from`)."""
        if self.deny_all:
            return False
        if self.parser is None:
            return True
        return bool(self.parser.can_fetch(url, product_token(user_agent) or "*"))


ALLOW_ALL = RobotsRules(parser=None)
DENY_ALL = RobotsRules(parser=None, deny_all=True)


def rules_from(status: int, body: bytes, user_agent: str) -> RobotsRules:
    """RFC 9309 2.3.1: 2xx rules apply; 4xx means no rules; 5xx or unreachable means none
    may be fetched. 429 counts as unreachable, as Google treats it."""
    if 200 <= status < 300:
        text = body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
        try:
            parser = Protego.parse(_group_for(text, product_token(user_agent)))
        except Exception as exc:  # protego is lenient; a parser bug must not stop the crawl
            log.warning("robots.txt could not be parsed (%s); no rules apply", exc)
            return ALLOW_ALL
        delay = parser.crawl_delay(product_token(user_agent) or "*")
        return RobotsRules(parser=parser, crawl_delay=float(delay) if delay else None,
                           sitemaps=tuple(parser.sitemaps))
    if 400 <= status < 500 and status != 429:
        return ALLOW_ALL
    return DENY_ALL


def product_token(user_agent: str) -> str:
    """`crawler` of `crawler/0.1 (+https://github.com/...)`, lower-cased (RFC 9309 2.2.1)."""
    match = _TOKEN.match(user_agent.strip())
    return match[0].lower() if match else ""


def _group_for(text: str, token: str) -> str:
    """The robots.txt of one group: the rules of every group naming `token` (merged, 2.2.1),
    else of the `*` groups, under `User-agent: *`, with the file's sitemaps.

    A group is its user-agent lines and what follows up to a user-agent line that comes after
    an allow or disallow line: unknown lines, crawl-delay and sitemap lines end none (2.2.4).
    """
    groups: list[tuple[set[str], list[str]]] = []
    sitemaps: list[str] = []
    after_rule = True
    for raw in text.splitlines():
        line = raw.partition("#")[0].strip()
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon:
            continue  # RFC 9309 2.2: every line is `field: value`
        if name in _AGENT_FIELDS:
            if after_rule:
                groups.append((set(), []))
                after_rule = False
            value = value.strip()
            groups[-1][0].add("*" if value.startswith("*") else product_token(value))
        elif name in _SITEMAP_FIELDS:
            sitemaps.append(line)
        elif groups:
            groups[-1][1].append(line)
            after_rule |= name in _RULE_FIELDS
    named = [lines for agents, lines in groups if token and token in agents]
    chosen = named or [lines for agents, lines in groups if "*" in agents]
    return "\n".join(["User-agent: *", *(line for lines in chosen for line in lines), *sitemaps])


def origin_of(url: str) -> str:
    """`scheme://authority` of an absolute URL. Asked for every link of every page, so a
    normalized URL (which always has a path) is cut at its first `/` after the `//`."""
    start = url.find("//") + 2
    end = url.find("/", start)
    if start > 1 and end > 0:
        authority = url[start:end]
        if "?" not in authority and "#" not in authority and "@" not in authority:
            return url[:end]
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Robots:
    """The per-run cache: one download per origin, shared by every request that waits on it."""

    def __init__(self, download: Download, user_agent: str, *, obey: bool = True) -> None:
        self._download = download
        self._user_agent = user_agent
        self._obey = obey
        self._rules: dict[str, asyncio.Task[RobotsRules]] = {}
        self.fetched = 0
        # told of each origin's sitemaps once its rules are in
        self.on_loaded: Callable[[str, Sequence[str]], None] | None = None

    def known(self, url: str) -> bool | None:
        """Whether `url` may be fetched, if this origin's rules are already here; else None."""
        if not self._obey:
            return True
        task = self._rules.get(origin_of(url))
        if task is None or not task.done() or task.cancelled():
            return None
        return task.result().allows(url, self._user_agent)

    async def rules(self, url: str) -> RobotsRules:
        origin = origin_of(url)
        task = self._rules.get(origin)
        if task is None:
            # a task of its own, so that a waiter that is cancelled does not cancel the download
            task = asyncio.create_task(self._load(origin), name=f"robots {origin}")
            self._rules[origin] = task
        return await asyncio.shield(task)

    async def _load(self, origin: str) -> RobotsRules:
        try:
            status, body = await self._download(origin + "/robots.txt")
            rules = rules_from(status, body, self._user_agent)
        except Exception as exc:  # unreachable: RFC 9309 says assume complete disallow
            log.info("robots.txt of %s unreachable (%s): disallowing the origin", origin, exc)
            rules = DENY_ALL
        self.fetched += 1
        if self.on_loaded is not None and rules.sitemaps:
            self.on_loaded(origin, rules.sitemaps)
        return rules

    async def close(self) -> None:
        for task in self._rules.values():
            task.cancel()
        await asyncio.gather(*self._rules.values(), return_exceptions=True)

    async def allows(self, url: str) -> bool:
        if not self._obey:
            return True
        return (await self.rules(url)).allows(url, self._user_agent)
