"""The ceiling: lxml alone parsing the site's pages from disk and pulling out their links.

    python -m bench.ceiling SITE_ROOT [PROCESSES]

No network, no record, no state: how fast this machine can parse these pages at all, on as
many processes as the crawlers have cores. Prints {"pages": n, "links": m}.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

import lxml.html  # type: ignore[import-untyped]

from .site import Manifest

_root = Path()


def _init(root: str) -> None:
    global _root
    _root = Path(root)


def parse(path: str) -> int:
    """Parse one page; its title and hrefs are taken, as a crawler would need them."""
    file = _root / (path.lstrip("/") + ("index.html" if path.endswith("/") else ""))
    tree = lxml.html.document_fromstring(file.read_bytes())
    tree.findtext(".//title")
    return len(tree.xpath("//a/@href"))


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m bench.ceiling SITE_ROOT [PROCESSES]", file=sys.stderr)
        return 2
    root = Path(argv[0])
    processes = int(argv[1]) if len(argv) > 1 else 2
    paths = Manifest.load(root).expected
    context = multiprocessing.get_context("forkserver")
    with context.Pool(processes, initializer=_init, initargs=(str(root),)) as pool:
        counts = list(pool.imap_unordered(parse, paths, chunksize=64))
    print(json.dumps({"pages": len(counts), "links": sum(counts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
