"""URL normalization, registrable domains, address classes and the link policy."""

from __future__ import annotations

import pickle
import random
import socket
from pathlib import Path
from typing import Any

import pytest

from crawler import urls
from crawler.urls import (
    LinkPolicy,
    address_class,
    host_of,
    ip_literal,
    normalize,
    registrable_domain,
    validate_pattern,
)

BASE = "http://example.com/dir/page.html?x=1#top"

# (case, href, base, expected)
NORMALIZE_CASES: list[tuple[str, str, str | None, str | None]] = [
    ("scheme_and_host_lower_cased", "HTTP://Example.COM/Path", None, "http://example.com/Path"),
    ("empty_path_becomes_slash", "http://example.com", None, "http://example.com/"),
    ("http_default_port_dropped", "http://example.com:80/a", None, "http://example.com/a"),
    ("https_default_port_dropped", "https://example.com:443/", None, "https://example.com/"),
    ("other_port_kept", "http://example.com:8080/", None, "http://example.com:8080/"),
    ("port_443_on_http_kept", "http://example.com:443/", None, "http://example.com:443/"),
    ("port_leading_zeros", "http://example.com:0080/", None, "http://example.com/"),
    ("empty_port_is_default", "http://example.com:/a", None, "http://example.com/a"),
    ("bad_port_out_of_range", "http://a:99999/", None, None),
    ("bad_port_zero", "http://a:0/", None, None),
    ("bad_port_not_digits", "http://a:8o/", None, None),
    ("dot_segments", "http://a.com/a/./b/../c", None, "http://a.com/a/c"),
    ("dot_dot_beyond_root", "http://a.com/../../x", None, "http://a.com/x"),
    ("trailing_dot_dot", "http://a.com/a/b/..", None, "http://a.com/a/"),
    ("trailing_dot", "http://a.com/a/.", None, "http://a.com/a/"),
    ("escaped_dot_segments", "http://a.com/a/%2e%2E/b", None, "http://a.com/b"),
    ("empty_segments_kept", "http://a.com/a//b", None, "http://a.com/a//b"),
    ("escape_hex_upper_cased", "http://a.com/%c3%a9?q=%2f", None, "http://a.com/%C3%A9?q=%2F"),
    (
        "unreserved_escapes_decoded",
        "http://a.com/%7Euser/%41%2D%5F",
        None,
        "http://a.com/~user/A-_",
    ),
    (
        "reserved_escapes_kept",
        "http://a.com/a%2Fb%3F?x=%26%3d",
        None,
        "http://a.com/a%2Fb%3F?x=%26%3D",
    ),
    ("space_encoded", "http://a.com/a b?q=c d", None, "http://a.com/a%20b?q=c%20d"),
    ("non_ascii_utf8_encoded", "http://a.com/café?q=ü", None, "http://a.com/caf%C3%A9?q=%C3%BC"),
    # WHATWG: a backslash is a slash in an http(s) URL
    ("unsafe_characters_encoded", 'http://a.com/<"\\>', None, "http://a.com/%3C%22/%3E"),
    ("lone_percent_encoded", "http://a.com/100%?p=5%z", None, "http://a.com/100%25?p=5%25z"),
    ("sub_delims_kept", "http://a.com/a:b@c!$'()*+,;=", None, "http://a.com/a:b@c!$'()*+,;="),
    ("question_mark_in_query_kept", "http://a.com/?a=?b", None, "http://a.com/?a=?b"),
    ("fragment_dropped", "http://a.com/p#frag", None, "http://a.com/p"),
    ("query_order_kept", "http://a.com/?b=2&a=1&b=1", None, "http://a.com/?b=2&a=1&b=1"),
    ("query_plus_kept", "http://a.com/?q=a+b", None, "http://a.com/?q=a+b"),
    ("bare_question_mark_dropped", "http://a.com/p?", None, "http://a.com/p"),
    ("session_id_in_query", "http://a.com/?a=1&jsessionid=X&b=2", None, "http://a.com/?a=1&b=2"),
    (
        "session_ids_any_case",
        "http://a.com/?PHPSESSID=1&Sid=2&SessionId=3&k=v",
        None,
        "http://a.com/?k=v",
    ),
    ("query_of_only_session_ids_dropped", "http://a.com/p?sid=1", None, "http://a.com/p"),
    (
        "similar_names_are_not_session_ids",
        "http://a.com/?side=1&sids=2",
        None,
        "http://a.com/?side=1&sids=2",
    ),
    ("escaped_session_name", "http://a.com/?%73id=1&a=1", None, "http://a.com/?a=1"),
    (
        "session_path_parameter",
        "http://a.com/shop;jsessionid=AB12?x=1",
        None,
        "http://a.com/shop?x=1",
    ),
    (
        "session_path_parameter_any_case",
        "http://a.com/a;JSESSIONID=1/b;x=1;PhpSessId=2",
        None,
        "http://a.com/a/b;x=1",
    ),
    ("other_path_parameters_kept", "http://a.com/a;v=2", None, "http://a.com/a;v=2"),
    ("idn_host_to_punycode", "http://Bücher.DE/", None, "http://xn--bcher-kva.de/"),
    ("idn_with_ideographic_dot", "http://例え.テスト。/", None, "http://xn--r8jz45g.xn--zckzah/"),
    ("host_trailing_dot_removed", "http://example.com./", None, "http://example.com/"),
    ("empty_host_label", "http://a..com/", None, None),
    ("percent_encoded_host_decoded", "http://%65xample.com/", None, "http://example.com/"),
    (
        "ipv6_literal_with_port",
        "http://[2001:DB8::0:1]:8080/x",
        None,
        "http://[2001:db8::1]:8080/x",
    ),
    ("ipv6_literal_default_port", "https://[::1]:443", None, "https://[::1]/"),
    ("ipv6_zone_rejected", "http://[fe80::1%25eth0]/", None, None),
    ("ipv6_unclosed", "http://[::1/", None, None),
    ("ipv4_decimal_integer", "http://2130706433/", None, "http://127.0.0.1/"),
    ("ipv4_hex_and_short", "http://0x7f.1/", None, "http://127.0.0.1/"),
    ("ipv4_octal", "http://0177.0.0.01/", None, "http://127.0.0.1/"),
    ("ipv4_out_of_range", "http://256.0.0.1/", None, None),
    ("host_ending_in_number_not_ipv4", "http://example.123/", None, None),
    ("userinfo_dropped", "http://user:pa@ss@Example.com/", None, "http://example.com/"),
    ("surrounding_whitespace", " \t\n http://a.com/x \r\n", None, "http://a.com/x"),
    ("newlines_and_tabs_inside", "http://a.c\nom/p\tat\rh", None, "http://a.com/path"),
    ("relative_path", "other.html", BASE, "http://example.com/dir/other.html"),
    ("relative_parent", "../up?y=2", BASE, "http://example.com/up?y=2"),
    ("relative_query_only", "?q", BASE, "http://example.com/dir/page.html?q"),
    ("relative_network_path", "//Other.org/x", "https://example.com/", "https://other.org/x"),
    ("relative_fragment_only", "#frag", BASE, "http://example.com/dir/page.html?x=1"),
    ("relative_empty", "", BASE, "http://example.com/dir/page.html?x=1"),
    ("relative_whitespace_href", "  next\n.html ", BASE, "http://example.com/dir/next.html"),
    ("absolute_ignores_base", "https://b.org", BASE, "https://b.org/"),
    ("mailto_rejected", "mailto:a@example.com", BASE, None),
    ("javascript_rejected", "javascript:alert(1)", BASE, None),
    ("ftp_rejected", "ftp://example.com/file", None, None),
    ("data_rejected", "data:text/html,hi", BASE, None),
    ("relative_without_base", "/just/a/path", None, None),
    ("no_host", "http://", None, None),
    ("extra_slashes_before_host", "http:///path", None, "http://path/"),  # WHATWG
    ("garbage", "::::", None, None),
    ("garbage_host", "http://exa mple.com/", None, None),
    ("label_too_long", "http://" + "a" * 64 + ".com/", None, None),
]


