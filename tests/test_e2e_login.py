"""End to end: cookies (RFC 6265 domain and path), Basic auth per host across redirects, HTTPS with
certificates made by the test, extra headers; no secret in any output file, log or WARC."""

from __future__ import annotations

import base64
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.conftest import (
    ROOT,
    assert_no_traceback,
    config_file,
    fast,
    load_checked_run,
    read_jsonl,
    run_crawl,
    seeds_file,
)
from tests.proxies import Origin, Seen, origin_app
from tests.test_e2e_proxy import all_output, env

HOSTNAMES = (sys.executable, "-m", "tests.hostnames")  # *.test -> 127.0.0.1
PASSWORD = "s3cret-pw"
TOKEN = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


def html(*links: str) -> web.Response:
    body = "".join(f'<a href="{link}">x</a>' for link in links)
    return web.Response(text=f"<html><title>t</title><body>{body}</body></html>",
                        content_type="text/html")


def recording_app(origin: Origin, handler: Any) -> web.Application:
    """Every request is recorded (host, path, headers), then answered by `handler`."""

    async def any_path(request: web.Request) -> web.StreamResponse:
        origin.seen.append(Seen(request.host.split(":")[0], request.path, dict(request.headers),
                                0))
        if request.path == "/robots.txt":
            return web.Response(text="User-agent: *\nDisallow:\n")
        answer: web.StreamResponse = await handler(request)
        return answer

    app = web.Application()
    app.router.add_get("/{tail:.*}", any_path)
    return app


def seen_at(origin: Origin, host: str) -> list[Seen]:
    return [s for s in origin.seen if s.host == host]


# --- cookies ----------------------------------------------------------------------------------


async def cookie_site(request: web.Request) -> web.StreamResponse:
    port = request.url.port
    if request.host.startswith("a.test") and request.path == "/gate":
        if request.cookies.get("session") != "ok":  # log in: set the cookie, come back
            answer = web.HTTPFound("/gate")
            answer.set_cookie("session", "ok", path="/")  # host-only
            answer.set_cookie("wide", "1", domain="a.test", path="/")
            answer.set_cookie("deep", "1", path="/members")
            raise answer
        return html(f"http://b.test:{port}/other", f"http://www.a.test:{port}/sub",
                    "/members/list")
    return html()


@pytest.mark.parametrize("cookies", [True, False])
async def test_cookie_gated_redirect_loops_only_without_cookies(
        aiohttp_server: Any, tmp_path: Path, cookies: bool) -> None:
    origin = Origin()
    server = await aiohttp_server(recording_app(origin, cookie_site))
    out = tmp_path / "out"
    seed = f"http://a.test:{server.port}/gate"
    result = await run_crawl(seeds_file(tmp_path, seed), *fast(out), "--scope", "any",
                             "--cookies" if cookies else "--no-cookies", command=HOSTNAMES)
    assert_no_traceback(result)
    run = load_checked_run(out)
    if not cookies:
        assert result.returncode == 0, str(result)
        assert [(e["url"], e["kind"]) for e in run.errors] == [(seed, "redirects")]
        assert not any("cookie" in s.headers for s in origin.seen)
        return
    assert result.returncode == 0, str(result)
    assert {p["url"]: p["status"] for p in run.pages}[seed] == 200
    jar = {(s.host, s.path): s.headers.get("Cookie", "") for s in origin.seen}
    assert "session=ok" in jar[("a.test", "/members/list")]
    assert "deep=1" in jar[("a.test", "/members/list")]  # its path
    assert "deep=1" not in jar[("a.test", "/gate")]  # not above its path
    # a Domain cookie goes to the subdomain, a host-only one does not; another host gets none
    assert "wide=1" in jar[("www.a.test", "/sub")]
    assert "session" not in jar[("www.a.test", "/sub")]
    assert [s for s in seen_at(origin, "b.test") if "Cookie" in s.headers] == []
    assert seen_at(origin, "b.test"), "b.test was never fetched"


# --- Basic auth per host ------------------------------------------------------------------------


async def auth_site(request: web.Request) -> web.StreamResponse:
    port = request.url.port
    if request.host.startswith("intranet.test"):
        if request.headers.get("Authorization") != f"Basic {TOKEN}":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        if request.path == "/away":
            raise web.HTTPFound(f"http://public.test:{port}/landing")
        if request.path == "/moved":
            raise web.HTTPFound("/inside")
        return html("/away", "/moved")
    return html()


