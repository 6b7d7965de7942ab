"""The parse stage: page fields, links, visible text, simhash, encodings, plugins, sitemaps."""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import os
import pickle
import pickletools
import random
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lxml.etree as etree  # type: ignore[import-untyped]
import pytest

from crawler import parse as parse_module
from crawler.models import Link, Links, ParseInput, ParseResult
from crawler.parse import (
    DEFAULT_MAX_LINKS,
    init_worker,
    load_callable,
    parse,
    parse_many,
    parse_sitemap,
)
from crawler.text import SHINGLE, figures, hamming, visible_text
from crawler.urls import LinkPolicy

# The extractor specs name `tests.plugins.extractors`, as a user names a module of their own
# project. The project root goes on sys.path at collection, before any test starts the
# forkserver, whose children inherit the path it had when it started.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
PLUGINS = "tests.plugins.extractors"

PAGE_URL = "http://example.com/dir/page.html"


@pytest.fixture(autouse=True)
def _default_worker() -> Iterator[None]:
    # init_worker sets process-wide state: each test starts and ends with the defaults
    init_worker((), None, DEFAULT_MAX_LINKS)
    yield
    init_worker((), None, DEFAULT_MAX_LINKS)


def page(
    body: str | bytes,
    *,
    url: str = PAGE_URL,
    status: int = 200,
    content_type: str | None = "text/html",
    charset: str | None = None,
    headers: dict[str, str] | None = None,
) -> ParseResult:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return parse(ParseInput(url, status, content_type, charset, headers or {}, data))


