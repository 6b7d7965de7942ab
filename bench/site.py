"""The bench's local sites, generated from a seed: the same N, seed and profile give the same pages.

A site has N pages that a polite crawler must find from `/`: a home page, ten section
indexes, an about page and content pages (navigation, relative, root-relative, absolute and
dot-segment links, fragments, links off the site), plus a `/private/` section that robots.txt
disallows and pages link into. Two profiles: `mixed` (15-60 KB pages with 20-60 links each
and a rich vocabulary) and `links` (the link-heavy kind of site: a 20-link navigation bar on
every page, 20-60 links in the body of which many repeat, about 64 links a page, 8-30 KB, a
small vocabulary, so most links are known already and the text has few distinct words). The
frontier site is a home page linking to hubs whose links lead to URLs that do not exist, so
that fetching the hubs alone discovers a million URLs. The hub page is one index of thousands of
links into the site (its pages, each named several times and with fragments), the page
whose links the event loop must take in without stalling.
"""

from __future__ import annotations

import json
import random
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SECTIONS = 10
MIN_PAGES = SECTIONS + 3
POPULAR = 8  # content pages the `links` profile's navigation bar names on every page


@dataclass(frozen=True, slots=True)
class Profile:
    """The kind of site: page sizes, links per page, navigation, repeats and vocabulary."""

    page_bytes: tuple[int, int]  # a last block may add 2.5 KB
    links: tuple[int, int]  # <a> elements per page, navigation and "back to top" included
    popular_in_nav: bool  # the navigation bar also names POPULAR content pages
    repeat: float  # chance that a body link repeats one the page already has
    vocabulary: int  # distinct made-up words drawn for the text


PROFILES = {
    "mixed": Profile((15_000, 57_500), (20, 60), False, 0.0, 6000),
    "links": Profile((8_000, 27_500), (44, 84), True, 0.35, 400),
}
ROBOTS = "User-agent: *\nDisallow: /private/\n"
MANIFEST = "manifest.json"
_HREF = re.compile(r"<a href=")
FRONTIER_DIR = "frontier"
HUB_DIR = "hub"

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ber", "chal", "dor", "fen",
              "gri", "hal", "jun", "kri", "lem", "mor", "nal", "pra", "quin", "ros", "stel",
              "tor", "ul", "ven", "wy", "xen", "yor", "zel", "an", "es", "ic", "ot")
_OFFSITE = ("https://www.example.com/", "http://example.org/docs/", "https://cdn.example.net/a/",
            "mailto:team@example.com", "https://en.wikipedia.org/wiki/Web_crawler")
_STYLE = ("<style>body{font:16px/1.5 serif;max-width:50em;margin:auto}nav a{margin:0 .4em}"
          ".note{color:#555}</style>")
