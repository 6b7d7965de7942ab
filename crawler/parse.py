"""Step 4 of the data flow: parse and analyse a fetched body, inside the process pool."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

# lxml ships no type information and lxml-stubs is not a dependency: its objects are Any here
import lxml.etree as etree  # type: ignore[import-untyped]
from bs4.dammit import EncodingDetector, UnicodeDammit

from . import content as main_content
from .models import Links, ParseInput, ParseResult
from .plugins import load_callable
from .text import figures, visible_text
from .urls import LinkPolicy, absolute, normalize

__all__ = ["DEFAULT_MAX_LINKS", "SITEMAP_MAX_BYTES", "Page", "init_worker", "load_callable",
           "parse", "parse_many", "parse_sitemap"]

DEFAULT_MAX_LINKS = 5000  # config/default.toml `max_links_per_page`
SITEMAP_MAX_BYTES = 50 * 1024 * 1024  # the sitemap protocol's limit, uncompressed
_SITEMAP_URL_MAX = 2048  # the protocol's limit too; longer <loc>s are not even normalized
_FEED = 1 << 20  # sitemap bytes per feed(), so that max_urls stops the parser early
_ANCHOR_MAX = 200

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# WHATWG MIME sniffing: how an unlabelled body that is HTML starts
_HTML_SNIFF = re.compile(rb"\s*(?:<!doctype\s+html|<html|<head|<script|<iframe|<h1|<div|<font"
                         rb"|<table|<a|<style|<title|<b|<body|<br|<p|<!--)[\s>]", re.I)
# WHATWG "binary data bytes": no encoding a page may be in produces them
_BINARY_BYTES = bytes([*range(0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_BINARY_SHARE = 0.05
# browsers decode these as their supersets (WHATWG Encoding), and so do we
_SUPERSETS = {"ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254",
              "iso8859-11": "cp874", "tis-620": "cp874", "gb2312": "gbk",
              "shift_jis": "cp932", "euc_kr": "cp949", "big5": "big5hkscs"}
# text codecs Python knows and no web page is in: a label naming one counts as unknown
_NOT_WEB = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7",
                      "undefined"})
_DECLARED_WINDOW = 2048

# The text is re-encoded as UTF-8, so a stale XML or meta declaration cannot mislead lxml.
# huge_tree: libxml2 otherwise halts at nesting depth 256 and drops the rest of a page of
# unclosed tags; the body is bounded by max_bytes and the HTML parser expands no entities.
# A plain etree parser, not lxml.html's: lxml.html calls back into Python for the class of
# every element proxy it makes, which costs as much as the parse itself.
_HTML_PARSER = etree.HTMLParser(encoding="utf-8", huge_tree=True)
# Resolved links a parse process remembers, in two generations of this many (about 340 bytes
# each): the filling one and the last full one, whose entries that recur move back to the
# filling one, so that a site's navigation outlives the turnover of its other links.
_URLS_MAX = 1 << 13
_urls: dict[tuple[str, str], tuple[str | None, str | None]] = {}
_urls_last: dict[tuple[str, str], tuple[str | None, str | None]] = {}
_ABSOLUTE = re.compile(r"https?://", re.I)
# A link whose WHATWG parse enters the path state with a non-empty path (no scheme: no `:` at
# all; not `/`, `\\`, `?`, `#`, a space or a control first; no tab or newline, which the parser
# deletes) resolves against the base's directory alone: `p.html`, `../s02/p.html`, `./`.
_PATH_RELATIVE = re.compile(r"[A-Za-z0-9._~%-][^:\t\n\r]*")
# A path-relative link (after any leading `../`s) or a root-relative one of these characters
# alone: none that ada would escape or change, nor the normalization (no `%`, `;`, `?`, `#`,
# `:`, `\\`, space or control), and no dot-segment (checked apart: no `/.`), resolves by text
# against a base in normal form, at a third of the cost of ada and `normalize`.
_PLAIN_PATH = re.compile(r"(?:[A-Za-z0-9\-_~!$&'()*+,=@][A-Za-z0-9\-._~!$&'()*+,=@/]*)?")
# HTML Standard, shared declarative refresh steps: a time, then `;` or `,`, then `url=`
_REFRESH = re.compile(r"\s*(?=[0-9.])[0-9.]*\s*[;,]?\s*(?:url\s*=\s*)?(?P<url>.*)", re.I | re.S)


@dataclass(frozen=True, slots=True)
class Page:
    """What an extractor plugin gets: `fn(page) -> dict | None`."""

    url: str
    status: int
    headers: dict[str, str]
    html: str  # the decoded text
    tree: Any  # the lxml root element (lxml.etree, HTML parser)


@dataclass(frozen=True, slots=True)
class _Config:
    extractors: tuple[tuple[str, Callable[..., Any]], ...] = ()
    policy: LinkPolicy | None = None
    max_links: int = DEFAULT_MAX_LINKS
    extract: str = ""  # "", or the format of the main content: "text" or "markdown"


_config = _Config()


def init_worker(extractors: Sequence[str], policy: LinkPolicy | None, max_links: int,
                extract: str = "") -> None:
    """The ProcessPoolExecutor initializer: plugins load once per process, not per page."""
    global _config
    if max_links < 0:
        raise ValueError(f"max_links {max_links}: expected 0 or more")
    if extract and extract not in main_content.FORMATS:
        raise ValueError(f"extract {extract!r}: expected one of {main_content.FORMATS}")
    # numpy and the word tables (`text.figures`) load here, as the process starts, not within
    # the first page's parse_timeout; the main process never imports them
    figures("")
    loaded = tuple((spec, load_callable(spec)) for spec in extractors)
    _config = _Config(extractors=loaded, policy=policy, max_links=max_links, extract=extract)


def parse_many(inputs: list[ParseInput]) -> list[ParseResult]:
    """Parse a batch, so that one trip across the process boundary carries many pages."""
    return [parse(inp) for inp in inputs]


def parse(inp: ParseInput) -> ParseResult:
    """Analyse one fetched body. Never raises: a page that defeats the parser keeps its record.

    Every body gets `sha256`; an HTML page (by type, or sniffed when unlabelled) that is not
    binary also gets its fields, links, visible-text figures and extractor results.
    """
    start = time.perf_counter()
    result = ParseResult(sha256=hashlib.sha256(inp.body).hexdigest(), is_html=False)
    data, bom = EncodingDetector.strip_byte_order_mark(inp.body)
    if _is_html(inp, data, bom):
        encoding = None
        try:
            text, encoding, exact = _decode(data, bom, inp.charset)
            # lxml reads UTF-8: the body itself when it is that already
            utf8 = data if exact else text.encode("utf-8", "replace")
            result = _analyse(inp, result.sha256, text, utf8, encoding)
        except Exception as exc:  # an lxml failure, or a bug, costs this page's fields only
            error = None if isinstance(exc, etree.LxmlError) else _describe("parse", exc)
            result = replace(result, is_html=True, words=0, encoding=encoding, error=error)
    return replace(result, busy_s=time.perf_counter() - start)


def _is_html(inp: ParseInput, data: bytes, bom: str | None) -> bool:
    media_type = inp.content_type or ""  # parsed once, by `records.content_type`
    sniffed = not media_type and _HTML_SNIFF.match(data[:512]) is not None
    if media_type not in _HTML_TYPES and not sniffed:
        return False
    sample = data[:1024]
    if (bom or inp.charset or "").lower().startswith(("utf-16", "utf-32")):
        sample = sample.replace(b"\x00", b"")  # such text is half NUL bytes
    if not sample:
        return True  # empty, and labelled HTML: parsed, and found empty
    # a stray NUL proves nothing (browsers read it as U+FFFD, and so does libxml2): a share
    # of binary data bytes does
    controls = len(sample) - len(sample.translate(None, _BINARY_BYTES))
    return controls <= _BINARY_SHARE * len(sample)


def _codec(label: str | None, *, in_document: bool = False) -> str | None:
    """The Python codec for a charset label, read as browsers read it; None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    try:
        name = codecs.lookup(UnicodeDammit.CHARSET_ALIASES.get(label, label)).name
    except (LookupError, ValueError, TypeError):
        return None
    if name in _NOT_WEB:
        return None
    if in_document and name.startswith(("utf-16", "utf-32")):
        return "utf-8"  # WHATWG: a document able to declare itself in ASCII is not UTF-16
    return _SUPERSETS.get(name, name)


