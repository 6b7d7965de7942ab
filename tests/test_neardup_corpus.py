"""Near-duplicates on real pages: Django's documentation (Debian's python-django-doc) served by
nginx, plus pairs made by editing its pages, crawled by the real `crawl` command. Every flagged
pair is judged by its 3-word-shingle Jaccard, computed here from the files, independently of
the crawler's parser: at most 0.5 % of the pages may be flagged with a partner of Jaccard < 0.5,
and every made pair must be found."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lxml.html
import pytest

from bench.nginx import Nginx, free_port
from tests.conftest import DOC_ROOT, fast, load_run, run_crawl, seeds_file

MADE = 12  # originals, each with an exact copy and a copy with one word changed
_WORD = re.compile(r"\w+")


@dataclass
class Corpus:
    root: Path
    origin: str
    groups: list[set[str]]  # URLs of each original with its copies

    def url(self, path: str) -> str:
        return f"{self.origin}/{path}"


def shingles(path: Path, n: int = 3) -> set[tuple[str, ...]]:
    """3-word shingles of a page's text, by lxml.html's own text_content (not the crawler's)."""
    doc = lxml.html.fromstring(path.read_bytes())
    for bad in doc.xpath("//script|//style|//head|//noscript"):
        bad.drop_tree()
    tokens = _WORD.findall(doc.text_content().lower())
    return {tuple(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1))}


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _make_pairs(root: Path) -> list[tuple[str, str, str]]:
    """(original, exact copy, one word changed) paths, of pages of 300 words or more."""
    made: list[tuple[str, str, str]] = []
    (root / "made").mkdir()
    for source in sorted((DOC_ROOT / "topics").rglob("*.html")):
        if len(made) == MADE:
            break
        html = source.read_text(encoding="utf-8")
        if len(_WORD.findall(html)) < 3000:
            continue
        relative = source.relative_to(DOC_ROOT).as_posix()
        depth = relative.count("/")
        # the copies sit at the original's depth, so that relative links resolve alike
        name = f"made/{'x/' * (depth - 1)}{len(made)}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        base = f'<base href="/{relative}">'
        copy = html.replace("<head>", f"<head>{base}", 1)
        # one word of the body's text changed: the first "the" after the main heading
        at = html.index("</h1>")
        edited = html[:at] + html[at:].replace(" the ", " a ", 1)
        edited = edited.replace("<head>", f"<head>{base}", 1)
        (root / f"{name}-copy.html").write_text(copy, encoding="utf-8")
        (root / f"{name}-edit.html").write_text(edited, encoding="utf-8")
        made.append((relative, f"{name}-copy.html", f"{name}-edit.html"))
    links = "".join(f'<a href="/{c}">c</a> <a href="/{e}">e</a>' for _, c, e in made)
    (root / "made" / "index.html").write_text(f"<html><body>{links}</body></html>")
    return made


@pytest.fixture(scope="module")
def corpus(doc_site: object) -> Iterator[Corpus]:
    """The documentation (linked in, not copied) and the made pages, served by an nginx."""
    tmp = Path(tempfile.mkdtemp(prefix="crawl-corpus-"))
    tmp.chmod(0o755)  # nginx's worker (user nobody, when started by root) reads the site
    root = tmp / "site"
    root.mkdir()
    for entry in DOC_ROOT.iterdir():
        os.symlink(entry, root / entry.name)
    made = _make_pairs(root)
    assert len(made) == MADE
    server = Nginx(root, free_port(), tmp / "nginx")
    server.start()
    try:
        yield Corpus(root, server.origin,
                     [{f"{server.origin}/{p}" for p in group} for group in made])
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
async def test_flagged_pairs_share_their_shingles_and_made_pairs_are_found(
        corpus: Corpus, tmp_path: Path) -> None:
    seeds = seeds_file(tmp_path, corpus.url("index.html"), corpus.url("made/index.html"))
    result = await run_crawl(seeds, *fast(tmp_path / "out"), "--no-robots", timeout=300)
    assert result.returncode == 0, str(result)
    run = load_run(tmp_path / "out", "seeds")
    pages = {p["url"]: p for p in run.pages if p["status"] == 200 and p["simhash"]}
    assert len(pages) > 650, len(pages)

    def path_of(url: str) -> Path:
        return corpus.root / url.removeprefix(corpus.origin + "/").split("#")[0]

    flagged = {u: p["near_duplicate_of"] for u, p in pages.items() if p["near_duplicate_of"]}
    made = set().union(*corpus.groups)
    poor = []
    for url, partner in flagged.items():
        score = jaccard(shingles(path_of(url)), shingles(path_of(partner)))
        if score < 0.5:
            poor.append((round(score, 3), url, partner))
    natural = [u for u in flagged if u not in made]
    print(f"\n{len(pages)} pages, {len(flagged)} flagged ({len(natural)} outside the made "
          f"pairs), {len(poor)} with a partner of Jaccard < 0.5: {poor}")
    assert len(poor) <= 0.005 * len(pages), poor

    for group in corpus.groups:
        # each page of a group is flagged with a partner inside the group, except the one
        # that was crawled first
        inside = [u for u in group if flagged.get(u) in group]
        assert len(inside) == len(group) - 1, (group, {u: flagged.get(u) for u in group})
