"""Step 4 of the data flow: parse and analyse a fetched body, inside the process pool."""

from __future__ import annotations

import codecs
import hashlib
import importlib
import json
import re
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

# lxml ships no type information and lxml-stubs is not a dependency: its objects are Any here
import lxml.etree as etree  # type: ignore[import-untyped]
import lxml.html  # type: ignore[import-untyped]
from bs4.dammit import EncodingDetector, UnicodeDammit

from .models import Link, ParseInput, ParseResult
from .urls import LinkPolicy, normalize

__all__ = [
    "DEFAULT_MAX_LINKS",
    "SITEMAP_MAX_BYTES",
    "Page",
    "hamming",
    "init_worker",
    "load_callable",
    "parse",
    "parse_many",
    "parse_sitemap",
    "simhash_of",
]

DEFAULT_MAX_LINKS = 5000  # config/default.toml `max_links_per_page`
SITEMAP_MAX_BYTES = 50 * 1024 * 1024  # the sitemap protocol's own limit, uncompressed
ANCHOR_TEXT_MAX = 200
_FEED = 1 << 20  # sitemap bytes per parser.feed(), so that max_urls can stop it early

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# WHATWG MIME sniffing: what an unlabelled body starts with when it is HTML
_HTML_SNIFF = re.compile(
    rb"\s*(?:<!doctype\s+html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style"
    rb"|<title|<b|<body|<br|<p|<!--)[\s>]",
    re.IGNORECASE,
)
# WHATWG "binary data bytes": no text encoding a page may use produces them
_BINARY_BYTES = bytes([*range(0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
_BINARY_SHARE = 0.05
# browsers decode these labels as their supersets (WHATWG Encoding), and so do we
_SUPERSETS = {
    "ascii": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254", "iso8859-11": "cp874",
    "tis-620": "cp874", "gb2312": "gbk", "shift_jis": "cp932", "euc_kr": "cp949",
    "big5": "big5hkscs",
}
# text codecs Python knows that no web page is in: a label naming one counts as unknown
_NOT_WEB = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7",
                      "undefined"})
_DECLARED_WINDOW = 2048

_SKIPPED = frozenset({"script", "style", "noscript", "template", "head"})
# text runs on either side of these join without a space ("<b>H</b>ello" is one word)
_INLINE = frozenset({
    "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "code", "data", "dfn", "em",
    "font", "i", "kbd", "label", "mark", "nobr", "q", "s", "samp", "small", "span", "strike",
    "strong", "sub", "sup", "time", "tt", "u", "var", "wbr",
})
_WORD = re.compile(r"\w+")

_LINKS = etree.XPath("//a[@href] | //area[@href]")
_BASE = etree.XPath("(//base[@href])[1]/@href")
_TITLE = etree.XPath("(//title[not(ancestor::svg)])[1]")
_HTML_PARSER = lxml.html.HTMLParser(
    encoding="utf-8",  # the text is re-encoded, so a stale XML or meta declaration cannot lie
    # libxml2 halts at nesting depth 256 otherwise, losing the rest of a page of unclosed tags;
    # the body is already bounded by max_bytes, and the HTML parser expands no entities
    huge_tree=True,
)

# one 32-bit lane per bit of a byte, most significant bit first: see simhash_of
_LANES = [b"".join(((byte >> (7 - bit)) & 1).to_bytes(4, "little") for bit in range(8))
          for byte in range(256)]


@dataclass(frozen=True, slots=True)
class Page:
    """What an extractor plugin sees: `fn(page) -> dict | None`."""

    url: str
    status: int
    headers: dict[str, str]
    html: str  # the decoded text
    tree: Any  # the lxml.html root element


@dataclass(frozen=True, slots=True)
class _Config:
    extractors: tuple[tuple[str, Callable[..., Any]], ...] = ()
    policy: LinkPolicy | None = None
    max_links: int = DEFAULT_MAX_LINKS


_config = _Config()


def load_callable(spec: str) -> Callable[..., Any]:
    """Import `package.module:function`; a ValueError names the spec and what is wrong.

    The main process calls it on every plugin spec before the crawl starts, so that a typo
    is a usage error and not a failure in each parse process.
    """
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name.strip() or not attr.strip():
        raise ValueError(f"plugin {spec!r}: expected 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name.strip())
    except Exception as exc:  # ImportError, or whatever the module raises as it loads
        raise ValueError(f"plugin {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for name in attr.strip().split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ValueError(f"plugin {spec!r}: {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"plugin {spec!r}: {attr!r} is not callable")
    return obj  # type: ignore[no-any-return]


def init_worker(extractors: Sequence[str], policy: LinkPolicy | None, max_links: int) -> None:
    """The ProcessPoolExecutor initializer: load plugins once per process, not per page."""
    global _config
    if max_links < 0:
        raise ValueError(f"max_links {max_links}: expected 0 or more")
    loaded = tuple((spec, load_callable(spec)) for spec in extractors)
    _config = _Config(extractors=loaded, policy=policy, max_links=max_links)


def parse_many(inputs: list[ParseInput]) -> list[ParseResult]:
    """Parse a batch, so that one trip across the process boundary carries many pages."""
    return [parse(inp) for inp in inputs]


def parse(inp: ParseInput) -> ParseResult:
    """Analyse one fetched body. Never raises: a page that defeats the parser keeps its record.

    Non-HTML and binary bodies get only `sha256`; an HTML page gets its fields, links,
    visible-text figures and extractor results.
    """
    start = time.perf_counter()
    digest = hashlib.sha256(inp.body).hexdigest()
    if not _is_html(inp):
        result = ParseResult(sha256=digest, is_html=False)
    else:
        text, encoding = _decode(inp.body, inp.charset)
        try:
            result = _analyse(inp, digest, text, encoding)
        except Exception as exc:  # an lxml failure or a bug costs this page's fields only
            error = None if isinstance(exc, etree.LxmlError) else _describe("parse", exc)
            result = ParseResult(sha256=digest, is_html=True, words=0, encoding=encoding,
                                 error=error)
    return replace(result, busy_s=time.perf_counter() - start)


def _is_html(inp: ParseInput) -> bool:
    media_type = (inp.content_type or "").partition(";")[0].strip().lower()
    body, bom = EncodingDetector.strip_byte_order_mark(inp.body)
    if media_type not in _HTML_TYPES and (media_type or not _HTML_SNIFF.match(body[:512])):
        return False
    sample = body[:1024]
    if (bom or inp.charset or "").lower().startswith(("utf-16", "utf-32")):
        sample = sample.replace(b"\x00", b"")  # UTF-16 text is half NUL bytes
    if not sample:
        return True  # an empty page labelled HTML: parsed, and found empty
    if b"\x00" in sample:
        return False
    controls = len(sample) - len(sample.translate(None, _BINARY_BYTES))
    return controls / len(sample) <= _BINARY_SHARE


def _codec(label: str | None, *, in_document: bool = False) -> str | None:
    """The Python codec for a charset label, as browsers read labels; None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = UnicodeDammit.CHARSET_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError, TypeError):
        return None
    if name in _NOT_WEB:
        return None
    if in_document and name.startswith(("utf-16", "utf-32")):
        return "utf-8"  # WHATWG: a document that can declare itself is not UTF-16
    return _SUPERSETS.get(name, name)


def _candidates(data: bytes, charset: str | None) -> Iterator[str | None]:
    yield _codec(charset)
    declared = EncodingDetector.find_declared_encoding(data[:_DECLARED_WINDOW], is_html=True)
    yield _codec(declared, in_document=True)
    # Detection, lazily. Valid UTF-8 first: a cheap check that charset-normalizer would
    # only confirm at a hundred times the cost; pure ASCII lands here too.
    yield "utf-8"
    for label in EncodingDetector(data, is_html=True).encodings:
        yield _codec(label)


def _decode(body: bytes, charset: str | None) -> tuple[str, str]:
    """Bytes to text: BOM, then Content-Type, then a declaration, then detection."""
    data, bom = EncodingDetector.strip_byte_order_mark(body)
    if bom is not None:
        name = codecs.lookup(bom).name
        return data.decode(name, "replace"), name
    tried: set[str] = set()
    for codec in _candidates(data, charset):
        if codec is not None and codec not in tried:
            tried.add(codec)
            try:
                return data.decode(codec), codec
            except (UnicodeError, LookupError):  # LookupError: bytes-to-bytes, such as base64
                pass
    return data.decode("utf-8", "replace"), "utf-8"


def _collapse(text: str | None) -> str | None:
    collapsed = " ".join(text.split()) if text else ""
    return collapsed or None


def _analyse(inp: ParseInput, digest: str, text: str, encoding: str) -> ParseResult:
    root = lxml.html.document_fromstring(text.encode("utf-8", "replace"), parser=_HTML_PARSER)
    base = _base_url(root, inp.url)
    description, robots_nofollow = None, False
    for meta in root.iter("meta"):
        name = (meta.get("name") or "").strip().lower()
        content = meta.get("content") or ""
        if name == "description" and description is None:
            description = _collapse(content)
        elif name == "robots":
            directives = set(re.split(r"[\s,]+", content.lower()))
            robots_nofollow |= bool(directives & {"nofollow", "none"})
    canonical = None
    for link in root.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            canonical = normalize(link.get("href"), base)
            break
    titles = _TITLE(root)
    links, dropped = _links(root, base, robots_nofollow)
    tokens = _WORD.findall(_visible_text(root).lower())
    extra, error = _run_extractors(Page(inp.url, inp.status, inp.headers, text, root))
    return ParseResult(
        sha256=digest,
        is_html=True,
        title=_collapse(titles[0].text_content()) if titles else None,
        description=description,
        lang=_collapse(root.get("lang") or root.get("xml:lang")),
        canonical=canonical,
        words=len(tokens),
        simhash=simhash_of(tokens),
        encoding=encoding,
        links=links,
        links_dropped=dropped,
        extra=extra,
        error=error,
    )


def _base_url(root: Any, url: str) -> str:
    hrefs = _BASE(root)
    resolved = normalize(str(hrefs[0]), url) if hrefs else None
    return resolved or url


def _links(root: Any, base: str, page_nofollow: bool) -> tuple[list[Link], int]:
    policy, limit = _config.policy, _config.max_links
    links: list[Link] = []
    dropped = 0
    resolved: dict[str, tuple[str | None, str | None]] = {}  # href -> (url, refusal)
    for element in _LINKS(root):
        href = element.get("href")
        if href not in resolved:
            url = normalize(href, base)
            refused = policy.refusal(url) if policy is not None and url is not None else None
            resolved[href] = (url, refused)
        url, refused = resolved[href]
        if url is None:
            continue
        if len(links) >= limit:
            dropped += 1
            continue
        raw = element.get("alt") if element.tag == "area" else element.text_content()
        text = " ".join((raw or "").split())[:ANCHOR_TEXT_MAX].rstrip()
        nofollow = page_nofollow or "nofollow" in (element.get("rel") or "").lower().split()
        links.append(Link(to=url, text=text, nofollow=nofollow, refused=refused))
    return links, dropped


def _visible_text(root: Any) -> str:
    """The text a reader sees: no script, style, head or comments; blocks apart."""
    parts: list[str] = []
    hidden = 0  # depth inside skipped elements
    for event, element in etree.iterwalk(root, events=("start", "end", "comment", "pi")):
        tag = element.tag
        if event == "start":
            if tag in _SKIPPED:
                hidden += 1
            elif not hidden:
                if tag not in _INLINE:
                    parts.append(" ")
                if element.text:
                    parts.append(element.text)
            continue
        if event == "end" and tag in _SKIPPED:
            hidden -= 1
        if not hidden:
            if event == "end" and tag not in _INLINE:
                parts.append(" ")
            if element.tail:
                parts.append(element.tail)
    return "".join(parts)


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
            # the round trip proves the result can be written, and leaves only plain data
            extra.update(json.loads(json.dumps(found, allow_nan=False)))
        except Exception as exc:  # a plugin's failure costs its own result, not the page
            errors.append(_describe(name, exc))
    return extra, "; ".join(errors) or None


def simhash_of(tokens: Iterable[str]) -> str | None:
    """Charikar's 64-bit simhash of tokens (as given), weighted by count; None for none.

    Each distinct token's blake2b hash is spread into 64 lanes of 32 bits inside one big
    integer, so one multiply-add per distinct token sums all 64 bit columns at once.
    """
    counts = Counter(tokens)
    if not counts:
        return None
    total = 0
    columns = 0
    for token, count in counts.items():
        digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        columns += int.from_bytes(b"".join(map(_LANES.__getitem__, digest)), "little") * count
        total += count
    sums = struct.unpack("<64I", columns.to_bytes(256, "little"))
    bits = "".join("1" if 2 * s > total else "0" for s in sums)
    return f"{int(bits, 2):016x}"


def hamming(a: str, b: str) -> int:
    """Bits that differ between two simhashes given as hex strings."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def parse_sitemap(body: bytes, max_urls: int) -> tuple[list[str], list[str]]:
    """(page URLs, child sitemap URLs) of a urlset, sitemapindex or plain-text sitemap.

    Gzip is recognised by its magic bytes. Entities are never expanded nor DTDs loaded, so
    an XXE or billion-laughs sitemap gives at most some URLs without the entity text.
    """
    pages: list[str] = []
    children: list[str] = []
    if max_urls <= 0:
        return pages, children
    data = body[:SITEMAP_MAX_BYTES]
    if body[:2] == b"\x1f\x8b":
        try:
            data = zlib.decompressobj(wbits=31).decompress(body, SITEMAP_MAX_BYTES)
        except zlib.error:
            return pages, children
    seen: set[str] = set()

    def add(raw: str | None, into: list[str]) -> bool:
        url = normalize(raw.strip()) if raw else None
        if url is not None and url not in seen:
            seen.add(url)
            into.append(url)
        return len(seen) >= max_urls

    data = data.removeprefix(b"\xef\xbb\xbf")
    if data.lstrip()[:1] != b"<" and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        for line in data.decode("utf-8", "replace").splitlines():
            if add(line, pages):
                break
        return pages, children
    parser = etree.XMLPullParser(events=("end",), resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False, recover=True)
    try:
        for offset in range(0, len(data) + _FEED, _FEED):  # the last round closes the parser
            if offset < len(data):
                parser.feed(data[offset : offset + _FEED])
            else:
                parser.close()
            for _, element in parser.read_events():
                if _sitemap_element(element, add, pages, children):
                    return pages, children
    except etree.LxmlError:
        pass  # recover=True keeps going where it can; what was read so far stands
    return pages, children


def _sitemap_element(element: Any, add: Callable[[str | None, list[str]], bool],
                     pages: list[str], children: list[str]) -> bool:
    tag = element.tag
    if not isinstance(tag, str):
        return False
    local = tag.rpartition("}")[2]
    if local == "loc":
        parent = element.getparent()
        kind = parent.tag.rpartition("}")[2] if parent is not None else ""
        if kind in ("url", "sitemap"):
            return add(element.text, pages if kind == "url" else children)
    elif local in ("url", "sitemap"):
        element.clear(keep_tail=True)  # bound memory on a 50 MB sitemap
        while element.getprevious() is not None:
            del element.getparent()[0]
    return False