async def test_basic_auth_goes_to_its_host_only_across_redirects_and_is_never_written(
        aiohttp_server: Any, tmp_path: Path) -> None:
    origin = Origin()
    server = await aiohttp_server(recording_app(origin, auth_site))
    out = tmp_path / "out"
    config = config_file(tmp_path, f'auth = {{ "intranet.test" = "alice:{PASSWORD}" }}\n'
                                   'headers = { "Accept-Language" = "de" }\n')
    seed = f"http://intranet.test:{server.port}/"
    result = await run_crawl(seeds_file(tmp_path, seed), *fast(out), "--scope", "any",
                             "--config", config, "--warc", "-v", command=HOSTNAMES)
    assert result.returncode == 0, str(result)
    run = load_checked_run(out)
    statuses = {p["url"]: (p["status"], p["final_url"]) for p in run.pages}
    base = f"http://intranet.test:{server.port}"
    assert statuses[seed][0] == 200
    assert statuses[base + "/moved"] == (200, base + "/inside")  # same host: still sent
    assert statuses[base + "/away"] == (200, f"http://public.test:{server.port}/landing")
    inside = seen_at(origin, "intranet.test")
    assert inside and all(s.headers.get("Authorization") == f"Basic {TOKEN}" for s in inside)
    outside = seen_at(origin, "public.test")
    assert outside and all("Authorization" not in s.headers for s in outside)
    assert all(s.headers.get("Accept-Language") == "de" for s in origin.seen)
    written = all_output(out, result.stderr)
    assert PASSWORD not in written and TOKEN not in written
    assert "Authorization: Basic ***" in written  # the WARC request records, masked


@pytest.mark.parametrize(("table", "named"), [
    (f'{{ "http://intranet.test/" = "alice:{PASSWORD}" }}', "auth: key"),
    (f'{{ "intranet.test" = "{PASSWORD}" }}', "auth: the value for 'intranet.test'"),
    ('{ "intranet.test" = 7 }', "auth (in"),
])
async def test_bad_auth_table_exits_2_naming_the_key_not_the_password(
        tmp_path: Path, table: str, named: str) -> None:
    config = config_file(tmp_path, f"auth = {table}\n")
    result = await run_crawl(seeds_file(tmp_path, "http://127.0.0.1:9/"), *fast(tmp_path / "o"),
                             "--config", config)
    assert result.returncode == 2, str(result)
    assert_no_traceback(result)
    assert named in result.stderr
    assert PASSWORD not in result.stderr


async def test_user_agent_in_headers_exits_2_pointing_to_user_agent(tmp_path: Path) -> None:
    config = config_file(tmp_path, 'headers = { "User-Agent" = "me" }\n')
    result = await run_crawl(seeds_file(tmp_path, "http://127.0.0.1:9/"), *fast(tmp_path / "o"),
                             "--config", config)
    assert result.returncode == 2, str(result)
    assert "user_agent" in result.stderr


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A CA made for the test and a server context with its certificate for 127.0.0.1."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "test-ca.pem"))
    return context, tmp_path / "test-ca.pem"


def relative_to_root(path: Path) -> str:
    return os.path.relpath(path, ROOT)


async def https_crawl(aiohttp_server: Any, tmp_path: Path, context: ssl.SSLContext,
                      settings: str) -> tuple[int, Path, Origin, str]:
    origin = Origin()
    server = await aiohttp_server(origin_app(origin), ssl=context)
    out = tmp_path / "out"
    seed = f"https://127.0.0.1:{server.port}/p/0"
    result = await run_crawl(seeds_file(tmp_path, seed), *fast(out),
                             "--config", config_file(tmp_path, settings), env=env())
    assert_no_traceback(result)
    return result.returncode, out, origin, seed


async def test_unknown_certificate_is_a_tls_error_record(
        aiohttp_server: Any, tmp_path: Path, certificates: tuple[ssl.SSLContext, Path]) -> None:
    code, out, origin, seed = await https_crawl(aiohttp_server, tmp_path, certificates[0], "")
    assert code == 4
    errors = read_jsonl(next(out.rglob("errors.jsonl")))
    assert [(e["url"], e["kind"]) for e in errors] == [(seed, "tls")]
    assert "certificate" in errors[0]["message"].lower()
    assert origin.seen == []


async def test_ca_file_relative_to_the_current_directory_is_trusted(
        aiohttp_server: Any, tmp_path: Path, certificates: tuple[ssl.SSLContext, Path]) -> None:
    relative = relative_to_root(certificates[1])  # the crawl runs in the repository
    code, out, origin, _ = await https_crawl(aiohttp_server, tmp_path, certificates[0],
                                             f'ca_file = "{relative}"\n')
    assert code == 0
    assert sorted(origin.paths()) == ["/p/0", "/p/1", "/p/2", "/robots.txt", "/sitemap.xml"]
    assert {p["status"] for p in load_checked_run(out).pages} == {200}


async def test_verify_tls_false_accepts_the_certificate(
        aiohttp_server: Any, tmp_path: Path, certificates: tuple[ssl.SSLContext, Path]) -> None:
    code, out, _, _ = await https_crawl(aiohttp_server, tmp_path, certificates[0],
                                        "verify_tls = false\n")
    assert code == 0
    assert len(load_checked_run(out).pages) == 3


async def test_missing_ca_file_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = config_file(tmp_path, 'ca_file = "no-such-ca.pem"\n')
    result = await run_crawl(seeds_file(tmp_path, "https://127.0.0.1:9/"), *fast(tmp_path / "o"),
                             "--config", config)
    assert result.returncode == 2, str(result)
    assert "ca_file" in result.stderr and "no-such-ca.pem" in result.stderr