@pytest.mark.parametrize(
    ("href", "base", "expected"),
    [c[1:] for c in NORMALIZE_CASES],
    ids=[c[0] for c in NORMALIZE_CASES],
)
def test_normalize_table(href: str, base: str | None, expected: str | None) -> None:
    assert normalize(href, base) == expected


def test_normalize_table_is_large_enough() -> None:
    assert len(NORMALIZE_CASES) >= 40


def test_normalize_is_idempotent_on_table_outputs() -> None:
    for _, href, base, _ in NORMALIZE_CASES:
        once = normalize(href, base)
        if once is not None:
            assert normalize(once) == once, href


def _random_strings(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcXYZ019 .:/?#[]@!$&'()*+,;=%-_~<>\"\\{}|^`\t\n\r\x00\x7féü例\u3002\ud800"
    pieces = [
        "http://",
        "https://",
        "HTTP://",
        "//",
        "../",
        "./",
        "%2e",
        "%2F",
        "%zz",
        "%c3%a9",
        ";jsessionid=1",
        "?sid=2&",
        "#",
        "[::1]",
        ":80",
        ":99999",
        "xn--",
        "0x7f.",
        "@",
    ]
    out = []
    for _ in range(count):
        parts = [
            rng.choice(pieces) if rng.random() < 0.3 else rng.choice(alphabet)
            for _ in range(rng.randint(0, 30))
        ]
        out.append("".join(parts))
    return out


def test_normalize_is_idempotent_on_random_strings() -> None:
    checked = 0
    for text in _random_strings(seed=1, count=3000):
        for candidate in (text, "http://a.com/" + text, "http://" + text):
            once = normalize(candidate)
            if once is not None:
                checked += 1
                assert normalize(once) == once, candidate
    assert checked > 300


def test_normalize_never_raises_on_random_strings() -> None:
    strings = _random_strings(seed=2, count=2000)
    rng = random.Random(3)
    strings += [
        "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 20)))
        for _ in range(500)
    ]
    for text in strings:
        result = normalize(text, BASE)
        assert result is None or result.startswith(("http://", "https://"))
        normalize(BASE, text)
        normalize(text, text)


def test_long_url_is_not_rejected_by_normalize() -> None:
    url = "http://a.com/" + "x" * 5000
    assert normalize(url) == url


def test_host_of_drops_port_and_brackets() -> None:
    assert host_of("http://example.com:8080/x") == "example.com"
    assert host_of("http://[::1]:8080/") == "::1"
    assert host_of("https://example.com/") == "example.com"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("a.b.example.co.uk", "example.co.uk"),
        ("www.example.com", "example.com"),
        ("example.com", "example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("localhost", "localhost"),
        ("alice.github.io", "alice.github.io"),
        ("co.uk", "co.uk"),
        ("a.b.intranet.internal", "intranet.internal"),
        ("www.xn--bcher-kva.de", "xn--bcher-kva.de"),
    ],
)
def test_registrable_domain(host: str, expected: str) -> None:
    assert registrable_domain(host) == expected


