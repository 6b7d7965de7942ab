"""Step 7: read what a crawl wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["read_content", "read_errors", "read_links", "read_pages", "read_stats", "run_folder"]

PathArg = str | os.PathLike[str] | None


def run_folder(path: PathArg = None) -> Path:
    """Resolve a job folder or a run folder to the run folder to read.

    A run folder holds `pages*.jsonl` or `stats.json`, or sits in a `runs/` folder; it is
    returned as is. A job folder (`OUT/JOB/`) resolves to its `latest` symlink, or, when
    `latest` is missing or dangling (no run has finished yet), to the newest folder under
    `runs/` by name, which is the newest by start time since run IDs are UTC timestamps.
    `None` means the current directory. Raises `FileNotFoundError` naming the path when
    neither applies.
    """
    folder = Path(path) if path is not None else Path.cwd()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if _is_run_folder(folder):
        return folder
    latest = folder / "latest"
    if latest.is_dir():
        return latest.resolve()
    runs = folder / "runs"
    if runs.is_dir():
        candidates = sorted(p for p in runs.iterdir() if p.is_dir())
        if candidates:
            return candidates[-1]
        raise FileNotFoundError(f"{folder}: the job has no runs yet ({runs} is empty)")
    raise FileNotFoundError(
        f"{folder}: neither a job folder (with runs/) nor a run folder (with pages*.jsonl)"
    )


def read_pages(path: PathArg = None) -> Iterator[dict[str, Any]]:
    """Yield every page record of the run, from all `pages*.jsonl` parts in name order.

    The folder is resolved at once (so a bad path raises here), the records lazily.
    """
    return _read_parts(run_folder(path), "pages")


def read_links(path: PathArg = None) -> Iterator[dict[str, Any]]:
    """Yield every link record of the run, from all `links*.jsonl` parts in name order."""
    return _read_parts(run_folder(path), "links")


def read_errors(path: PathArg = None) -> Iterator[dict[str, Any]]:
    """Yield every error record of the run, from all `errors*.jsonl` parts in name order."""
    return _read_parts(run_folder(path), "errors")


def read_content(path: PathArg = None) -> Iterator[dict[str, Any]]:
    """Yield every main-content record of the run (`--extract`), from all `content*.jsonl`
    parts in name order; nothing for a run without extraction."""
    return _read_parts(run_folder(path), "content")


def read_stats(path: PathArg = None) -> dict[str, Any]:
    """Return the run's `stats.json`; `FileNotFoundError` when the run has none yet."""
    stats_path = run_folder(path) / "stats.json"
    with stats_path.open(encoding="utf-8") as f:
        stats = json.load(f)
    if not isinstance(stats, dict):
        raise ValueError(f"{stats_path}: not a JSON object")
    return stats


def _is_run_folder(folder: Path) -> bool:
    if folder.resolve().parent.name == "runs" or (folder / "stats.json").is_file():
        return True
    return any(folder.glob("pages*.jsonl"))


def _read_parts(folder: Path, stem: str) -> Iterator[dict[str, Any]]:
    # The glob is taken now rather than at the first next(): a reader created before a
    # writer adds a part sees the parts that existed when it was asked for.
    parts = sorted(folder.glob(f"{stem}*.jsonl"))
    return _iter_parts(parts)


def _iter_parts(parts: list[Path]) -> Iterator[dict[str, Any]]:
    for part in parts:
        yield from _iter_part(part)


def _iter_part(part: Path) -> Iterator[dict[str, Any]]:
    with part.open("rb") as f:
        for number, line in enumerate(f, start=1):
            complete = line.endswith(b"\n")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
                if not complete:
                    # a writer killed mid-line; the resuming run removes it
                    return
                raise ValueError(f"{part}: line {number}: not valid JSON ({exc})") from exc
            if not isinstance(record, dict):
                if not complete:
                    return
                raise ValueError(f"{part}: line {number}: not a JSON object")
            yield record
