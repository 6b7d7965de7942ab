"""Step 4b, in the parse processes: a page's main content and its language (`--extract`).

trafilatura extracts (chosen by measurement on the article-extraction benchmark: see the
README and `python -m bench.extraction`); py3langid, the detector trafilatura itself uses,
names the language of a page that declares none.
"""

from __future__ import annotations

import logging
import re

FORMATS = ("text", "markdown")
_OUTPUT = {"text": "txt", "markdown": "markdown"}
_WORD = re.compile(r"\w+")
_LANG_SAMPLE = 4000  # characters the detector reads: enough for a verdict, bounded in cost

# trafilatura logs a line per page it finds no content in; the page says so with content ""
logging.getLogger("trafilatura").setLevel(logging.ERROR)


def main_content(html: str, url: str, fmt: str) -> str:
    """The page's main content as plain text or Markdown; "" when there is none."""
    import trafilatura

    found = trafilatura.extract(html, url=url, output_format=_OUTPUT[fmt],
                                include_comments=False, with_metadata=False)
    return found or ""


def words(text: str) -> int:
    return len(_WORD.findall(text))


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of the text's language; None for a text with no words."""
    if not _WORD.search(text):
        return None
    import py3langid  # type: ignore[import-untyped]  # loads its model once per process, at the first page without a lang

    return str(py3langid.classify(text[:_LANG_SAMPLE])[0])
