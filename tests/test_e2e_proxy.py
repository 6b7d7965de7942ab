"""End to end through real proxies on loopback: tinyproxy (HTTP and CONNECT) and pproxy (SOCKS5),
each checked from its own log; NO_PROXY; a dead or refusing proxy; no password in any output."""

from __future__ import annotations

import base64
import gzip
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import (
    assert_no_traceback,
    config_file,
    crawl_env,
    fast,
    free_port,
    load_checked_run,
    read_jsonl,
    run_crawl,
    seeds_file,
)
from tests.proxies import Origin, origin_app, socks5, tinyproxy

PAGES = ["/p/0", "/p/1", "/p/2"]
FILES = ["/robots.txt", "/sitemap.xml"]  # the crawler's own reading, through the proxy too
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                   "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


async def serve(aiohttp_server: Any, ssl_context: ssl.SSLContext | None = None) -> tuple[
        Origin, str]:
    origin = Origin()
    server = await aiohttp_server(origin_app(origin), ssl=ssl_context)
    scheme = "https" if ssl_context else "http"
    return origin, f"{scheme}://127.0.0.1:{server.port}"


def env(**proxies: str) -> dict[str, str]:
    """The crawl's environment with only these proxy variables (an empty one would count)."""
    variables = crawl_env()
    for name in PROXY_VARIABLES:
        variables.pop(name, None)
    return {**variables, **proxies}


def all_output(out: Path, stderr: str) -> str:
    """Every byte the crawl wrote (WARC files unzipped) and its log."""
    texts = [stderr]
    for path in out.rglob("*"):
        if path.is_file():
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else (
                path.read_bytes())
            texts.append(data.decode("utf-8", errors="replace"))
    return "\n".join(texts)


def through_proxy(lines: list[str], base: str) -> list[str]:
    return sorted(line.split()[1].removeprefix(base) for line in lines
                  if line.startswith("GET "))


async def test_proxy_option_carries_every_request_robots_txt_too(
        aiohttp_server: Any, tmp_path: Path) -> None:
    origin, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    with tinyproxy(tmp_path) as proxy:
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out),
                                 "--proxy", proxy.url, env=env())
        asked = proxy.requests()
    assert result.returncode == 0, str(result)
    assert through_proxy(asked, base) == sorted([*FILES, *PAGES])
    assert sorted(origin.paths()) == sorted([*FILES, *PAGES])
    run = load_checked_run(out)
    assert sorted(p["url"] for p in run.pages) == [base + p for p in PAGES]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_http_proxy_variable_is_honoured_in_either_case(
        aiohttp_server: Any, tmp_path: Path, variable: str) -> None:
    origin, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    with tinyproxy(tmp_path) as proxy:
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out),
                                 env=env(**{variable: proxy.url}))
        asked = proxy.requests()
    assert result.returncode == 0, str(result)
    assert through_proxy(asked, base) == sorted([*FILES, *PAGES])
    assert sorted(origin.paths()) == sorted([*FILES, *PAGES])
    assert len(load_checked_run(out).pages) == len(PAGES)


async def test_https_proxy_variable_tunnels_https_through_connect(
        aiohttp_server: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    origin, base = await serve(aiohttp_server, server_context)
    out = tmp_path / "out"
    config = config_file(tmp_path, f'ca_file = "{tmp_path / "ca.pem"}"\n')
    with tinyproxy(tmp_path) as proxy:
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out),
                                 "--config", config, env=env(HTTPS_PROXY=proxy.url))
        tunnels = [line for line in proxy.requests() if line.startswith("CONNECT ")]
    assert result.returncode == 0, str(result)
    assert sorted(origin.paths()) == sorted([*FILES, *PAGES])
    # every connection the origin saw is one the proxy opened for a CONNECT
    assert tunnels and all(line.split()[1] == base.removeprefix("https://") for line in tunnels)
    assert len(origin.connections()) == len(tunnels), (origin.seen, tunnels)
    assert len(load_checked_run(out).pages) == len(PAGES)


@pytest.mark.parametrize("how", ["option", "environment"])
async def test_no_proxy_sends_nothing_through_the_proxy(
        aiohttp_server: Any, tmp_path: Path, how: str) -> None:
    origin, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    with tinyproxy(tmp_path) as proxy:
        options = ["--proxy", proxy.url] if how == "option" else []
        variables = {"NO_PROXY": "example.org, 127.0.0.1"}
        if how == "environment":
            variables["http_proxy"] = proxy.url
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out), *options,
                                 env=env(**variables))
        asked = proxy.requests()
    assert result.returncode == 0, str(result)
    assert asked == []
    assert sorted(origin.paths()) == sorted([*FILES, *PAGES])