def test_registrable_domain_uses_no_network_and_no_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    urls._extractor.cache_clear()
    registrable_domain.cache_clear()
    try:
        assert registrable_domain("shop.example.co.uk") == "example.co.uk"
    finally:
        urls._extractor.cache_clear()
        registrable_domain.cache_clear()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("8.8.8.8", "public"),
        ("2606:4700::1111", "public"),
        ("127.0.0.1", "loopback"),
        ("127.5.5.5", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("172.32.0.1", "public"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("169.254.169.254", "link_local"),
        ("fe80::1", "link_local"),
        ("fd00::1", "unique_local"),
        ("fc00::1", "unique_local"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link_local"),
        ("0.0.0.0", "reserved"),
        ("0.1.2.3", "reserved"),
        ("::", "reserved"),
        ("224.0.0.1", "reserved"),
        ("ff02::1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),
    ],
)
def test_address_class(ip: str, expected: str) -> None:
    assert address_class(ip) == expected


@pytest.mark.parametrize("text", ["example.com", "", "[::1]", "256.1.1.1", "2130706433"])
def test_address_class_rejects_non_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        address_class(text)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("example.com", None),
        ("localhost", None),
        ("[example.com]", None),
        ("", None),
    ],
)
def test_ip_literal(host: str, expected: str | None) -> None:
    assert ip_literal(host) == expected