def _candidates(data: bytes, charset: str | None) -> Iterator[str | None]:
    yield _codec(charset)
    declared = EncodingDetector.find_declared_encoding(data[:_DECLARED_WINDOW], is_html=True)
    yield _codec(declared, in_document=True)
    # Detection, lazily. Valid UTF-8 first: a cheap test whose verdict charset-normalizer
    # would confirm at a hundred times the cost; pure ASCII lands here too.
    yield "utf-8"
    for label in EncodingDetector(data, is_html=True).encodings:
        yield _codec(label)


def _decode(data: bytes, bom: str | None, charset: str | None) -> tuple[str, str, bool]:
    """Bytes to text: a BOM, else the header, else a declaration, else detection. The flag
    says whether the bytes are the text's UTF-8 as they stand (valid UTF-8, no BOM)."""
    if bom is not None:
        name = codecs.lookup(bom).name
        return data.decode(name, "replace"), name, False
    tried: set[str] = set()
    for codec in _candidates(data, charset):
        if codec is not None and codec not in tried:
            tried.add(codec)
            try:
                return data.decode(codec), codec, codec == "utf-8"
            except (UnicodeError, LookupError):  # LookupError: bytes-to-bytes, e.g. base64
                pass
    return data.decode("utf-8", "replace"), "utf-8", False


