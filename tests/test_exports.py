"""The public surface: a short, sorted `__all__` of readers."""

from __future__ import annotations

import crawler


def test_all_is_sorted() -> None:
    assert crawler.__all__ == sorted(crawler.__all__)


def test_all_is_exactly_the_readers() -> None:
    assert set(crawler.__all__) == {"read_content", "read_errors", "read_links", "read_pages"}


def test_every_export_is_callable() -> None:
    for name in crawler.__all__:
        assert callable(getattr(crawler, name)), name
