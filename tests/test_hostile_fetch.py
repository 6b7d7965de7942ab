"""The hostile web, end to end: network faults, statuses, encodings and bombs.

Each case is a crawl of the hostile site by the real `crawl` command; the assertions are on
the records it writes and on the requests the site saw. `tests/test_e2e_fetch.py` holds the
cases that came first (hangs, drips, resets, short bodies, size caps, retries with
Retry-After in seconds and as a date, corrupt gzip, unknown codings).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    Site,
    assert_no_traceback,
    config_file,
    fast,
    load_run,
    run_crawl,
    seeds_file,
    wait_until,
)
from tests.site_hostile import ENCODED_TITLE, HOSTILE, bomb_sizes, build_bombs, encoded_page
from tests.test_e2e_fetch import crawl

# --- network ----------------------------------------------------------------------------------


@contextlib.contextmanager
def full_backlog(host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback port whose accept queue is full: a new connection's SYN goes unanswered."""
    server = socket.socket()
    clients: list[socket.socket] = []
    try:
        server.bind((host, 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(4):
            client = socket.socket()
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect((host, port))
            clients.append(client)
        yield port
    finally:
        for client in clients:
            client.close()
        server.close()


async def test_connect_timeout_is_a_timeout_error(tmp_path: Path) -> None:
    config = config_file(tmp_path, "connect_timeout = 0.5\n")
    out = tmp_path / "out"
    with full_backlog() as port:
        url = f"http://127.0.0.1:{port}/"
        result = await run_crawl(seeds_file(tmp_path, url), *fast(out, timeout=5),
                                 "--no-robots", "--config", str(config))
    assert result.returncode == 4, str(result)
    assert_no_traceback(result)
    error = load_run(out, "seeds").error(url)
    assert (error["kind"], error["attempts"]) == ("timeout", 1)


async def test_headers_then_silence_is_a_timeout_error(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/silence", fetch_timeout=1)

    assert run.error(site.url("/silence"))["kind"] == "timeout"
    assert run.pages == []


async def test_broken_chunked_framing_is_a_connection_error(site: Site, tmp_path: Path) -> None:
    _, run = await crawl(site, tmp_path, "/chunked-broken")

    assert run.error(site.url("/chunked-broken"))["kind"] == "connection"
    assert run.pages == []


async def test_keep_alive_closed_by_the_server_is_retried_once_quietly(
        site: Site, tmp_path: Path) -> None:
    paths = [f"/ka/{name}" for name in "abcd"]
    _, run = await crawl(site, tmp_path, *paths, extra=("--per-host", "1"))

    assert site.app[HOSTILE].dropped, "no request met a closed keep-alive connection"
    for path in paths:
        record = run.page(site.url(path))
        assert (record["status"], record["attempts"]) == (200, 1), record
    for name in site.app[HOSTILE].dropped:
        assert site.count(f"/ka/{name}") == 2, "one quiet retry on a fresh connection"
    assert run.stats["retries"] == 0, "the quiet retry is not one of --retries"
    assert run.errors == []


# --- statuses ---------------------------------------------------------------------------------


async def test_5xx_statuses_are_retried_then_recorded_with_their_status(
        site: Site, tmp_path: Path) -> None:
    codes = (500, 502, 503, 504)
    # 502, 503 and 504 across URLs double the host's pace: short pauses keep the test quick
    config = config_file(tmp_path, "backoff = 0.05\nmax_retry_after = 0.2\n")
    _, run = await crawl(site, tmp_path, *(f"/status/{c}" for c in codes), retries=1,
                         extra=("--config", str(config)))

    for code in codes:
        record = run.page(site.url(f"/status/{code}"))
        assert (record["status"], record["attempts"]) == (code, 2)
        assert site.count(f"/status/{code}") == 2
    assert run.errors == []
    assert run.stats["retries"] >= 4


async def test_retry_after_in_any_shape_leads_to_one_retry(site: Site, tmp_path: Path) -> None:
    shapes = {"seconds": (503, "1"), "garbage": (429, "soon%2C%20maybe"),
              "bad-date": (503, "Wed%2C%2099%20Foo%202026%2099%3A99%20GMT"),
              "negative": (503, "-5")}
    paths = {key: f"/throttle/{code}/{key}?ra={value}" for key, (code, value) in shapes.items()}
    # a short backoff: each 429 or 503 doubles the host's pace from it (0.5 s by default, so
    # 7.5 s of waiting between the four), and the shapes the crawler cannot read fall back to it
    config = config_file(tmp_path, "backoff = 0.05\n")
    _, run = await crawl(site, tmp_path, *paths.values(), retries=2,
                         extra=("--config", str(config)))

    for key, path in paths.items():
        record = run.page(site.url(path))
        assert (record["status"], record["attempts"]) == (200, 2), key
    first, second = site.requests_for(paths["seconds"])
    assert second.at - first.at >= 0.95, f"retried after {second.at - first.at:.2f}s"


async def test_retry_after_past_max_retry_after_is_capped(site: Site, tmp_path: Path) -> None:
    config = config_file(tmp_path, "max_retry_after = 0.5\n")
    path = "/throttle/503/capped?ra=3600"
    _, run = await crawl(site, tmp_path, path, retries=1,
                              extra=("--config", str(config)))

    assert run.page(site.url(path))["status"] == 200, "waited at most max_retry_after"


# --- encodings and bombs ------------------------------------------------------------------------


async def test_encoded_bodies_are_decoded_or_are_content_errors(
        site: Site, tmp_path: Path) -> None:
    good = ["x-gzip", "stacked", "deflate", "deflate-raw", "br"]
    bad = ["br-corrupt", "deflate-corrupt", "gzip-truncated", "too-many", "zstd"]
    _, run = await crawl(site, tmp_path, *(f"/encoded/{name}" for name in good + bad))

    body = encoded_page()
    for name in good:
        record = run.page(site.url(f"/encoded/{name}"))
        assert (record["status"], record["title"]) == (200, ENCODED_TITLE), name
        assert record["bytes"] == len(body), name
        assert record["sha256"] == hashlib.sha256(body).hexdigest(), name
    for name in bad:
        assert run.error(site.url(f"/encoded/{name}"))["kind"] == "content", name
    assert len(run.pages) == len(good)


@pytest.mark.slow
async def test_bombs_are_cut_on_decoded_bytes(site: Site, tmp_path: Path) -> None:
    await asyncio.to_thread(build_bombs)  # compressing them is the site's work, not the crawl's
    paths = [f"/encoded/bomb-{kind}" for kind in bomb_sizes()]
    _, run = await crawl(site, tmp_path, *paths, "/encoded/br",
                         extra=("--max-bytes", "1000000"))

    for path in paths:
        error = run.error(site.url(path))
        assert (error["kind"], error["attempts"]) == ("too_large", 1), error
    assert run.page(site.url("/encoded/br"))["title"] == ENCODED_TITLE


async def test_endless_chunked_body_is_cut_at_the_cap(site: Site, tmp_path: Path) -> None:
    endless = f"/big/{10**15}"
    _, run = await crawl(site, tmp_path, endless, extra=("--max-bytes", "200000"))

    assert run.error(site.url(endless))["kind"] == "too_large"
    await wait_until(lambda: all(s.ended for s in site.big_streams), timeout=5,
                     what="the endless stream to end")
    assert site.big_streams[0].written < 2_000_000