def _collapse(text: str | None) -> str | None:
    return (" ".join(text.split()) or None) if text else None


def _analyse(inp: ParseInput, digest: str, text: str, utf8: bytes,
             encoding: str) -> ParseResult:
    root = etree.fromstring(utf8, parser=_HTML_PARSER)
    if root is None:
        raise etree.ParserError("Document is empty")
    # tag-filtered iteration runs in C; the equivalent XPath costs as much as the parse itself.
    # One walk for the four tags (a walk of a page costs about 60 us), in document order.
    heads: dict[str, list[Any]] = {"base": [], "meta": [], "link": [], "title": []}
    for element in root.iter(*heads):
        group = heads.get(element.tag)
        if group is not None:
            group.append(element)
    href = next((e.get("href") for e in heads["base"] if e.get("href") is not None), None)
    base = (normalize(href, inp.url) if href is not None else None) or inp.url
    description, robots_nofollow = None, _header_nofollow(inp.headers)
    refresh: list[str] = []
    for meta in heads["meta"]:
        name, content = (meta.get("name") or "").strip().lower(), meta.get("content") or ""
        if name == "description" and description is None:
            description = _collapse(content)
        elif name == "robots":
            directives = set(re.split(r"[\s,]+", content.lower()))
            robots_nofollow |= bool(directives & {"nofollow", "none"})
        elif (meta.get("http-equiv") or "").strip().lower() == "refresh":
            target = _refresh_target(content)
            if target is not None:
                refresh.append(target)
    # a canonical that is not http(s) is kept as written, made absolute (contract 4b)
    canonical = next((normalize(href, base) or absolute(href, base) for link in heads["link"]
                      if "canonical" in (link.get("rel") or "").lower().split()
                      and (href := link.get("href"))), None)
    title = next((_collapse("".join(t.itertext())) for t in heads["title"]
                  if next(t.iterancestors("svg"), None) is None), None)
    links, dropped = _links(root, base, robots_nofollow, refresh, normalize(inp.url, inp.url))
    extra, error = _run_extractors(Page(inp.url, inp.status, inp.headers, text, root))
    lang = _collapse(root.get("lang") or root.get("xml:lang"))
    content = content_lang = None
    if _config.extract and 200 <= inp.status < 300:
        try:
            content = main_content.main_content(text, inp.url, _config.extract)
            content_lang = lang or main_content.detect_language(content)
        except Exception as exc:  # the page keeps its record, with content ""
            content = ""
            error = "; ".join(filter(None, (error, _describe("extract", exc))))
    words, simhash = figures(visible_text(root))
    return ParseResult(
        sha256=digest, is_html=True, title=title, description=description, lang=lang,
        canonical=canonical, words=words, simhash=simhash, encoding=encoding,
        links=links, links_dropped=dropped, extra=extra, error=error, content=content,
        content_lang=content_lang)


