"""Property tests of URL normalization (hypothesis), and the path-repetition trap rule.

The properties: no input raises; normalizing twice changes nothing; the fragment never
survives; the result is an absolute http(s) URL of printable ASCII; session IDs are gone.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crawler import urls as urls_module
from crawler.urls import TRAP_REPEATS, LinkPolicy, normalize, repeats_segments

PROPERTY = settings(max_examples=250, deadline=None, database=None)

_SESSION_NAMES = ("jsessionid", "PHPSESSID", "sid", "SessionId")

# pieces that URL parsers trip on, mixed with arbitrary text
_TRICKY = st.sampled_from([
    "%", "%2", "%2e", "%2E", "%2f", "%7e", "%C3%A9", "%zz", "%00", "..", ".", "/", "//", "?",
    "#", "&", "=", ";", ":", "@", "[", "]", "[::1]", "\\", " ", "\t", "\n", "\x00", "é", "例",
    "\u3002", "\ufeff", "\ud800", "xn--", "0x7f", "HTTP://", "https://", ";jsessionid=1",
])
_TEXT = st.lists(st.one_of(_TRICKY, st.text(max_size=6)), max_size=12).map("".join)
_SCHEME = st.sampled_from(["http", "https", "HTTP", "HtTpS", "ftp", "javascript", ""])
_HOST = st.one_of(
    st.sampled_from(["example.com", "EXAMPLE.com.", "127.0.0.1", "[::1]", "xn--bcher-kva.de",
                     "bücher.de", "0x7f.1", "2130706433", "a_b.test", ""]),
    st.from_regex(r"[a-zA-Z0-9-]{1,12}(\.[a-zA-Z0-9-]{1,12}){0,3}", fullmatch=True),
)
_PORT = st.one_of(st.just(""), st.integers(min_value=0, max_value=70000).map(lambda p: f":{p}"))
_SEGMENT = st.one_of(_TRICKY, st.text(alphabet=st.characters(codec="utf-8"), max_size=5))
_PATH = st.lists(_SEGMENT, max_size=6).map(lambda parts: "/" + "/".join(parts))
_PAIR = st.tuples(st.one_of(st.sampled_from(_SESSION_NAMES), _TEXT), _TEXT).map("=".join)
_QUERY = st.one_of(st.just(""), st.lists(_PAIR, max_size=4).map(lambda q: "?" + "&".join(q)))
_FRAGMENT = st.one_of(st.just(""), _TEXT.map(lambda f: "#" + f))


@st.composite
def urls(draw: st.DrawFn) -> str:
    """Absolute URLs, mostly http(s), built from parts that each may be hostile."""
    return (f"{draw(_SCHEME)}://{draw(_HOST)}{draw(_PORT)}{draw(_PATH)}"
            f"{draw(_QUERY)}{draw(_FRAGMENT)}")


BASES = st.one_of(st.none(), urls(), st.just("http://example.com/a/b/c?q=1"))


@PROPERTY
@given(st.one_of(urls(), _TEXT, st.text()), BASES)
@example("http://example.com/%", None)
@example("//[::1%eth0]/", "http://a.test/")
def test_normalize_never_raises_and_gives_http_or_none(url: str, base: str | None) -> None:
    result = normalize(url, base)
    assert result is None or result.startswith(("http://", "https://"))


@PROPERTY
@given(st.one_of(urls(), _TEXT), BASES)
@example("http://a.test/a/./b/../../c?x=%7e#frag", None)
@example("HTTP://EXAMPLE.com:80/%7euser;jsessionid=9?sid=1&a=2", None)
def test_normalizing_twice_changes_nothing(url: str, base: str | None) -> None:
    once = normalize(url, base)
    if once is not None:
        assert normalize(once) == once
        assert normalize(once, base) == once, "an absolute URL ignores the base"


@PROPERTY
@given(urls(), BASES)
def test_the_fragment_never_survives(url: str, base: str | None) -> None:
    result = normalize(url, base)
    if result is not None:
        assert "#" not in result
        assert not urlsplit(result).fragment


@PROPERTY
@given(urls())
def test_results_are_printable_ascii_with_a_lower_case_host(url: str) -> None:
    result = normalize(url)
    if result is not None:
        assert result.isascii() and result.isprintable() and " " not in result
        netloc = urlsplit(result).netloc
        assert netloc == netloc.lower()
        assert not netloc.endswith((":80", ":443")) or (
            result.startswith("http://") and netloc.endswith(":443")) or (
            result.startswith("https://") and netloc.endswith(":80"))


@PROPERTY
@given(urls())
def test_session_id_parameters_never_survive(url: str) -> None:
    result = normalize(url)
    if result is not None:
        parts = urlsplit(result)
        names = [pair.partition("=")[0].lower() for pair in parts.query.split("&")]
        assert not {n for n in names if n in {s.lower() for s in _SESSION_NAMES}}
        params = [p.partition("=")[0].lower() for seg in parts.path.split("/")
                  for p in seg.split(";")[1:]]
        assert "jsessionid" not in params


_PLAIN_SEGMENT = st.text(alphabet="aZ09-._~!$&'()*+,=:@", max_size=6)


@PROPERTY
@given(st.one_of(urls(), st.builds(
    lambda host, port, parts, fragment: f"http://{host}{port}/" + "/".join(parts) + fragment,
    _HOST, _PORT, st.lists(_PLAIN_SEGMENT, max_size=5), _FRAGMENT)), BASES)
def test_the_shortcut_for_a_plain_url_gives_what_the_full_steps_give(url: str,
                                                                    base: str | None) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urls_module, "_PLAIN", re.compile(r"(?!)"))  # never matches: full steps
        expected = normalize(url, base)
    assert normalize(url, base) == expected


# --- the trap rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "trap"), [
    ("/a/b/a/b/a/b/", True),
    ("/a/a/a/", True),
    ("/x/y/z/x/y/z/x/y/z", True),
    ("/pre/a/b/a/b/a/b/post", True),
    ("/a/b/a/b/", False),
    ("/a/a/", False),
    ("/2026/01/01/news", False),
    ("/a/b/c/d/a/b/c/d/a/b/c/d/", False),  # blocks of four and more are not looked for
    ("/", False),
    ("", False),
])
def test_repeats_segments(path: str, trap: bool) -> None:
    assert repeats_segments(path) is trap


@PROPERTY
@given(st.lists(st.sampled_from(["a", "b", "c", "2026"]), min_size=1, max_size=3),
       st.lists(st.sampled_from(["x", "y"]), max_size=3))
def test_any_block_repeated_enough_is_a_trap(block: list[str], prefix: list[str]) -> None:
    path = "/" + "/".join(prefix + block * TRAP_REPEATS) + "/"
    assert repeats_segments(path)


@PROPERTY
@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=12))
def test_the_trap_rule_is_a_block_of_one_to_three_segments_three_times(segments: list[str]) \
        -> None:
    # the definition spelled out, against the rule's quick answer for paths without repeats
    expected = any(segments[i:i + w] == segments[i + w:i + 2 * w] == segments[i + 2 * w:i + 3 * w]
                   for w in (1, 2, 3) for i in range(len(segments) - 3 * w + 1))
    assert repeats_segments("/" + "/".join(segments)) is expected


def test_policy_refuses_trap_urls() -> None:
    policy = LinkPolicy.for_seeds(["http://example.com/"], scope="host",
                                  private_networks="seeds")
    assert policy.refusal("http://example.com/cal/a/b/a/b/a/b/") == "trap"
    assert policy.refusal("http://example.com/cal/a/b/a/b/") is None