_SCRIPT = ("<script>document.addEventListener('DOMContentLoaded',function(){var n="
           "document.querySelectorAll('a').length;console.log('links',n)});</script>")


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a generated site holds: the paths a crawler must fetch, and the forbidden prefix."""

    pages: int
    seed: int
    port: int
    expected: tuple[str, ...]  # URL paths, "/" first
    private: tuple[str, ...]
    disallowed_prefix: str = "/private/"
    profile: str = "mixed"

    def save(self, root: Path) -> None:
        data = {"pages": self.pages, "seed": self.seed, "port": self.port,
                "expected": list(self.expected), "private": list(self.private),
                "disallowed_prefix": self.disallowed_prefix, "profile": self.profile}
        (root / MANIFEST).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, root: Path) -> Manifest:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        return cls(pages=data["pages"], seed=data["seed"], port=data["port"],
                   expected=tuple(data["expected"]), private=tuple(data["private"]),
                   disallowed_prefix=data["disallowed_prefix"],
                   profile=data.get("profile", "mixed"))


class _Writer:
    """Pages of made-up words in the markup of a real site, drawn by one seeded RNG.

    About a third of a page's bytes is visible text, the rest markup, as on the web: cards,
    lists, tables and paragraphs in classed containers, and a JSON-LD block.
    """

    def __init__(self, rng: random.Random, origin: str, vocabulary: int) -> None:
        self.rng = rng
        self.origin = origin
        words = {"".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4)))
                 for _ in range(vocabulary)}
        self.words = sorted(words)
        self.sentences = [self._sentence(rng.randint(8, 30)) for _ in range(3000)]
        self._pending: list[str] = []

    def _sentence(self, n: int) -> str:
        text = " ".join(self.rng.choices(self.words, k=n))
        return text[0].upper() + text[1:] + "."

    def anchor(self) -> str:
        return " ".join(self.rng.choices(self.words, k=self.rng.randint(1, 4)))

    def _text(self) -> str:
        """A sentence, carrying the next link waiting to be placed, if any."""
        sentence = self.rng.choice(self.sentences)
        if not self._pending:
            return sentence
        words = sentence.split(" ")
        cut = self.rng.randrange(len(words))
        link = f'<a href="{self._pending.pop()}" class="inline">{self.anchor()}</a>'
        return " ".join([*words[:cut], link, *words[cut:]])

    def _paragraph(self) -> str:
        body = " ".join(self._text() for _ in range(self.rng.randint(1, 3)))
        return (f'<div class="row"><div class="col-md-8 content"><p class="text">{body}</p>'
                "</div></div>\n")

    def _cards(self) -> str:
        rng = self.rng
        cards = "".join(
            f'<div class="card shadow-sm" data-id="{rng.randrange(10**6)}">'
            f'<img class="card-img-top" src="/static/img/{rng.randrange(500)}.jpg"'
            f' alt="{self.anchor()}" width="320" height="180" loading="lazy">'
            f'<div class="card-body">'
            f'<h3 class="card-title h5">{self.anchor()}</h3><p class="card-text">{self._text()}</p>'
            f'<span class="badge bg-secondary">{rng.choice(self.words)}</span></div></div>'
            for _ in range(rng.randint(2, 5)))
        return f'<section class="cards d-flex flex-wrap">{cards}</section>\n'

    def _list(self) -> str:
        rng = self.rng
        items = "".join(f'<li class="list-group-item"><span class="icon icon-{rng.randrange(40)}"'
                        f' aria-hidden="true"></span> {self.anchor()}</li>'
                        for _ in range(rng.randint(4, 9)))
        return f'<ul class="list-group list-unstyled">{items}</ul>\n'

    def _table(self) -> str:
        rng = self.rng
        head = "".join(f'<th scope="col">{rng.choice(self.words)}</th>' for _ in range(4))
        rows = "".join(
            "<tr>" + "".join(f'<td class="cell">{rng.choice(self.words)}</td>' for _ in range(3))
            + f'<td class="num">{rng.randrange(10**5)}</td></tr>' for _ in range(rng.randint(3, 8)))
        return (f'<div class="table-responsive"><table class="table table-sm"><thead><tr>{head}'
                f"</tr></thead><tbody>{rows}</tbody></table></div>\n")

    def page(self, path: str, nav: str, hrefs: list[str], size: int) -> str:
        rng = self.rng
        title = self._sentence(rng.randint(3, 7)).rstrip(".")
        head = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{title}</title>"
                f'<meta name="description" content="{rng.choice(self.sentences)}">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<link rel="canonical" href="{self.origin}{path}">'
                f'<script type="application/ld+json">{{"@type": "Article", "headline": '
                f'"{title}", "wordCount": {rng.randrange(5000)}}}</script>'
                f"{_STYLE}{_SCRIPT}</head>\n<body><a id=\"top\"></a><header>{nav}</header>\n"
                f'<main class="container"><article><h1 class="display-5">{title}</h1>\n')
        parts = [head]
        length = len(head) + 200
        self._pending = list(hrefs)
        rng.shuffle(self._pending)
        blocks = (self._paragraph, self._paragraph, self._cards, self._list, self._table)
        while length < size or self._pending:
            block = rng.choice(blocks)()
            parts.append(block)
            length += len(block)
        parts.append('</article><footer class="footer"><a href="#top">Back to top</a></footer>'
                     "</main></body></html>\n")
        return "".join(parts)


def _content_path(i: int) -> str:
    return f"/s{i % SECTIONS:02d}/p{i:05d}.html"


def _spell(rng: random.Random, origin: str, source: str, target: str) -> str:
    """One of the ways pages spell a link to `target`, as seen from `source`."""
    kind = rng.random()
    fragment = f"#part{rng.randint(1, 5)}" if rng.random() < 0.15 else ""
    source_dir = source.rsplit("/", 1)[0]
    target_dir, _, name = target.rpartition("/")
    if kind < 0.3 and source_dir == target_dir:
        href = name or "./"
    elif kind < 0.45 and source_dir != "" and target_dir != "":
        href = f"..{target_dir}/{name}"
    elif kind < 0.7:
        href = f"{origin}{target}"
    else:
        href = target
    return href + fragment


def generate(root: Path, pages: int, port: int, seed: int = 1,
             profile: str = "mixed") -> Manifest:
    """Write a site under `root` (robots.txt, pages, manifest.json) and describe it."""
    if pages < MIN_PAGES:
        raise ValueError(f"pages {pages}: the site needs at least {MIN_PAGES}")
    kind = PROFILES[profile]
    rng = random.Random(seed)
    origin = f"http://127.0.0.1:{port}"
    writer = _Writer(rng, origin, kind.vocabulary)
    content = pages - SECTIONS - 2
    targets = [_content_path(i) for i in range(content)]
    sections = [f"/s{s:02d}/" for s in range(SECTIONS)]
    private = [f"/private/doc{i:04d}.html" for i in range(max(3, pages // 100))]
    nav_hrefs = ["/", *sections, "/about.html"]
    if kind.popular_in_nav:
        nav_hrefs += targets[:: max(1, content // POPULAR)][:POPULAR]
    nav = "<nav>" + " ".join(f'<a href="{h}">{writer.anchor()}</a>' for h in nav_hrefs) + "</nav>"
    graph: dict[str, list[str]] = {}

    def links_for(path: str, own: list[str]) -> tuple[list[str], list[str]]:
        want = rng.randint(*kind.links) - len(nav_hrefs) - 1  # less the nav and "back to top"
        chosen = list(own)
        while len(chosen) < want:
            roll = rng.random()
            if kind.repeat and chosen and rng.random() < kind.repeat:
                chosen.append(rng.choice(chosen))
            elif roll < 0.06:
                chosen.append(rng.choice(_OFFSITE) + writer.anchor().replace(" ", "-"))
            elif roll < 0.09:
                chosen.append("#" + rng.choice(("top", "part2", "")))
            elif roll < 0.11:
                chosen.append(rng.choice(private))
            else:
                chosen.append(rng.choice(targets))
        found = [t for t in chosen if t.startswith("/") and not t.startswith("/private/")]
        hrefs = [_spell(rng, origin, path, t) if t.startswith("/") else t for t in chosen]
        return hrefs, found

    def emit(path: str, own: list[str]) -> None:
        hrefs, found = links_for(path, own)
        graph[path] = nav_hrefs + found
        size = rng.randint(*kind.page_bytes)
        file = root / (path.lstrip("/") + ("index.html" if path.endswith("/") else ""))
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(writer.page(path, nav, hrefs, size), encoding="utf-8")

    root.mkdir(parents=True, exist_ok=True)
    (root / "robots.txt").write_text(ROBOTS, encoding="ascii")
    emit("/", [])
    emit("/about.html", [])
    for s, section in enumerate(sections):
        first = targets[s::SECTIONS][:5]
        emit(section, first)
    for i, path in enumerate(targets):
        emit(path, [targets[(i + 1) % len(targets)]])  # "next": every page is reachable
    for path in private:
        emit(path, [])
    expected = tuple(_reachable(graph))
    manifest = Manifest(pages=pages, seed=seed, port=port, expected=expected,
                        private=tuple(private), profile=profile)
    if len(expected) != pages:
        raise AssertionError(f"generator bug: {len(expected)} reachable of {pages}")
    manifest.save(root)
    return manifest


def links_per_page(root: Path) -> float:
    """The mean number of `<a href>` elements of a generated site's pages."""
    counts = [len(_HREF.findall(p.read_text(encoding="utf-8"))) for p in root.rglob("*.html")]
    return sum(counts) / len(counts) if counts else 0.0


