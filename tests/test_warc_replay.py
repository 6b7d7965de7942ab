"""Replay in pywb: the WARC files of a job's runs sit in one collection, and every page of a
recrawl, a 304 included, replays with its content (contract 4b).

pywb runs from tests/.venv-pywb (`make pywb`, part of `make test`): it pins redis 2 and
fakeredis 0, which clash with the crawler's own dependencies.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Site, fast, free_port, load_run, run_crawl, run_dirs, seeds_file

PYWB = Path(__file__).parent / ".venv-pywb" / "bin"
PATHS = ("/cond/etag", "/cond/last-modified", "/cond/changing", "/headers/set-cookie")


def _pywb(*args: str, cwd: Path) -> None:
    done = subprocess.run([str(PYWB / args[0]), *args[1:]], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _get(url: str, timeout: float = 20) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:  # not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
async def test_every_page_of_a_recrawl_replays_with_its_content(site: Site,
                                                                 tmp_path: Path) -> None:
    assert (PYWB / "wayback").exists(), "pywb is missing: run `make pywb` (make test does)"
    out = tmp_path / "out"
    seeds = seeds_file(tmp_path, *(site.url(p) for p in PATHS))
    for _ in range(2):
        result = await run_crawl(seeds, *fast(out), "--warc", "--max-depth", "0")
        assert result.returncode == 0, str(result)
        await asyncio.sleep(1.05)  # a new RUN_ID, a new WARC-Date second
    first, second = run_dirs(out, "seeds")
    pages = load_run(out, "seeds", second).pages
    assert {p["status"] for p in pages} == {200, 304}, "some pages unchanged, some not"

    warcs = sorted(p for run in (first, second) for p in run.glob("*.warc.gz"))
    assert [w.name for w in warcs] == [f"crawl-{first.name}.warc.gz",
                                       f"crawl-{second.name}.warc.gz"]
    replayed = await asyncio.to_thread(_replay, tmp_path, warcs, [p["url"] for p in pages],
                                       [p["fetched_at"] for p in pages])
    for page, (status, body) in zip(pages, replayed, strict=True):
        assert status == 200, (page["url"], page["status"], body[:300])
        assert body and hashlib.sha256(body).hexdigest() == page["sha256"], page["url"]


def _replay(tmp_path: Path, warcs: list[Path], urls: list[str],
            dates: list[str]) -> list[tuple[int, bytes]]:
    """One pywb collection of the WARC files; (status, body) of each URL at its date."""
    root = tmp_path / "pywb"
    root.mkdir()
    _pywb("wb-manager", "init", "crawls", cwd=root)
    _pywb("wb-manager", "add", "crawls", *map(str, warcs), cwd=root)
    port = free_port()
    with (tmp_path / "wayback.log").open("wb") as log:
        wayback = subprocess.Popen([str(PYWB / "wayback"), "-b", "127.0.0.1", "-p", str(port)],
                                   cwd=root, stdout=log, stderr=subprocess.STDOUT)
        try:
            # id_: the bytes as archived, not rewritten for a browser
            return [_get(f"http://127.0.0.1:{port}/crawls/"
                         f"{''.join(c for c in date[:19] if c.isdigit())}id_/{url}")
                    for url, date in zip(urls, dates, strict=True)]
        finally:
            wayback.terminate()
            wayback.wait(timeout=10)
