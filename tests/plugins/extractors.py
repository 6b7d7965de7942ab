"""Test extractors: `fn(page) -> dict | None`, run inside the parse processes."""

from __future__ import annotations

import os
from typing import Any


def h1_count(page: Any) -> dict[str, Any]:
    """Count the page's <h1> elements, and say which process counted them."""
    return {"h1": len(page.tree.xpath("//h1")), "pid": os.getpid()}


def page_facts(page: Any) -> dict[str, Any]:
    """Echo what the page object carries, so a test can check each attribute."""
    return {"url": page.url, "status": page.status, "server": page.headers.get("server"),
            "html_chars": len(page.html)}


def nothing(page: Any) -> None:
    """An extractor with nothing to say."""
    return None


def boom(page: Any) -> dict[str, Any]:
    """An extractor with a bug."""
    raise RuntimeError("extractor exploded")


def not_json(page: Any) -> dict[str, Any]:
    """A result the page record could not hold."""
    return {"tags": {"a", "b"}}


NOT_CALLABLE = 42
