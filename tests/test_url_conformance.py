"""Link resolution against the public conformance data of web-platform-tests (tests/data/wpt/).

The crawler's key for a link must be the key of the URL a browser resolves it to: for every
http(s) case of urltestdata.json, `normalize(input, base) == normalize(href)`, and where the
browser's href is already in the contract's normal form (no fragment, no userinfo, escapes as
the contract writes them) the two are equal as strings. Hosts are checked against the UTS #46
data (toascii.json, IdnaTestV2.json). The few cases the crawler deliberately differs on are
listed in DIFFERENCES with the reason, and in the README.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crawler.urls import normalize

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
