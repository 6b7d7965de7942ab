"""Main-content extraction (`--extract`): six pages of the article-extraction benchmark shipped
in tests/data (see its NOTICE), scored the benchmark's way, through the parse stage as a parse
process runs it; and end to end, a real crawl of Django's documentation served by nginx."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.extraction import score
from crawler import read_content, read_pages
from crawler.models import ParseInput
from crawler.parse import init_worker, parse
from crawler.summary import summarize
from tests.conftest import DocSite, fast, run_crawl, seeds_file

DATA = Path(__file__).parent / "data" / "article-extraction"
TRUTH = json.loads((DATA / "ground-truth.json").read_text(encoding="utf-8"))


@pytest.fixture
def extracting() -> Iterator[None]:
    init_worker((), None, 5000, "text")
    yield
    init_worker((), None, 5000)


def _parse(key: str, status: int = 200) -> tuple[str | None, str | None, str | None]:
    body = gzip.decompress((DATA / "html" / f"{key}.html.gz").read_bytes())
    result = parse(ParseInput(url=TRUTH[key]["url"], status=status, content_type="text/html",
                              charset=None, headers={}, body=body))
    return result.content, result.content_lang, result.lang


def test_benchmark_pages_score_as_the_benchmark_measured(extracting: None) -> None:
    predicted = {key: _parse(key)[0] or "" for key in TRUTH}
    figures = score({k: v["articleBody"] for k, v in TRUTH.items()}, predicted)
    # trafilatura scores 0.96 on the whole benchmark; these six pages, 0.96 as well
    assert figures["f1"] >= 0.9, figures
    assert all(predicted.values())


def test_lang_is_the_declared_one_else_detected(extracting: None) -> None:
    undeclared = next(k for k in TRUTH if k.startswith("05844573"))
    korean = next(k for k in TRUTH if k.startswith("0ec95c72"))
    assert _parse(undeclared)[1:] == ("en", None)
    assert _parse(korean)[1:] == ("ko", "ko")


def test_no_content_without_extract_or_for_an_error_status() -> None:
    key = next(iter(TRUTH))
    init_worker((), None, 5000, "text")
    try:
        assert _parse(key, status=404)[0] is None
    finally:
        init_worker((), None, 5000)
    assert _parse(key)[0] is None


def test_markdown_keeps_the_structure(extracting: None) -> None:
    init_worker((), None, 5000, "markdown")
    text = next(v for v in TRUTH)
    content = _parse(text)[0]
    assert content and any(line.startswith(("#", "- ", "* ", "**")) for line in
                           content.splitlines()), content[:500]


def test_a_page_without_main_content_gets_empty_content(extracting: None) -> None:
    result = parse(ParseInput(url="http://a.test/", status=200, content_type="text/html",
                              charset=None, headers={},
                              body=b"<html><body><script>go()</script><img src=a></body></html>"))
    assert result.content == "" and result.content_lang is None


@pytest.mark.slow
async def test_extract_end_to_end_on_the_documentation(doc_site: DocSite,
                                                       tmp_path: Path) -> None:
    seeds = seeds_file(tmp_path, doc_site.url("/index.html"))
    result = await run_crawl(seeds, *fast(tmp_path / "out"), "--no-robots", "--max-pages",
                             "40", "--extract", "markdown", timeout=300)
    assert result.returncode == 0, str(result)
    job = tmp_path / "out" / "seeds"
    pages = [p for p in read_pages(job) if p["status"] == 200
             and p["content_type"] == "text/html"]
    content = list(read_content(job))
    assert sorted(c["url"] for c in content) == sorted(p["url"] for p in pages)
    by_url = {p["url"]: p for p in pages}
    for record in content:
        assert list(record) == ["url", "fetched_at", "title", "lang", "format", "content",
                                "words"]
        page = by_url[record["url"]]
        assert (record["fetched_at"], record["title"]) == (page["fetched_at"], page["title"])
        assert record["format"] == "markdown" and record["lang"] == "en"
    assert sum(c["words"] for c in content) < sum(p["words"] for p in pages), \
        "navigation, sidebars and footers are left out"
    index = next(c for c in content if c["url"].endswith("/index.html"))
    assert index["content"].startswith("Everything you need to know about Django.")
    assert "Table of contents" not in index["content"], "the header's navigation is left out"
    with_content = sum(bool(c["content"]) for c in content)
    assert with_content >= 0.9 * len(content)
    summary = summarize(job)
    assert summary["content"]["pages"] == len(content)
    assert summary["content"]["with_content"] == with_content