def _links(root: Any, base: str, page_nofollow: bool, refresh: Sequence[str],
           page: str | None) -> tuple[Links, int]:
    """The page's outlinks in document order (a meta refresh first), and how many distinct
    targets the cap left out. The cap counts targets, not anchors: a table of contents that
    links 500 pages 14 000 times keeps its 500 (contract 4b). A link to the page itself
    (`#section`, or its own URL) is no outlink: it leads nowhere new, and on real
    documentation it is four links in ten."""
    limit = _config.max_links
    origin, directory = _prefixes(base)
    tos: list[str] = []
    texts: list[str] = []
    nofollows: list[bool] = []
    refusals: list[str | None] = []
    kept: set[str] = set()
    left_out: set[str] = set()
    resolved: dict[str, tuple[str | None, str | None]] = {}  # href -> (url, refusal)
    add_to, add_text, add_nofollow, add_refusal = (
        tos.append, texts.append, nofollows.append, refusals.append)
    # document order, without a list of them all; the refresh targets, strings, come first
    # (a chain in C: no generator frame and tuple an anchor)
    for item in chain(refresh, root.iter("a", "area")):
        if item.__class__ is str:
            href, element = item, None
        else:
            element, href = item, item.get("href")
            if href is None:
                continue
        known = resolved.get(href)
        if known is None:
            if len(kept) >= limit:  # past the cap, a new target costs no policy check
                url = normalize(href, base)
                if url is None:
                    continue
                if url not in kept:
                    left_out.add(url)
                    continue
            known = resolved[href] = _resolve(href, base, origin, directory)
        url, refused = known
        if url is None or url == page:
            continue
        if url not in kept:
            if len(kept) >= limit:
                left_out.add(url)
                continue
            kept.add(url)
        if element is None:
            text, rel = "", None
        else:
            if element.tag == "area":
                raw = element.get("alt")
            else:  # most anchors hold their text alone: no walk of a subtree for them
                raw = "".join(element.itertext()) if len(element) else element.text
            text, rel = " ".join((raw or "").split())[:_ANCHOR_MAX].rstrip(), element.get("rel")
        add_to(url)
        add_text(text)
        add_nofollow(page_nofollow or (rel is not None and "nofollow" in rel.lower().split()))
        add_refusal(refused)
    return Links(tos, texts, nofollows, refusals), len(left_out)


def _refresh_target(content: str) -> str | None:
    """The URL of a `<meta http-equiv=refresh>` content, read by the HTML Standard's
    declarative refresh steps (`5; url='next.html'`); None when it reloads the page."""
    match = _REFRESH.match(content)
    if match is None:
        return None
    target = match["url"]
    if target[:1] in ("'", '"'):
        target = target[1:].partition(target[0])[0]
    return target.strip() or None


def _header_nofollow(headers: dict[str, str]) -> bool:
    """`X-Robots-Tag: nofollow` (or `none`), as the meta tag. A directive for a named bot
    (`otherbot: nofollow`) is not for us: the parse process knows no product token."""
    value = headers.get("x-robots-tag", "")
    directives = {part.strip().lower() for part in value.split(",") if ":" not in part}
    return bool(directives & {"nofollow", "none"})


def _resolve(href: str, base: str, origin: str,
             directory: str | None) -> tuple[str | None, str | None]:
    """A link's normalized URL and the policy's refusal. Sites repeat their links from page
    to page (a navigation bar, `../index.html`), so the results are remembered across pages,
    keyed by what each kind of link depends on: an absolute link on nothing, one that starts
    with one `/` on the base's `origin`, a path-relative one (`_PATH_RELATIVE`) on the base's
    `directory` (None when the base is not in normal form, whose text may hide its path); any
    other (`?q`, `#x`, `//host`) on the whole base, so it recurs on no other page and is not
    kept. Only `scheme://` makes a link absolute: `http:page.html` and `http:?q=1` are
    relative to the page (WHATWG)."""
    global _urls, _urls_last
    if _ABSOLUTE.match(href):
        key: tuple[str, str] | None = (href, "")
    elif href.startswith("/") and not href.startswith("//"):
        key = (href, origin)
    elif directory is not None and _PATH_RELATIVE.fullmatch(href):
        key = (href, directory)
    else:
        key = None
    if key is None:
        return _resolved(href, base)
    known = _urls.get(key)
    if known is None:
        known = _urls_last.get(key) or _resolved(
            href, base, _joined(href, origin, directory) if key[1] else None)
        if len(_urls) >= _URLS_MAX:
            _urls_last, _urls = _urls, {}  # bounded: a long crawl must not grow a process
        _urls[key] = known
    return known


def _resolved(href: str, base: str, joined: str | None = None) -> tuple[str | None, str | None]:
    url = joined or normalize(href, base)
    policy = _config.policy
    return url, policy.refusal(url) if policy is not None and url is not None else None


