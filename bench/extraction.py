"""`python -m bench.extraction`: main-content extractors on the article-extraction benchmark.

The data is scrapinghub's article-extraction-benchmark (MIT; see the NOTICE beside it): 181
pages with a hand-made `articleBody` each. The score is the benchmark's own (its evaluate.py):
`\\w+` tokens, multisets of 4-token shingles, per page tp/fp/fn; precision averaged over the
pages with tp+fp > 0, recall over those with tp+fn > 0, F1 = 2PR/(P+R) of the two averages.
Speed is pages per second of one process over the same pages (decoded text in, text out).

    python -m bench.extraction [--data DIR] [--candidates a,b] [--published NAME]

`--published trafilatura` scores the benchmark's published output, which checks this port of
the metric against the published figure (F1 0.958). Candidates whose library is missing are
reported as such, so that the script runs in any environment.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATA = Path("/work/shared/extract_data")
_TOKEN = re.compile(r"\w+")


def _shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text)
    return Counter(tuple(tokens[i:i + n]) for i in range(max(1, len(tokens) - n + 1))
                   if tokens[i:i + n])


def score(truth: dict[str, str], predicted: dict[str, str]) -> dict[str, float]:
    """The benchmark's precision, recall, F1 and accuracy of `predicted` against `truth`."""
    precisions, recalls, exact = [], [], 0
    for key, true_text in truth.items():
        pred_text = predicted.get(key, "")
        t, p = _shingles(true_text), _shingles(pred_text)
        tp = sum((t & p).values())
        fp = sum((p - t).values())
        fn = sum((t - p).values())
        if tp + fp > 0:
            precisions.append(tp / (tp + fp))
        if tp + fn > 0:
            recalls.append(tp / (tp + fn))
        exact += _TOKEN.findall(true_text) == _TOKEN.findall(pred_text)
    precision = sum(precisions) / len(precisions) if precisions else 0.0
    recall = sum(recalls) / len(recalls) if recalls else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": round(f1, 3), "precision": round(precision, 3), "recall": round(recall, 3),
            "accuracy": round(exact / len(truth), 3)}


def _trafilatura() -> Callable[[str], str]:
    import trafilatura

    return lambda html: trafilatura.extract(html, output_format="txt") or ""


def _trafilatura_fast() -> Callable[[str], str]:
    import trafilatura

    return lambda html: trafilatura.extract(html, output_format="txt", fast=True) or ""


def _trafilatura_md() -> Callable[[str], str]:
    import trafilatura

    return lambda html: trafilatura.extract(html, output_format="markdown") or ""


def _trafilatura_nc() -> Callable[[str], str]:
    import trafilatura

    return lambda html: trafilatura.extract(html, output_format="txt",
                                            include_comments=False) or ""


def _resiliparse() -> Callable[[str], str]:
    from resiliparse.extract.html2text import extract_plain_text  # type: ignore[import-not-found,unused-ignore]

    return lambda html: extract_plain_text(html, main_content=True)


def _readability() -> Callable[[str], str]:
    import lxml.html  # type: ignore[import-untyped]
    from readability import Document  # type: ignore[import-not-found]

    def run(html: str) -> str:
        summary = Document(html).summary(html_partial=True)
        return str(lxml.html.fromstring(summary).text_content()) if summary.strip() else ""
    return run


def _justext() -> Callable[[str], str]:
    import justext  # type: ignore[import-untyped]

    stop = justext.get_stoplist("English")
    return lambda html: "\n".join(p.text for p in justext.justext(html.encode("utf-8"), stop)
                                  if not p.is_boilerplate)


def _goose3() -> Callable[[str], str]:
    from goose3 import Goose  # type: ignore[import-not-found]

    goose = Goose()
    return lambda html: goose.extract(raw_html=html).cleaned_text or ""


def _newspaper() -> Callable[[str], str]:
    import newspaper  # type: ignore[import-not-found]

    def run(html: str) -> str:
        article = newspaper.Article("http://example.com/")
        article.download(input_html=html)
        article.parse()
        return str(article.text or "")
    return run


CANDIDATES: dict[str, Callable[[], Callable[[str], str]]] = {
    "trafilatura": _trafilatura, "trafilatura-fast": _trafilatura_fast,
    "trafilatura-markdown": _trafilatura_md, "trafilatura-no-comments": _trafilatura_nc,
    "resiliparse": _resiliparse,
    "readability-lxml": _readability, "justext": _justext, "goose3": _goose3,
    "newspaper4k": _newspaper,
}


def load(data: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(ID -> ground-truth articleBody, ID -> page HTML)."""
    truth = {k: v["articleBody"] for k, v in
             json.loads((data / "ground-truth.json").read_text(encoding="utf-8")).items()}
    pages = {k: gzip.decompress((data / "html" / f"{k}.html.gz").read_bytes()).decode("utf-8")
             for k in truth}
    return truth, pages


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--published", default="", help="score output/NAME.json instead")
    args = parser.parse_args(argv)
    truth, pages = load(args.data)
    if args.published:
        out = json.loads((args.data / "output" / f"{args.published}.json").read_text())["output"]
        print(json.dumps({"published": args.published,
                          **score(truth, {k: v["articleBody"] for k, v in out.items()})}))
        return 0
    for name in args.candidates.split(","):
        try:
            extract = CANDIDATES[name]()
        except ImportError as exc:
            print(json.dumps({"candidate": name, "missing": str(exc)}), flush=True)
            continue
        predicted: dict[str, str] = {}
        start = time.perf_counter()
        for key, html in pages.items():
            try:
                predicted[key] = extract(html)
            except Exception:  # a candidate that fails on a page scores nothing there
                predicted[key] = ""
        elapsed = time.perf_counter() - start
        print(json.dumps({"candidate": name, **score(truth, predicted),
                          "pages_per_s": round(len(pages) / elapsed, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