def _policy(**overrides: Any) -> LinkPolicy:
    fields: dict[str, Any] = {
        "scope": "domain",
        "seed_hosts": frozenset({"www.example.com"}),
        "seed_domains": frozenset({"example.com"}),
        "allow": (),
        "deny": (),
    }
    fields.update(overrides)
    return LinkPolicy(**fields)


def test_policy_admits_a_link_in_scope() -> None:
    assert _policy().refusal("http://shop.example.com/a") is None


def test_policy_refuses_long_urls() -> None:
    url = "http://www.example.com/" + "x" * 20
    policy = _policy(max_url_length=len(url))
    assert policy.refusal(url) is None
    assert policy.refusal(url + "x") == "length"


def test_policy_refuses_other_domains_in_domain_scope() -> None:
    assert _policy().refusal("http://example.org/") == "scope"


def test_policy_host_scope_refuses_sibling_hosts_but_ignores_port() -> None:
    policy = _policy(scope="host")
    assert policy.refusal("http://shop.example.com/") == "scope"
    assert policy.refusal("https://www.example.com:8443/") is None


def test_policy_any_scope_admits_other_hosts() -> None:
    assert _policy(scope="any").refusal("http://example.org/") is None


def test_policy_refuses_private_ip_literals() -> None:
    policy = _policy(scope="any")
    assert policy.refusal("http://169.254.169.254/latest/meta-data/") == "private"
    assert policy.refusal("http://[::1]:8080/") == "private"
    assert policy.refusal("http://[::ffff:a00:1]/") == "private"
    assert policy.refusal("http://93.184.216.34/") is None


def test_policy_admits_private_classes_it_allows() -> None:
    policy = _policy(scope="any", private_allowed=frozenset({"loopback"}))
    assert policy.refusal("http://127.0.0.1:8000/") is None
    assert policy.refusal("http://10.0.0.1/") == "private"


def test_policy_refuses_links_no_allow_pattern_matches() -> None:
    policy = _policy(allow=(r"/docs/", r"\.html$"))
    assert policy.refusal("http://www.example.com/docs/x") is None
    assert policy.refusal("http://www.example.com/a.html") is None
    assert policy.refusal("http://www.example.com/blog/") == "allow"


def test_policy_refuses_links_a_deny_pattern_matches() -> None:
    policy = _policy(allow=(r"/docs/",), deny=(r"\?print=",))
    assert policy.refusal("http://www.example.com/docs/a?print=1") == "deny"
    assert policy.refusal("http://www.example.com/docs/a") is None


def test_policy_checks_in_order_length_scope_private_allow_deny() -> None:
    policy = _policy(scope="host", allow=("nomatch",), deny=(".",), max_url_length=40)
    assert policy.refusal("http://10.0.0.1/" + "x" * 40) == "length"
    assert policy.refusal("http://10.0.0.1/") == "scope"
    policy = _policy(scope="any", allow=("nomatch",), deny=(".",))
    assert policy.refusal("http://10.0.0.1/") == "private"
    assert policy.refusal("http://www.example.com/") == "allow"
    assert _policy(deny=(".",)).refusal("http://www.example.com/") == "deny"


def test_policy_address_allowed() -> None:
    policy = _policy(private_allowed=frozenset({"private"}))
    assert policy.address_allowed("93.184.216.34")
    assert policy.address_allowed("192.168.0.10")
    assert not policy.address_allowed("127.0.0.1")
    assert not policy.address_allowed("169.254.169.254")
    assert not policy.address_allowed("not an address")