async def test_socks5_proxy_carries_every_connection(aiohttp_server: Any,
                                                     tmp_path: Path) -> None:
    origin, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    with socks5(tmp_path) as proxy:
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out),
                                 "--proxy", proxy.url, env=env())
        tunnels = proxy.tunnels()
    assert result.returncode == 0, str(result)
    assert sorted(origin.paths()) == sorted([*FILES, *PAGES])
    target = base.removeprefix("http://")
    assert tunnels and all(line.endswith(f"-> {target}") for line in tunnels), tunnels
    assert len(origin.connections()) == len(tunnels)


async def test_unreachable_proxy_is_a_connection_error_naming_it_and_exit_4(
        aiohttp_server: Any, tmp_path: Path) -> None:
    _, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    port = free_port()  # nobody listens there
    result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out),
                             "--proxy", f"http://carol:dead-proxy-pw@127.0.0.1:{port}",
                             "--warc", env=env())
    assert result.returncode == 4, str(result)
    assert_no_traceback(result)
    errors = read_jsonl(next(out.rglob("errors.jsonl")))
    assert [e["url"] for e in errors] == [base + "/p/0"]
    assert errors[0]["kind"] == "connection"
    assert f"proxy http://carol:***@127.0.0.1:{port}" in errors[0]["message"]
    assert "dead-proxy-pw" not in all_output(out, result.stderr)


async def test_proxy_credentials_are_used_and_never_written(aiohttp_server: Any,
                                                            tmp_path: Path) -> None:
    _, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    token = base64.b64encode(b"bob:pr0xy-pw").decode()
    with tinyproxy(tmp_path, basic_auth=("bob", "pr0xy-pw")) as proxy:
        url = proxy.url.replace("http://", "http://bob:pr0xy-pw@")
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out), "--proxy", url,
                                 "--warc", "-v", env=env())
        asked = proxy.requests()
    assert result.returncode == 0, str(result)
    assert through_proxy(asked, base) == sorted([*FILES, *PAGES])
    written = all_output(out, result.stderr)
    assert "pr0xy-pw" not in written and token not in written
    assert "Proxy-Authorization: Basic ***" in written  # the WARC request records


async def test_proxy_asking_for_credentials_is_a_connection_error_and_exit_4(
        aiohttp_server: Any, tmp_path: Path) -> None:
    """407 from the proxy (tinyproxy answers wrong credentials with a 401 of its own, which
    cannot be told from the site's: see README)."""
    _, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    with tinyproxy(tmp_path, basic_auth=("bob", "right-pw")) as proxy:
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out),
                                 "--proxy", proxy.url, env=env())
    assert result.returncode == 4, str(result)
    assert_no_traceback(result)
    errors = read_jsonl(next(out.rglob("errors.jsonl")))
    assert [e["kind"] for e in errors] == ["connection"]
    assert f"proxy {proxy.url} refused the request: 407" in errors[0]["message"]


@pytest.mark.parametrize("value", ["ftp://u:bad-url-pw@127.0.0.1:21", "http://u:bad-url-pw@host",
                                   "http://u:bad-url-pw@127.0.0.1:99999"])
async def test_bad_proxy_url_exits_2_naming_the_key(tmp_path: Path, value: str) -> None:
    result = await run_crawl(seeds_file(tmp_path, "http://127.0.0.1:9/"), *fast(tmp_path / "o"),
                             "--proxy", value, env=env())
    assert result.returncode == 2, str(result)
    assert_no_traceback(result)
    assert "proxy:" in result.stderr
    assert "bad-url-pw" not in result.stderr


async def test_bad_proxy_variable_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = await run_crawl(seeds_file(tmp_path, "http://127.0.0.1:9/"), *fast(tmp_path / "o"),
                             env=env(HTTPS_PROXY="gopher://127.0.0.1:70"))
    assert result.returncode == 2, str(result)
    assert "HTTPS_PROXY" in result.stderr


async def test_private_network_guard_checks_the_target_before_the_proxy(
        aiohttp_server: Any, tmp_path: Path) -> None:
    """The proxy is on loopback and is used; the target is on loopback and refused."""
    origin, base = await serve(aiohttp_server)
    out = tmp_path / "out"
    config = config_file(tmp_path, 'private_networks = "deny"\n')
    with tinyproxy(tmp_path) as proxy:
        result = await run_crawl(seeds_file(tmp_path, base + "/p/0"), *fast(out),
                                 "--proxy", proxy.url, "--config", config, env=env())
        asked = proxy.requests()
    assert_no_traceback(result)
    assert asked == [] and origin.seen == []
    assert "private_networks" in all_output(out, result.stderr)
