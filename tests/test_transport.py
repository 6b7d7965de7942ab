"""The proxy choice per URL (curl's reading of the environment), and the masks of secrets."""

from __future__ import annotations

import pytest
from yarl import URL

from crawler.errors import ConfigError
from crawler.settings import load
from crawler.transport import Routes, Secrets, mask_header, mask_url, parse_auth, parse_proxy

VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
             "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def routes(proxy: str = "") -> Routes:
    return Routes(load(overrides={"proxy": proxy}))


def via(r: Routes, url: str) -> str | None:
    proxy = r.proxy_for(URL(url))
    return None if proxy is None else str(proxy)


def test_no_proxy_anywhere_means_direct() -> None:
    assert via(routes(), "https://example.com/") is None


def test_explicit_proxy_serves_both_schemes() -> None:
    r = routes("http://127.0.0.1:3128")
    assert via(r, "http://example.com/") == "http://127.0.0.1:3128"
    assert via(r, "https://example.com/") == "http://127.0.0.1:3128"


def test_scheme_variables_and_all_proxy_as_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:8080")
    monkeypatch.setenv("ALL_PROXY", "socks5h://10.0.0.2:1080")
    r = routes()
    assert via(r, "https://example.com/") == "http://10.0.0.1:8080"
    assert via(r, "http://example.com/") == "socks5h://10.0.0.2:1080"


def test_lower_case_wins_and_a_bare_host_port_is_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:1")
    monkeypatch.setenv("http_proxy", "10.0.0.9:3128")
    assert via(routes(), "http://example.com/") == "http://10.0.0.9:3128"


def test_http_proxy_is_ignored_under_cgi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:1")  # httpoxy: a request header
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    assert via(routes(), "http://example.com/") is None


@pytest.mark.parametrize("proxy", ["", "http://127.0.0.1:3128"])
def test_no_proxy_suffixes_and_star(monkeypatch: pytest.MonkeyPatch, proxy: str) -> None:
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "intranet.example, .corp.test,10.1.2.3")
    r = routes(proxy)
    assert via(r, "https://intranet.example/") is None
    assert via(r, "https://www.intranet.example/") is None
    assert via(r, "https://a.corp.test/") is None
    assert via(r, "https://10.1.2.3/") is None
    assert via(r, "https://notintranet.example/") == "http://127.0.0.1:3128"
    monkeypatch.setenv("no_proxy", "*")
    assert via(routes(proxy), "https://example.com/") is None


def test_bad_environment_proxy_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "gopher://u:env-pw@h:70")
    with pytest.raises(ConfigError, match="ALL_PROXY") as caught:
        routes()
    assert "env-pw" not in str(caught.value)


@pytest.mark.parametrize("value", ["http://h", "ftp://h:21", "http://h:1/path", "http://:1",
                                   "http://h:notaport"])
def test_bad_proxy_urls(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^proxy: "):
        parse_proxy(value, "proxy")


def test_masks() -> None:
    assert mask_url("proxy http://bob:pw@h:1 refused") == "proxy http://bob:***@h:1 refused"
    assert mask_url("http://h:1/a:b@c") == "http://h:1/a:b@c"
    assert mask_header("Authorization", "Basic YWxpY2U6cHc=") == "Basic ***"
    assert mask_header("proxy-authorization", "Basic YWxpY2U6cHc=") == "Basic ***"
    assert mask_header("Accept", "text/html") == "text/html"
    assert Secrets(["hunter22"]).mask("said hunter22 twice: hunter22") == "said *** twice: ***"


def test_auth_table_becomes_one_header_per_host() -> None:
    assert parse_auth({"Intranet.Example.": "alice:pw:with:colons"}) == {
        "intranet.example": "Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM="}