def test_policy_pickles() -> None:
    policy = _policy(allow=("a",), deny=("b",), private_allowed=frozenset({"loopback"}))
    clone = pickle.loads(pickle.dumps(policy))
    assert clone == policy
    assert clone.refusal("http://www.example.com/a") is None


def test_policy_is_frozen() -> None:
    policy = _policy()
    with pytest.raises(AttributeError):
        policy.scope = "any"  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [{"scope": "site"}, {"deny": ("(",)}, {"private_allowed": frozenset({"intranet"})}],
)
def test_policy_rejects_bad_fields(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _policy(**overrides)


def test_validate_pattern() -> None:
    assert validate_pattern(r"^https?://[^/]+/docs/") is None
    error = validate_pattern("(unclosed")
    assert error is not None and "(unclosed" in error
    assert validate_pattern("a{99999999999}") is not None


def test_for_seeds_builds_hosts_and_domains() -> None:
    policy = LinkPolicy.for_seeds(
        ["https://WWW.Example.co.uk/start", "http://blog.example.org:8080/"],
        scope="domain",
        private_networks="deny",
        allow=["/"],
        deny=iter(["x"]),
        max_url_length=100,
    )
    assert policy.seed_hosts == {"www.example.co.uk", "blog.example.org"}
    assert policy.seed_domains == {"example.co.uk", "example.org"}
    assert policy.allow == ("/",) and policy.deny == ("x",)
    assert policy.max_url_length == 100
    assert policy.private_allowed == frozenset()


def test_for_seeds_private_networks_allow_opens_every_class() -> None:
    policy = LinkPolicy.for_seeds(["https://example.com/"], scope="any", private_networks="allow")
    assert policy.private_allowed == {
        "loopback",
        "private",
        "link_local",
        "unique_local",
        "reserved",
    }
    assert policy.refusal("http://169.254.169.254/") is None


def test_for_seeds_private_networks_deny_opens_nothing_even_for_private_seeds() -> None:
    policy = LinkPolicy.for_seeds(
        ["http://127.0.0.1:8000/", "http://localhost/"], scope="any", private_networks="deny"
    )
    assert policy.private_allowed == frozenset()
    assert policy.refusal("http://127.0.0.1:8000/") == "private"


def test_for_seeds_private_networks_seeds_opens_the_seeds_classes() -> None:
    policy = LinkPolicy.for_seeds(
        [
            "http://10.0.0.5/",
            "http://localhost:8000/",
            "https://intranet.corp/",
            "https://example.com/",
        ],
        scope="any",
        private_networks="seeds",
        resolved={"intranet.corp": ["fd00::7", "[fe80::1]"], "example.com": ["93.184.216.34"]},
    )
    assert policy.private_allowed == {"private", "loopback", "unique_local", "link_local"}
    assert policy.refusal("http://169.254.169.254/") is None
    assert policy.refusal("http://224.0.0.1/") == "private"


def test_for_seeds_private_networks_seeds_with_public_seeds_opens_nothing() -> None:
    policy = LinkPolicy.for_seeds(
        ["https://example.com/"],
        scope="domain",
        private_networks="seeds",
        resolved={"example.com": ["93.184.216.34"]},
    )
    assert policy.private_allowed == frozenset()
    assert policy.refusal("http://127.0.0.1/") == "scope"


def test_for_seeds_rejects_bad_seeds_and_modes() -> None:
    with pytest.raises(ValueError, match="ftp://x"):
        LinkPolicy.for_seeds(["ftp://x/"], scope="any", private_networks="deny")
    with pytest.raises(ValueError, match="private_networks"):
        LinkPolicy.for_seeds(["http://x/"], scope="any", private_networks="sometimes")


def test_exported_names_are_sorted() -> None:
    assert urls.__all__ == sorted(urls.__all__)