def body_of(inner: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body>{inner}</body></html>"


# --- page fields -------------------------------------------------------------------------


def test_title_description_lang_and_canonical_are_extracted() -> None:
    result = page(
        """<html lang="de-AT"><head><title>
             Hello \t  <b>brave</b>
             world </title>
           <META NAME="Description" content="  A   page  about things ">
           <link rel="alternate stylesheet" href="/alt.css">
           <link rel="Canonical" href="../canon/?b=2&a=1#top">
           </head><body>x</body></html>"""
    )
    assert result.is_html
    assert result.title == "Hello <b>brave</b> world"  # <title> content is raw text
    assert result.description == "A page about things"
    assert result.lang == "de-AT"
    assert result.canonical == "http://example.com/canon/?b=2&a=1"
    assert result.encoding == "utf-8"


def test_missing_or_blank_fields_are_none() -> None:
    result = page("<html><head><title>  \n </title><meta name=description content=' '>"
                  "</head><body><p>words</p></body></html>")
    assert (result.title, result.description, result.lang, result.canonical) == (None,) * 4
    assert result.words == 1


def test_svg_title_is_not_the_page_title() -> None:
    result = page(body_of("<svg><title>icon</title></svg>").replace("<title>t</title>", ""))
    assert result.title is None


def test_sha256_is_of_the_body_for_every_page() -> None:
    body = b"%PDF-1.7 not html"
    result = page(body, content_type="application/pdf")
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert page(body_of("x")).sha256 == hashlib.sha256(body_of("x").encode()).hexdigest()


def test_error_pages_are_parsed_too() -> None:
    result = page(body_of("<h1>Not found</h1><a href='/home'>home</a>"), status=404)
    assert result.is_html and result.title == "t"
    assert [link.to for link in result.links] == ["http://example.com/home"]


def test_busy_time_is_measured() -> None:
    assert page(body_of("<p>x</p>")).busy_s > 0


# --- links -------------------------------------------------------------------------------


def test_links_resolve_against_base_href() -> None:
    result = page(
        "<html><head><base href='https://cdn.example.org/base/'></head><body>"
        "<a href='rel/a.html'>a</a><a href='/root'>b</a><a href='//other.net/x'>c</a>"
        "</body></html>"
    )
    assert [link.to for link in result.links] == [
        "https://cdn.example.org/base/rel/a.html",
        "https://cdn.example.org/root",
        "https://other.net/x",
    ]


def test_links_to_the_page_itself_are_left_out() -> None:
    result = page(body_of(
        "<a href='#a'>1</a><a href='page.html#b'>2</a><a href=''>3</a>"
        "<a href='http://example.com/dir/page.html'>4</a><a href='other.html#a'>5</a>"
    ))
    assert [link.to for link in result.links] == ["http://example.com/dir/other.html"]
    assert result.links_dropped == 0  # left out, not dropped by the cap
    # against another base, '#a' leads to the base: a page of its own
    based = page("<html><head><base href='http://example.com/elsewhere'></head><body>"
                 "<a href='#a'>x</a></body></html>")
    assert [link.to for link in based.links] == ["http://example.com/elsewhere"]


def test_relative_links_and_fragments_resolve_against_the_page() -> None:
    result = page(body_of(
        "<a href='next.html#part2'>1</a><a href='../up/'>2</a><a href='#top'>3</a>"
        "<a href='?q=1'>4</a><a href='HTTP://Example.COM:80/A/./b/../c'>5</a>"
    ))
    # '#top' is the page itself: no outlink (README, "Outputs")
    assert [link.to for link in result.links] == [
        "http://example.com/dir/next.html",
        "http://example.com/up/",
        "http://example.com/dir/page.html?q=1",
        "http://example.com/A/c",
    ]


def test_rel_nofollow_marks_only_its_own_link() -> None:
    result = page(body_of(
        "<a href='/a' rel='external NOFOLLOW'>a</a><a href='/b' rel='noopener'>b</a>"
        "<a href='/c'>c</a>"
    ))
    assert [link.nofollow for link in result.links] == [True, False, False]


def test_meta_robots_nofollow_marks_every_link() -> None:
    for content in ("noindex, NoFollow", "none"):
        html = body_of("<a href='/a'>a</a><a href='/b'>b</a>").replace(
            "</head>", f"<meta name='ROBOTS' content='{content}'></head>"
        )
        assert [link.nofollow for link in page(html).links] == [True, True]
    html = body_of("<a href='/a'>a</a>").replace(
        "</head>", "<meta name='robots' content='noindex'></head>")
    assert page(html).links[0].nofollow is False


def test_anchor_text_is_collapsed_trimmed_and_capped_at_200_characters() -> None:
    long_text = "word " * 100
    result = page(body_of(
        "<a href='/a'>\n  Read <b>the</b>\t\tfull\n story  </a>"
        f"<a href='/b'><span>{long_text}</span></a><a href='/c'><img src=x.png></a>"
    ))
    texts = [link.text for link in result.links]
    assert texts[0] == "Read the full story"
    assert len(texts[1]) <= 200
    assert texts[1] == " ".join(long_text.split())[:200].rstrip()
    assert texts[2] == ""


def test_links_cross_the_process_boundary_as_four_lists() -> None:
    result = page(body_of(
        "<a href='/a' rel=nofollow>A <b>bold</b> one</a><a href='http://elsewhere.net/'>b</a>"
        "<a href='/a'>again</a>"))
    links = result.links
    assert isinstance(links, Links)
    assert links.to == ["http://example.com/a", "http://elsewhere.net/", "http://example.com/a"]
    assert links.text == ["A bold one", "b", "again"]
    assert links.nofollow == [True, False, False]
    assert links.refused == [None, None, None]  # no policy in these tests
    assert list(links) == [Link(*row) for row in zip(links.to, links.text, links.nofollow,
                                                      links.refused, strict=True)]
    assert links[1] == Link("http://elsewhere.net/", "b", False) and len(links[1:]) == 2
    data = pickle.dumps([result], protocol=pickle.HIGHEST_PROTOCOL)  # as the pool sends it
    assert pickle.loads(data) == [result]
    # classes named in the pickle: the result and its links, no object per link
    names = {arg for op, arg, _ in pickletools.genops(data) if op.name == "SHORT_BINUNICODE"}
    assert "Links" in names and "Link" not in names


def test_area_links_are_extracted_with_their_alt_text() -> None:
    result = page(body_of(
        "<map name=m><area shape=rect coords='0,0,1,1' href='/area' alt=' Map  area '>"
        "<area shape=rect nohref></map><a href='/a'>a</a>"
    ))
    assert [(link.to, link.text) for link in result.links] == [
        ("http://example.com/area", "Map area"),
        ("http://example.com/a", "a"),
    ]


def test_links_that_are_not_http_are_dropped() -> None:
    result = page(body_of(
        "<a href='mailto:me@example.com'>m</a><a href='javascript:void(0)'>j</a>"
        "<a href='tel:+123'>t</a><a href='ftp://example.com/f'>f</a>"
        "<a href='http://[broken'>g</a><a href='data:text/plain,hi'>d</a><a>no href</a>"
        "<a href='  /kept  '>k</a>"
    ))
    assert [link.to for link in result.links] == ["http://example.com/kept"]
    assert result.links_dropped == 0


def test_duplicate_links_are_kept_in_document_order() -> None:
    result = page(body_of("<a href='/x'>1</a><a href='/y'>2</a><a href='/x#again'>3</a>"))
    assert [(link.to, link.text) for link in result.links] == [
        ("http://example.com/x", "1"),
        ("http://example.com/y", "2"),
        ("http://example.com/x", "3"),
    ]


def test_links_past_max_links_are_counted_not_kept() -> None:
    init_worker((), None, 3)
    result = page(body_of("".join(f"<a href='/p{i}'>{i}</a>" for i in range(10))
                          + "<a href='mailto:x@example.com'>m</a>"))
    assert [link.to for link in result.links] == [f"http://example.com/p{i}" for i in range(3)]
    assert result.links_dropped == 7


def test_links_carry_the_policy_refusal() -> None:
    policy = LinkPolicy(scope="host", seed_hosts=frozenset({"example.com"}),
                        seed_domains=frozenset({"example.com"}), deny=(r"/private/",))
    init_worker((), policy, 100)
    result = page(body_of(
        "<a href='/ok'>1</a><a href='http://elsewhere.org/'>2</a><a href='/private/x'>3</a>"
    ))
    assert [link.refused for link in result.links] == [None, "scope", "deny"]
    init_worker((), None, 100)
    assert [link.refused for link in page(body_of("<a href='http://o.org/'>1</a>")).links] == [
        None
    ]


# --- visible text and simhash ------------------------------------------------------------


def test_visible_text_excludes_script_style_head_and_comments() -> None:
    result = page(
        "<html><head><title>Title words</title><style>p { color: red }</style>"
        "<script>var hidden = 1;</script></head><body>"
        "<p>one two</p><script>alert('no')</script><style>.x{}</style>"
        "<noscript>enable js</noscript><template><p>later</p></template>"
        "<!-- a comment --><div>three<br>four</div>five</body></html>"
    )
    assert result.words == 5
    assert result.simhash == simhash_of(["one", "two", "three", "four", "five"])


def test_visible_text_leaves_the_tree_whole_for_extractors() -> None:
    root = etree.fromstring(b"<html><body><p>a <b>b</b><script>x</script></p></body></html>",
                            parser=etree.HTMLParser())
    before = etree.tostring(root)
    assert visible_text(root).split() == ["a", "b"]
    assert etree.tostring(root) == before


def test_visible_text_of_a_tree_deeper_than_libxslt_recurses() -> None:
    # libxml2's HTML parser nests 2 048 deep at most; a tree an extractor built may be deeper
    root = etree.Element("html")
    node = etree.SubElement(root, "body")
    for _ in range(5000):
        node = etree.SubElement(node, "div")
        node.text = "w"
        etree.SubElement(node, "script").text = "hidden"
    text = visible_text(root)
    assert text.split() == ["w"] * 5000
    assert len(root.findall(".//script")) == 5000  # the tree stays whole here too


def test_word_count_splits_blocks_but_not_inline_markup() -> None:
    result = page(body_of("<td>1</td><td>2</td><p><b>H</b>ello <i>wo</i>rld</p>"))
    assert result.words == 4  # "1", "2", "Hello", "world"


def test_word_count_is_unicode_aware() -> None:
    result = page(body_of("<p>Naïve café, déjà-vu; 東京 Ελληνικά — 42!</p>"))
    assert result.words == 7  # naïve café déjà vu 東京 ελληνικά 42


def test_simhash_is_16_lowercase_hex_digits() -> None:
    value = page(body_of("<p>Some text to hash</p>")).simhash
    assert value is not None and len(value) == 16
    assert value == value.lower() and int(value, 16) >= 0


def test_page_without_words_has_no_simhash() -> None:
    result = page(body_of("<p> ... </p><script>words()</script>"))
    assert (result.words, result.simhash) == (0, None)
    assert simhash_of([]) is None
    assert figures(" -- ... ") == (0, None)


def test_words_are_the_runs_of_backslash_w_in_lower_case() -> None:
    rng = random.Random(3)
    alphabet = "aZ_9 ,.-'\téÉßİ東京Ελ\u00a0\u2028😀𝔘\u0301٣"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        tokens = re.findall(r"\w+", text.lower())
        words, simhash = figures(text)
        assert words == len(tokens), text
        assert simhash == (simhash_of(tokens) if tokens else None), text


def test_a_text_longer_than_a_hashing_piece_keeps_its_words() -> None:
    tokens = article(9, words=40_000)  # about 300 000 characters: several pieces
    assert figures(" ".join(tokens)) == (len(tokens), reference_simhash(tokens))


_MASK = (1 << 64) - 1
_FACTORS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = k * 0xFF51AFD7ED558CCD & _MASK
    k ^= k >> 33
    k = k * 0xC4CEB9FE1A85EC53 & _MASK
    return k ^ k >> 33


def simhash_of(tokens: list[str]) -> str | None:
    return figures(" ".join(tokens))[1]


def _word_hash(word: str) -> int:
    """A word's hash as `crawler.text` defines it: a polynomial of its code points modulo
    2**64 (FNV-1's prime), then murmur3's finalizer."""
    return _fmix(sum(ord(c) * pow(0x100000001B3, i, 1 << 64) for i, c in enumerate(word))
                 & _MASK)


def reference_simhash(tokens: list[str]) -> str:
    """The textbook loop over the distinct 3-word shingles: 64 additions per shingle."""
    digests = [_word_hash(t) for t in tokens]
    shingles = {tuple(digests[i:i + SHINGLE])
                for i in range(max(1, len(digests) - SHINGLE + 1))}
    features = {_fmix(sum(d * f for d, f in zip(s, _FACTORS, strict=False)) & _MASK)
                for s in shingles}
    vector = [0] * 64
    for value in features:
        for bit in range(64):
            vector[bit] += 1 if value >> bit & 1 else -1
    return f"{sum(1 << bit for bit in range(64) if vector[bit] > 0):016x}"


def test_simhash_matches_the_textbook_definition() -> None:
    rng = random.Random(7)
    for size in (1, 2, 3, 4, 10, 500):
        tokens = [f"w{rng.randrange(50)}" for _ in range(size)]
        assert simhash_of(tokens) == reference_simhash(tokens), size
    # many repeated shingles (a vocabulary of 6 words): the dedupe, not only the sum
    tokens = [f"w{rng.randrange(6)}" for _ in range(3000)]
    assert simhash_of(tokens) == reference_simhash(tokens)
    # a shingle repeated counts once: the text is a set of shingles
    assert simhash_of(["a", "b", "c"] * 5) == simhash_of(["a", "b", "c", "a", "b", "c", "a"])


def test_simhash_features_are_ordered_shingles_not_words() -> None:
    words = article(5, words=300)
    assert simhash_of(words) != simhash_of(sorted(words))


def test_a_shared_template_does_not_make_pages_near_duplicates() -> None:
    template = article(6, words=400, vocabulary="nav")
    first = simhash_of([*template, *article(7, words=300, vocabulary="a")])
    second = simhash_of([*template, *article(8, words=300, vocabulary="b")])
    assert first is not None and second is not None
    assert hamming(first, second) > 3


def article(seed: int, words: int = 2000, vocabulary: str = "w") -> list[str]:
    rng = random.Random(seed)
    return [f"{vocabulary}{int(rng.paretovariate(1.2))}x{rng.randrange(40)}" for _ in range(words)]


def test_identical_texts_have_identical_simhashes() -> None:
    text = " ".join(article(1))
    assert page(body_of(f"<p>{text}</p>")).simhash == page(f"<p>{text}</p>").simhash


def test_one_word_changed_in_a_long_text_stays_within_hamming_3() -> None:
    words = article(2)
    changed = [*words[:1000], "replacement", *words[1001:]]
    first = page(body_of(f"<p>{' '.join(words)}</p>")).simhash
    second = page(body_of(f"<p>{' '.join(changed)}</p>")).simhash
    assert first is not None and second is not None
    assert hamming(first, second) <= 3


def test_unrelated_texts_are_far_apart() -> None:
    first = simhash_of(article(3, vocabulary="alpha"))
    second = simhash_of(article(4, vocabulary="beta"))
    assert first is not None and second is not None
    assert hamming(first, second) >= 16


def test_hamming_counts_differing_bits() -> None:
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("ffffffffffffffff", "0000000000000000") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2


# --- encodings ---------------------------------------------------------------------------


def test_charset_from_the_content_type_header_is_used() -> None:
    body = "<html><head><title>Привет, мир</title></head><body>Съешь же ещё</body></html>"
    result = page(body.encode("windows-1251"), charset="windows-1251")
    assert (result.title, result.encoding, result.words) == ("Привет, мир", "cp1251", 3)


def test_meta_charset_is_used_without_a_header() -> None:
    body = "<html><head><meta charset='shift_jis'><title>日本語のページ</title></head></html>"
    result = page(body.encode("shift_jis"))
    assert result.title == "日本語のページ"
    assert result.encoding == "cp932"  # Shift_JIS as browsers read it


def test_meta_http_equiv_content_type_is_used() -> None:
    body = ("<html><head><meta http-equiv='Content-Type' content='text/html; charset=koi8-r'>"
            "<title>Заголовок</title></head></html>")
    result = page(body.encode("koi8-r"))
    assert (result.title, result.encoding) == ("Заголовок", "koi8-r")


def test_utf16_with_a_bom_is_decoded() -> None:
    body = "<html><head><title>Ünïcode ☃</title></head><body>a b</body></html>"
    for codec, name in (("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be")):
        data = "\ufeff".encode(codec) + body.encode(codec)
        result = page(data)
        assert (result.is_html, result.title, result.encoding, result.words) == (
            True, "Ünïcode ☃", name, 2)


def test_utf16_declared_in_the_header_without_a_bom_is_decoded() -> None:
    result = page("<html><title>wide</title></html>".encode("utf-16-le"), charset="utf-16le")
    assert (result.is_html, result.title) == (True, "wide")


def test_header_charset_wins_over_a_disagreeing_meta() -> None:
    body = ("<html><head><meta charset='utf-8'><title>Привет, мир</title></head>"
            "<body>Съешь же ещё</body></html>")
    result = page(body.encode("windows-1251"), charset="windows-1251")
    assert (result.title, result.encoding) == ("Привет, мир", "cp1251")


def test_bom_wins_over_header_and_meta() -> None:
    body = "\ufeff<html><head><meta charset='koi8-r'><title>Grüße</title></head></html>"
    result = page(body.encode(), charset="windows-1251")
    assert (result.title, result.encoding) == ("Grüße", "utf-8")


def test_bom_overrides_a_wrong_header() -> None:
    body = "\ufeff<html><head><title>Grüße aus Köln</title></head></html>".encode()
    result = page(body, charset="iso-8859-1")
    assert (result.title, result.encoding) == ("Grüße aus Köln", "utf-8")


def test_latin1_bytes_declared_utf8_fall_through_to_detection() -> None:
    text = ("Le cœur a ses raisons que la raison ne connaît point. Château, crème brûlée, "
            "déjà vu, façade, naïveté, à la carte, garçon, très élégant. ") * 5
    body = f"<html><head><title>Café</title></head><body><p>{text}</p></body></html>"
    result = page(body.encode("cp1252"), charset="utf-8")
    assert result.is_html
    assert result.encoding is not None and result.encoding != "utf-8"
    assert result.words is not None and result.words > 50


def test_latin1_label_decodes_as_windows_1252() -> None:
    result = page(b"<title>\x93quoted\x94 \x80 5</title>", charset="ISO-8859-1")
    assert (result.title, result.encoding) == ("\u201cquoted\u201d \u20ac 5", "cp1252")


def test_unknown_or_unsuitable_charset_labels_are_ignored() -> None:
    body = "<html><title>naïve</title></html>".encode()
    for label in ("x-no-such-charset", "base64", "unicode_escape", "utf-7", '"utf-8"'):
        result = page(body, charset=label)
        assert (result.title, result.encoding) == ("naïve", "utf-8"), label


def test_undecodable_bytes_never_raise() -> None:
    result = page(b"<title>\x81\x8d\x8f\x90\x9d \xff\xfe\xfd</title>" * 3, charset="utf-8")
    assert result.is_html and result.encoding is not None


def test_xml_declaration_in_the_document_does_not_override_the_decoding() -> None:
    body = ("<?xml version='1.0' encoding='iso-8859-1'?>\n<html xmlns='http://www.w3.org/1999/xhtml'>"
            "<head><title>Ça va</title></head><body><a href='/x'>x</a></body></html>")
    result = page(body.encode(), content_type="application/xhtml+xml", charset="utf-8")
    assert (result.title, result.encoding) == ("Ça va", "utf-8")
    assert [link.to for link in result.links] == ["http://example.com/x"]


# --- what is and is not HTML -------------------------------------------------------------


def assert_not_html(result: ParseResult) -> None:
    assert result.is_html is False
    assert (result.title, result.description, result.lang, result.canonical) == (None,) * 4
    assert (result.words, result.simhash, result.links, result.extra) == (None, None, [], {})


def test_binary_bytes_labelled_html_are_not_html() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
    assert_not_html(page(png))
    no_nul = bytes(b for b in range(1, 32) if b not in (9, 10, 12, 13, 27)) * 40 + b"<a href=x>"
    assert_not_html(page(no_nul))


def test_a_few_stray_control_bytes_do_not_make_html_binary() -> None:
    result = page(body_of("<p>copy\x0bpasted\x1ftext</p>" + "<p>normal</p>" * 20))
    assert result.is_html and result.words is not None and result.words > 20


def test_non_html_types_are_not_parsed() -> None:
    for content_type in ("application/json", "text/plain", "image/png", "application/xml"):
        assert_not_html(page(body_of("<a href='/x'>x</a>"), content_type=content_type))


def test_unlabelled_bodies_are_sniffed() -> None:
    for content_type in (None, ""):
        assert page("\n  <!DOCTYPE html><title>s</title>", content_type=content_type).is_html
        assert page("<HTML><body>x", content_type=content_type).title is None
        assert_not_html(page('{"json": true}', content_type=content_type))
        assert_not_html(page("<?xml version='1.0'?><feed/>", content_type=content_type))


def test_empty_html_document_has_empty_fields() -> None:
    for body in (b"", b"   \n", b"<!-- only a comment -->"):
        result = page(body)
        assert result.is_html and result.error is None
        assert (result.title, result.words, result.simhash, result.links) == (None, 0, None, [])


def test_malformed_html_is_parsed_leniently() -> None:
    result = page(
        "<html><head><title>Broken</title></head><body><p>one <b>two <i>three</p>"
        "<a href='/a'>link<a href=\"/b\">other</div></table><p <<< >>> four"
        "<a href='/c' rel=nofollow>last"
    )
    assert result.is_html and result.title == "Broken"
    assert [link.to for link in result.links][:2] == ["http://example.com/a", "http://example.com/b"]
    assert result.words is not None and result.words >= 4


def test_deeply_nested_tags_do_not_crash() -> None:
    html = body_of("<a href='/before'>before</a>" + "<div>x " * 20_000 + "</div>" * 20_000)
    start = time.perf_counter()
    result = page(html)
    assert time.perf_counter() - start < 10
    assert result.is_html and result.title == "t"
    assert result.links[0].to == "http://example.com/before"
    assert result.words is not None and result.words > 1000


def test_100000_nested_tags_keep_the_page_and_what_precedes_them() -> None:
    html = body_of("<a href='/before'>before</a>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000)
    result = page(html)
    assert result.is_html and result.title == "t" and result.error is None
    assert result.links[0].to == "http://example.com/before"


def test_links_past_the_cap_count_only_valid_ones() -> None:
    anchors = "".join(f"<a href='/l/{i}'>{i}</a><a href='mailto:x{i}@y'>m</a>"
                      for i in range(20_000))
    result = page(body_of(anchors))
    assert len(result.links) == 5000
    assert result.links_dropped == 15_000, "mailto: links are not outlinks, kept or dropped"


# --- extractor plugins -------------------------------------------------------------------


def test_extractor_results_are_merged_into_extra() -> None:
    init_worker([f"{PLUGINS}:h1_count", f"{PLUGINS}:nothing", f"{PLUGINS}:page_facts"], None, 10)
    result = page(body_of("<h1>a</h1><h1>b</h1>"), status=203, headers={"server": "test"})
    assert result.extra == {
        "h1": 2, "pid": os.getpid(), "url": PAGE_URL, "status": 203, "server": "test",
        "html_chars": len(body_of("<h1>a</h1><h1>b</h1>")),
    }
    assert result.error is None


def test_a_raising_extractor_fills_error_and_keeps_the_page() -> None:
    init_worker([f"{PLUGINS}:boom", f"{PLUGINS}:h1_count"], None, 10)
    result = page(body_of("<h1>kept</h1>"))
    assert result.error == f"{PLUGINS}:boom: RuntimeError: extractor exploded"
    assert result.title == "t" and result.extra["h1"] == 1


def test_an_extractor_result_that_is_not_json_is_dropped_with_an_error() -> None:
    init_worker([f"{PLUGINS}:not_json"], None, 10)
    result = page(body_of("x"))
    assert result.extra == {}
    assert result.error is not None and result.error.startswith(f"{PLUGINS}:not_json: TypeError")


def test_extractors_do_not_run_on_non_html_pages() -> None:
    init_worker([f"{PLUGINS}:boom"], None, 10)
    result = page(b"plain", content_type="text/plain")
    assert (result.extra, result.error) == ({}, None)


@pytest.mark.parametrize(
    "spec",
    ["no_colon", ":fn", "module:", "no.such.module_xyz:fn", f"{PLUGINS}:missing",
     f"{PLUGINS}:NOT_CALLABLE"],
)
def test_bad_plugin_specs_raise_a_clear_value_error(spec: str) -> None:
    with pytest.raises(ValueError, match="plugin"):
        load_callable(spec)
    with pytest.raises(ValueError):
        init_worker([spec], None, 10)


def test_negative_max_links_is_refused() -> None:
    with pytest.raises(ValueError, match="max_links"):
        init_worker((), None, -1)


def test_parse_many_keeps_the_order_of_its_inputs() -> None:
    words = ["alpha", "beta", "gamma"]
    inputs = [ParseInput(PAGE_URL, 200, "text/html", None, {}, f"<title>{w}</title>".encode())
              for w in words]
    assert [result.title for result in parse_many(inputs)] == words


def test_load_callable_returns_the_function() -> None:
    assert load_callable("os.path:join") is os.path.join
    assert load_callable(f"{PLUGINS}:h1_count").__name__ == "h1_count"


def test_parse_many_runs_in_a_forkserver_process_pool() -> None:
    policy = LinkPolicy(scope="host", seed_hosts=frozenset({"example.com"}),
                        seed_domains=frozenset({"example.com"}))
    inputs = [
        ParseInput(PAGE_URL, 200, "text/html", "utf-8", {},
                   body_of("<h1>x</h1><a href='/in'>in</a><a href='http://out.org/'>o</a>")
                   .encode()),
        ParseInput(PAGE_URL, 200, "image/png", None, {}, b"\x89PNG\x00"),
    ]
    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=init_worker,
        initargs=((f"{PLUGINS}:h1_count",), policy, 10),
    ) as pool:
        results = pool.submit(parse_many, inputs).result(timeout=120)
    html, png = results
    assert html.extra["h1"] == 1 and html.extra["pid"] != os.getpid()
    assert [link.refused for link in html.links] == [None, "scope"]
    assert png.is_html is False and png.busy_s > 0


# --- sitemaps ----------------------------------------------------------------------------

URLSET = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc> https://Example.com/a?x=1#frag </loc><lastmod>2024-01-01</lastmod>
    <image:image><image:loc>https://example.com/img.png</image:loc></image:image></url>
  <url><loc>https://example.com/b</loc></url>
  <url><loc>not a url</loc></url>
  <url><loc>ftp://example.com/c</loc></url>
  <url><loc>https://example.com/b</loc></url>
</urlset>"""

INDEX = """<sitemapindex>
  <sitemap><loc>https://example.com/sitemap-1.xml.gz</loc></sitemap>
  <sitemap><loc>https://example.com/sitemap-2.xml</loc></sitemap>
</sitemapindex>"""


def test_sitemap_urlset_gives_normalized_page_urls() -> None:
    assert parse_sitemap(URLSET.encode(), 100) == (
        ["https://example.com/a?x=1", "https://example.com/b"], [])


def test_sitemap_index_gives_child_sitemaps() -> None:
    assert parse_sitemap(INDEX.encode(), 100) == (
        [], ["https://example.com/sitemap-1.xml.gz", "https://example.com/sitemap-2.xml"])


def test_gzipped_sitemap_is_decompressed() -> None:
    assert parse_sitemap(gzip.compress(URLSET.encode()), 100)[0] == [
        "https://example.com/a?x=1", "https://example.com/b"]
    assert parse_sitemap(b"\x1f\x8b\x08\x00garbage", 100) == ([], [])


def test_sitemap_decompression_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "SITEMAP_MAX_BYTES", 2000)
    entries = "".join(f"<url><loc>https://example.com/{i}</loc></url>" for i in range(1000))
    pages, _ = parse_sitemap(gzip.compress(f"<urlset>{entries}</urlset>".encode()), 10_000)
    assert 0 < len(pages) < 100


def test_sitemap_stops_at_max_urls() -> None:
    entries = "".join(f"<url><loc>https://example.com/{i}</loc></url>" for i in range(50))
    pages, _ = parse_sitemap(f"<urlset>{entries}</urlset>".encode(), 7)
    assert pages == [f"https://example.com/{i}" for i in range(7)]
    assert parse_sitemap(URLSET.encode(), 0) == ([], [])


def test_plain_text_sitemap_lists_one_url_per_line() -> None:
    body = b"\xef\xbb\xbfhttps://example.com/1\n\nnot a url\r\nhttps://example.com/2\n"
    assert parse_sitemap(body, 10) == (["https://example.com/1", "https://example.com/2"], [])


def test_sitemap_with_an_external_entity_leaks_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    body = f"""<?xml version="1.0"?>
<!DOCTYPE urlset [
  <!ENTITY xxe SYSTEM "file://{secret}">
  <!ENTITY % remote SYSTEM "file://{secret}"> %remote;
]>
<urlset><url><loc>https://example.com/&xxe;</loc></url>
<url><loc>&xxe;</loc></url></urlset>"""
    pages, children = parse_sitemap(body.encode(), 100)
    assert "TOPSECRET" not in repr((pages, children))
    assert children == [] and all(url.startswith("https://example.com/") for url in pages)


def test_billion_laughs_sitemap_is_not_expanded() -> None:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    body = (f"<?xml version='1.0'?><!DOCTYPE urlset [{''.join(entities)}]>"
            "<urlset><url><loc>https://example.com/&lol9;</loc></url>"
            "<url><loc>https://example.com/ok</loc></url></urlset>")
    start = time.perf_counter()
    pages, children = parse_sitemap(body.encode(), 100)
    assert time.perf_counter() - start < 2
    # libxml2 refuses the amplification and stops there: the URLs are lost, nothing more
    assert all(len(url) < 100 and "lollol" not in url for url in pages + children)


# --- the real web (issue 11) ---------------------------------------------------------------


def test_http_colon_relative_links_are_not_taken_from_another_page() -> None:
    # `http:foo.html` is relative (WHATWG): the second page's link is on the second host
    inner = body_of("<a href='http:foo.html'>f</a><a href='http:?q=1'>q</a>")
    first = page(inner, url="http://one.example/a/page.html")
    second = page(inner, url="http://two.example/b/page.html")
    assert [link.to for link in first.links] == [
        "http://one.example/a/foo.html", "http://one.example/a/page.html?q=1"]
    assert [link.to for link in second.links] == [
        "http://two.example/b/foo.html", "http://two.example/b/page.html?q=1"]


def test_the_links_cap_counts_distinct_targets_not_anchors() -> None:
    init_worker((), None, 135)
    toc = "".join(f"<a href='/t/{i % 135}'>{i}</a>" for i in range(5000))
    result = page(body_of(toc + "<a href='/t/new'>new</a><a href='/t/0#x'>again</a>"))
    targets = {link.to for link in result.links}
    assert len(targets) == 135 and "http://example.com/t/new" not in targets
    assert len(result.links) == 5001, "repeats of a kept target are all kept"
    assert result.links_dropped == 1
    init_worker((), None, DEFAULT_MAX_LINKS)
    result = page(body_of(toc + "<a href='/t/new'>new</a>"))
    assert result.links[-1].to == "http://example.com/t/new", "the 5001st anchor, 136th target"


def test_stray_nul_and_control_bytes_are_still_html() -> None:
    body = body_of("<p>some words here</p><a href='/next'>next</a>").encode()
    result = page(body.replace(b"</body>", b"\x00\x01</body>"))  # near the end
    assert result.is_html and result.title == "t" and result.words == 4
    assert [link.to for link in result.links] == ["http://example.com/next"]


def test_meta_refresh_is_a_link() -> None:
    for content in ('"0; url=/next"', "\"5;URL='/next'\"", "'3, url = \"/next\"'", "0;/next"):
        result = page(f"<html><head><meta http-equiv='Refresh' content={content}>"
                      "</head><body><a href='/a'>a</a></body></html>")
        assert [link.to for link in result.links] == [
            "http://example.com/next", "http://example.com/a"], content
    for content in ("5", "", "soon"):  # a reload of the page, or no refresh at all
        result = page(f"<html><head><meta http-equiv=refresh content='{content}'></head></html>")
        assert result.links == [], content


def test_x_robots_tag_nofollow_or_none_marks_every_link() -> None:
    inner = body_of("<a href='/a'>a</a>")
    for value in ("nofollow", "noindex, NOFOLLOW", "none"):
        links = page(inner, headers={"x-robots-tag": value}).links
        assert [link.nofollow for link in links] == [True], value
    for value in ("noindex", "otherbot: nofollow"):
        links = page(inner, headers={"x-robots-tag": value}).links
        assert [link.nofollow for link in links] == [False], value


def test_a_canonical_that_is_not_http_is_recorded_as_written_absolute() -> None:
    for href, expected in (("file:///srv/docs/index.html", "file:///srv/docs/index.html"),
                           ("ftp://Example.com/a", "ftp://example.com/a")):
        result = page(f"<html><head><link rel=canonical href='{href}'></head></html>")
        assert result.canonical == expected
