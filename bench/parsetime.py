"""The parse stage alone: CPU per page in one process over a bench site's real pages.

    python -m bench.parsetime [--pages N] [--sites mixed,links] [--rounds R] [--seed S]

Generates each site profile in a temporary folder (`bench.site`, the same pages `make bench`
serves), then in this one process parses every page as a parse worker does (`parse.init_worker`
with the default policy for the site's seed, then `parse.parse_many` in batches of
`pools.MAX_BATCH`), and pickles each batch's results there and back as the process pool does.
The best of `rounds` rounds is printed, per page: parse CPU, pickling CPU, pickled bytes; and
`digest`, a hash of every result but its timing, so that a change that should leave results
unchanged can be seen to.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from crawler import parse
from crawler.models import ParseInput, ParseResult
from crawler.pools import MAX_BATCH
from crawler.urls import LinkPolicy

from .site import Manifest, generate

PORT = 8000  # the pages are read from disk; the port only names their origin


def _inputs(root: Path, manifest: Manifest) -> list[ParseInput]:
    origin = f"http://127.0.0.1:{manifest.port}"
    out = []
    for path in manifest.expected:
        file = root / (path.lstrip("/") + ("index.html" if path.endswith("/") else ""))
        out.append(ParseInput(url=origin + path, status=200, content_type="text/html",
                              charset=None, headers={"content-type": "text/html"},
                              body=file.read_bytes()))
    return out


def _round(inputs: list[ParseInput]) -> tuple[float, float, int, list[ParseResult]]:
    parse_s = pickle_s = 0.0
    size = 0
    results: list[ParseResult] = []
    for i in range(0, len(inputs), MAX_BATCH):
        batch = inputs[i : i + MAX_BATCH]
        start = time.process_time()
        done = parse.parse_many(batch)
        middle = time.process_time()
        data = pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL)  # as concurrent.futures
        pickle.loads(data)
        parse_s += middle - start
        pickle_s += time.process_time() - middle
        size += len(data)
        results.extend(done)
    return parse_s, pickle_s, size, results


def digest(results: list[ParseResult]) -> str:
    """A hash of the results with their timings left out."""
    h = hashlib.sha256()
    for result in results:
        h.update(repr(replace(result, busy_s=0.0)).encode())
    return h.hexdigest()[:16]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.parsetime", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--sites", default="mixed,links")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    for profile in args.sites.split(","):
        with tempfile.TemporaryDirectory(prefix="parsetime-") as tmp:
            root = Path(tmp)
            manifest = generate(root, args.pages, PORT, args.seed, profile)
            inputs = _inputs(root, manifest)
        policy = LinkPolicy.for_seeds([f"http://127.0.0.1:{PORT}/"], scope="host",
                                      private_networks="seeds")
        parse.init_worker((), policy, parse.DEFAULT_MAX_LINKS)
        best: tuple[float, float, int, list[ParseResult]] | None = None
        for _ in range(args.rounds):
            figures = _round(inputs)
            if best is None or figures[0] + figures[1] < best[0] + best[1]:
                best = figures
        assert best is not None
        parse_s, pickle_s, size, results = best
        n = len(inputs)
        print(f"{profile:6} {n} pages  parse {parse_s / n * 1e3:.3f} ms/page  "
              f"pickle {pickle_s / n * 1e3:.3f} ms/page  {size / n:.0f} B/page  "
              f"links {sum(len(r.links) for r in results)}  digest {digest(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