def _joined(href: str, origin: str, directory: str | None) -> str | None:
    """`normalize(href, base)` worked out by text for the plain links of `_PLAIN_PATH`, or
    None (then `normalize` it is): a root-relative one onto the base's origin, a path-relative
    one onto its directory, up a segment for each leading `../` but never above the root, as
    WHATWG resolves them; only for a base in normal form (`directory` not None), whose origin
    and directory are normal too."""
    if directory is None or not href:  # "" is the base itself, its query kept
        return None
    if href.startswith("/"):
        rest, directory = href[1:], origin + "/"
    else:
        ups = 0
        while href.startswith("../", 3 * ups):
            ups += 1
        rest = href[3 * ups:]
        for _ in range(ups):
            if len(directory) > len(origin) + 1:  # `..` at the root stays there
                directory = directory[: directory.rfind("/", 0, -1) + 1]
    if "/." in rest or _PLAIN_PATH.fullmatch(rest) is None:
        return None
    return directory + rest


def _prefixes(base: str) -> tuple[str, str | None]:
    """What a base's links depend on: its text up to the path (the links that start with
    one `/`), and for a base in normal form, up to the path's last `/` (`http://h/a/b?q`
    gives `http://h/a/`: its path-relative links); None for a base not in normal form."""
    cut = base.find("/", base.find("//") + 2)
    origin = base if cut < 0 else base[:cut]
    if normalize(base) != base:
        return origin, None
    query = base.find("?")
    return origin, base[: base.rfind("/", 0, query if query >= 0 else len(base)) + 1]


def _describe(name: str, exc: BaseException) -> str:
    return f"{name}: {type(exc).__name__}: {exc}"


def _run_extractors(page: Page) -> tuple[dict[str, Any], str | None]:
    extra: dict[str, Any] = {}
    errors: list[str] = []
    for name, fn in _config.extractors:
        try:
            found = fn(page)
            if found is None:
                continue
            if not isinstance(found, dict):
                raise TypeError(f"returned {type(found).__name__}, expected dict or None")
            # the round trip proves the result can be written, and leaves plain data only
            extra.update(json.loads(json.dumps(found, allow_nan=False)))
        except Exception as exc:  # a plugin's failure costs its own result, not the page
            errors.append(_describe(name, exc))
    return extra, "; ".join(errors) or None


def parse_sitemap(body: bytes, max_urls: int) -> tuple[list[str], list[str]]:
    """(page URLs, child sitemap URLs) of a urlset, a sitemapindex or a plain-text sitemap.

    Gzip is recognised by its magic bytes. Entities are never expanded nor DTDs loaded: an
    XXE or billion-laughs sitemap yields at most some URLs without the entity text.
    """
    found: dict[str, list[str]] = {"url": [], "sitemap": []}
    seen: set[str] = set()
    if body[:2] == b"\x1f\x8b":
        try:
            body = zlib.decompressobj(wbits=31).decompress(body, SITEMAP_MAX_BYTES)
        except zlib.error:
            body = b""
    for kind, raw in _sitemap_locs(body[:SITEMAP_MAX_BYTES]) if max_urls > 0 else ():
        url = normalize(raw.strip()) if len(raw) <= 2 * _SITEMAP_URL_MAX else None
        if url is not None and len(url) <= _SITEMAP_URL_MAX and url not in seen:
            seen.add(url)
            found[kind].append(url)
            if len(seen) >= max_urls:
                break
    return found["url"], found["sitemap"]


def _sitemap_locs(data: bytes) -> Iterator[tuple[str, str]]:
    """("url" or "sitemap", the text of a <loc>), in document order."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    if data.lstrip()[:1] != b"<" and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        yield from (("url", line) for line in data.decode("utf-8", "replace").splitlines())
        return
    parser = etree.XMLPullParser(events=("end",), resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False, recover=True)
    try:
        for offset in range(0, len(data) + _FEED, _FEED):  # the last round closes the parser
            if offset < len(data):
                parser.feed(data[offset : offset + _FEED])
            else:
                parser.close()
            for _, element in parser.read_events():
                parent = element.getparent()
                if not isinstance(element.tag, str) or parent is None:
                    continue
                local, kind = element.tag.rpartition("}")[2], parent.tag.rpartition("}")[2]
                if local == "loc" and kind in ("url", "sitemap") and element.text:
                    yield kind, element.text
                elif local in ("url", "sitemap"):
                    element.clear(keep_tail=True)  # bounds the memory a 50 MB sitemap takes
                    while element.getprevious() is not None:
                        del parent[0]
    except etree.LxmlError:
        return  # what was read before the parser gave up stands
