"""Link resolution against the public conformance data of web-platform-tests (tests/data/wpt/).

The crawler's key for a link must be the key of the URL a browser resolves it to: for every
http(s) case of urltestdata.json, `normalize(input, base) == normalize(href)`, and where the
browser's href is already in the contract's normal form (no fragment, no userinfo, escapes as
the contract writes them) the two are equal as strings. Hosts are checked against the UTS #46
data (toascii.json, IdnaTestV2.json). The few cases the crawler deliberately differs on are
listed in DIFFERENCES with the reason, and in the README.
"""

from __future__ import annotations

import html
import itertools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.etree as etree  # type: ignore[import-untyped]
import pytest

from crawler import parse
from crawler.models import ParseInput
from crawler.urls import LinkPolicy, normalize

DATA = Path(__file__).parent / "data" / "wpt"

# names DNS can look up (RFC 1035 lengths); the crawler fetches no other host (README)
_DNS_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*\.?")
# the contract's normal form: escapes upper-case, unreserved characters unescaped, and the
# characters outside RFC 3986 that WHATWG leaves raw (`|`, `^`, `[`, ...) escaped
_NOT_NORMAL = re.compile(r"%[0-9A-F]{2}|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?]")
_UNRESERVED_ESCAPE = re.compile(r"%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2D|2E|5F|7E)", re.I)

DIFFERENCES = {
    # WHATWG accepts port 0; nothing listens there, so it is not fetched
    ("http://f:0/c", "http://example.org/foo/bar"): "port 0",
    ("http://f:00000000000000/c", "http://example.org/foo/bar"): "port 0",
    # hosts WHATWG accepts that no DNS name can be: not fetched
    ("http://./", None): "host that is only dots",
    ("http://../", None): "host that is only dots",
    ("http://!\"$&'()*+,-.;=_`{}~/", None): "punctuation in a host name",
    ("http://foo.09..", None): "empty label in a host name",
}


def _cases(name: str) -> list[dict[str, Any]]:
    return [c for c in json.loads((DATA / name).read_text(encoding="utf-8"))
            if isinstance(c, dict)]


def _is_http(case: dict[str, Any]) -> bool:
    """A case the contract speaks of: it resolves to http(s), or it fails on an http(s) URL."""
    if "href" in case:
        return str(case["href"]).startswith(("http://", "https://"))
    given = str(case["input"]).strip().lower()
    base = str(case.get("base") or "")
    has_scheme = re.match(r"[a-z][a-z0-9+.-]*:", given) is not None
    return given.startswith(("http:", "https:")) or (
        not has_scheme and base.startswith(("http:", "https:")))


URL_CASES = [c for c in _cases("urltestdata.json") if _is_http(c)]


def _id(case: dict[str, Any]) -> str:
    return f"{case['input']!r} on {case.get('base')!r}"


def _in_normal_form(href: str) -> bool:
    parts = urlsplit(href)
    return (not parts.fragment and "#" not in href and "@" not in parts.netloc
            and parts.port != {"http": 80, "https": 443}.get(parts.scheme)
            and not _UNRESERVED_ESCAPE.search(href)
            and all((len(m) == 3 and m.isupper()) or (len(m) == 1 and m in "%")
                    for m in _NOT_NORMAL.findall(parts.path + parts.query))
            and not re.search(r"%(?![0-9A-F]{2})", href)
            and not re.search(r"(?:^|[;&?])(?:jsessionid|phpsessid|sid|sessionid)=",
                              parts.path + "?" + parts.query, re.I)
            and parts.hostname is not None and not parts.hostname.endswith(".")
            and (href.count("?") == 0 or parts.query != ""))


def test_the_data_is_the_web_platform_tests_file_with_its_notice() -> None:
    notice = (DATA / "NOTICE").read_text(encoding="utf-8")
    assert "web-platform-tests" in notice and "BSD 3-Clause" in notice
    assert "Unicode License" in notice
    assert len(URL_CASES) > 400  # of 891 cases, these resolve to (or fail on) http(s)


@pytest.mark.parametrize("case", URL_CASES, ids=_id)
def test_links_resolve_as_browsers_resolve_them(case: dict[str, Any]) -> None:
    got = normalize(case["input"], case.get("base"))
    if (case["input"], case.get("base")) in DIFFERENCES:
        assert got is None
        return
    if case.get("failure"):
        assert got is None, "browsers refuse this URL"
        return
    href = case["href"]
    assert got is not None
    assert got == normalize(href)
    if _in_normal_form(href):
        assert got == href


def test_most_cases_are_compared_as_strings() -> None:
    exact = [c for c in URL_CASES if "href" in c and _in_normal_form(c["href"])]
    assert len(exact) > 150


def _host_cases() -> list[dict[str, Any]]:
    return [c for name in ("toascii.json", "IdnaTestV2.json") for c in _cases(name)
            if c["input"]]  # an empty host is no host case: "http:///x" has host "x"


@pytest.mark.parametrize("case", _host_cases(), ids=lambda c: repr(c["input"]))
def test_hosts_are_mapped_by_uts46_non_transitional(case: dict[str, Any]) -> None:
    got = normalize(f"http://{case['input']}/x")
    expected = case["output"]
    if expected is not None and (not _DNS_NAME.fullmatch(expected)
                                 or len(expected.rstrip(".")) > 253):
        expected = None  # a valid host DNS cannot look up: not fetched (README)
    host = None if got is None else urlsplit(got).hostname
    assert host == (None if expected is None else expected.rstrip("."))