def _reachable(graph: dict[str, list[str]]) -> Iterator[str]:
    seen = {"/"}
    queue = deque(["/"])
    while queue:
        path = queue.popleft()
        yield path
        for target in graph[path]:
            if target not in seen:
                seen.add(target)
                queue.append(target)


def generate_frontier(root: Path, urls: int) -> tuple[str, int]:
    """A home page linking to hubs that link to `urls` URLs nobody serves, under `root`.

    Returns the home page's path and the number of pages (home and hubs) to fetch, which is
    the `--max-pages` that discovers them all.
    """
    hubs = max(1, round(urls ** 0.5))
    per_hub = -(-urls // hubs)
    folder = root / FRONTIER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    links = "".join(f'<a href="h{h:05d}.html">hub {h}</a>\n' for h in range(hubs))
    (folder / "index.html").write_text(f"<!doctype html><title>hubs</title>{links}",
                                       encoding="utf-8")
    for h in range(hubs):
        count = min(per_hub, urls - h * per_hub)
        body = "".join(f'<a href="/{FRONTIER_DIR}/h{h:05d}/leaf{j:05d}.html">leaf {j}</a>\n'
                       for j in range(max(0, count)))
        (folder / f"h{h:05d}.html").write_text(f"<!doctype html><title>hub {h}</title>{body}",
                                               encoding="utf-8")
    return f"/{FRONTIER_DIR}/", hubs + 1


def generate_hub(root: Path, manifest: Manifest, links: int) -> str:
    """One page of `links` anchors into the site under `root`, like a documentation index:
    each target named three times (as is, with a fragment, and again further down), so a
    third as many distinct pages as anchors (fewer on a small site). Returns its path."""
    targets = [p for p in manifest.expected if p != "/"]
    distinct = max(1, links // 3)
    names = [targets[i % len(targets)] for i in range(distinct)]
    rows = []
    for i in range(links):
        path = names[i % distinct]
        rows.append(f'<li><a href="{path}#s{i % 7}">{path}</a></li>' if (i // distinct) % 3 == 1
                    else f'<li><a href="{path}">{path}</a></li>')
    folder = root / HUB_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(
        f"<!doctype html><title>index</title><ul>{''.join(rows)}</ul>", encoding="utf-8")
    return f"/{HUB_DIR}/"
