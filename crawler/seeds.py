"""Step 1 of the data flow: read the seed URLs, naming every bad line before any request."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

from .errors import SeedError
from .urls import normalize


def read_seeds(source: str) -> list[str]:
    """Normalized seed URLs from a file (`-` for standard input), in order, without repeats.

    Blank lines and lines starting with `#` are skipped; any other line that is not an
    absolute http(s) URL makes the whole file an error that lists every such line.
    """
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SeedError(source, [(0, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(source, [(0, f"cannot read it: {exc}")]) from None
    return parse_seeds(text, source)


def parse_seeds(text: str, source: str = "seeds") -> list[str]:
    seeds: list[str] = []
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        problem = _problem(line)
        url = None if problem else normalize(line)
        if url is None:
            problems.append((number, f"{problem or 'not a valid URL'}: {_clip(line)!r}"))
        elif url not in seeds:
            seeds.append(url)
    if problems:
        raise SeedError(source, problems)
    if not seeds:
        raise SeedError(source, [(0, "no seed URL in it")])
    return seeds


def _problem(line: str) -> str | None:
    if any(ch.isspace() for ch in line):
        return "contains whitespace"
    try:
        parts = urlsplit(line)
    except ValueError:
        return "not a valid URL"
    if not parts.scheme:
        return "not an absolute URL"
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http or https"
    if not parts.hostname:
        return "no host"
    return None


def _clip(line: str) -> str:
    return line if len(line) <= 80 else line[:77] + "..."