@pytest.mark.parametrize(("href", "expected"), [
    ("images\\a.jpg", "http://example.org/foo/images/a.jpg"),
    ("..\\index.html", "http://example.org/index.html"),
    ("http:\\\\host\\x", "http://host/x"),
    ("https:example.com/", "https://example.com/"),
    ("http:/example.com/", "http://example.org/example.com/"),
    ("///test", "http://test/"),
    ("http:foo.html", "http://example.org/foo/foo.html"),
    ("http:?q=1", "http://example.org/foo/bar?q=1"),
    ("?a='x'", "http://example.org/foo/bar?a=%27x%27"),
    ("?a=%27x%27", "http://example.org/foo/bar?a=%27x%27"),
    ("https://straße.de/", "https://xn--strae-oqa.de/"),
    ("http://βόλος.com/", "http://xn--nxasmm1c.com/"),  # final sigma kept (not mapped to U+03C3)
    ("http://a⒈com/", None),  # browsers refuse the host
])
def test_the_issue_cases(href: str, expected: str | None) -> None:
    assert normalize(href, "http://example.org/foo/bar") == expected


def _page_of_links(hrefs: list[str]) -> bytes:
    anchors = "".join(f'<a href="{html.escape(h, quote=True)}">x</a>' for h in hrefs)
    return f"<html><body>{anchors}</body></html>".encode()


def _links_of(url: str, body: bytes) -> list[tuple[str, str | None]]:
    result = parse.parse(ParseInput(url=url, status=200, content_type="text/html",
                                    charset="utf-8", headers={}, body=body))
    return [(link.to, link.refused) for link in result.links]


def test_links_remembered_from_another_page_resolve_as_on_their_own() -> None:
    """A parse process remembers resolved links across pages, keyed by what of the base each
    depends on (its origin, its directory): every case's input, on every http(s) base of the
    data, gives the same links, refusals included, after a page in the same directory with
    another name and query filled the memo, as with an empty memo; and with an empty memo
    what `normalize` and the policy give."""
    bases = sorted({case["base"] for case in URL_CASES
                    if str(case.get("base")).startswith(("http://", "https://"))
                    and normalize(case["base"]) is not None})
    # besides the data's inputs, links whose text could mislead a key on the directory
    tricky = [".", "..", "./", "../", "%2e%2e/x", "%2E/y", "a\\b", "a\tb", "\n?q", " x.html",
              "x.html ", "p:1.html", "http:x.html", "HTTP:?q", "x.html?a:b", "~u/", "-x", "_y",
              "../../../../x", "../", "../..", "/..", "/./x", "a/../b", "x/.y", "a//b", "/a//b",
              "'q'.html", "(x)!$&*+,=@", "../a;b", "/", "../é"]
    body = _page_of_links(sorted({case["input"] for case in URL_CASES}) + tricky)
    hrefs = [a.get("href")
             for a in etree.fromstring(body, etree.HTMLParser(encoding="utf-8")).iter("a")]
    remembered = 0
    try:
        for base in bases:
            page = normalize(base)
            assert page is not None
            policy = LinkPolicy.for_seeds([page], scope="host", private_networks="seeds")
            parse.init_worker((), policy, parse.DEFAULT_MAX_LINKS)
            parse._urls.clear()
            parse._urls_last.clear()
            alone = _links_of(base, body)
            expected = [(url, policy.refusal(url)) for href in hrefs
                        if (url := normalize(href, base)) is not None and url != page]
            assert alone == expected, base
            directory = page[: page.rfind("/", 0, (page + "?").find("?")) + 1]
            for sibling in (directory + "sibling.html?s=1", page.partition("?")[0] + "?other"):
                parse._urls.clear()
                parse._urls_last.clear()
                _links_of(sibling, body)
                remembered += sum(1 for _, prefix in parse._urls if prefix == directory)
                assert _links_of(base, body) == alone, (base, sibling)
    finally:
        parse.init_worker((), None, parse.DEFAULT_MAX_LINKS)
        parse._urls.clear()
        parse._urls_last.clear()
    assert len(bases) >= 10 and remembered > 150, (len(bases), remembered)


def test_plain_links_resolved_by_text_are_what_normalize_gives() -> None:
    """`parse._joined`, the text-only resolution of plain root- and path-relative links,
    gives what ada and `normalize` give, or leaves the link to them."""
    bases = ["http://example.org/", "http://example.org/a", "http://example.org/a/b/c.html",
             "https://example.org:8443/a/b/?q=1", "http://127.0.0.1:8000/s01/p00001.html",
             "http://example.org/a//b/", "http://[::1]:81/x/y", "http://example.org/%7Eu/a%20b/"]
    parts = ["a", "b.html", "..", ".", "", "x y", "%41", "A~-_", "p;s=1", "q?x", "f#g", "..x",
             ".h", "'", "(", "!$&*+,=@", "é", ":", "\\", "B"]
    hrefs = {prefix + "/".join(combo) for prefix in ("", "/", "../", "../../", "./")
             for n in (1, 2, 3) for combo in itertools.product(parts, repeat=n)}
    joined = 0
    for base in bases:
        page = normalize(base)
        assert page is not None
        origin, directory = parse._prefixes(page)
        assert directory is not None, page
        for href in sorted(hrefs):
            got = parse._joined(href, origin, directory)
            if got is not None:
                joined += 1
                assert got == normalize(href, page), (href, page)
    assert joined > 5000, joined


def test_the_memo_of_resolved_links_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "_URLS_MAX", 4)
    hrefs = [f"/p{i}.html" for i in range(20)] + [f"q{i}.html" for i in range(20)]
    try:
        links = _links_of("http://example.org/dir/page.html", _page_of_links(hrefs))
        assert [to for to, _ in links] == (
            [f"http://example.org/p{i}.html" for i in range(20)]
            + [f"http://example.org/dir/q{i}.html" for i in range(20)])
        assert len(parse._urls) <= 4 and len(parse._urls_last) <= 4
    finally:
        parse._urls.clear()
        parse._urls_last.clear()
