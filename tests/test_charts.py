"""The inline SVG charts on their own: labels under the axis, clock times, numbers in full."""

from __future__ import annotations

from crawler.charts import bar_chart, column_chart, fmt, pages_over_time


def test_numbers_are_shown_as_the_summary_holds_them() -> None:
    assert [fmt(v) for v in (None, 12.0, 0.56, 7)] == ["-", "12", "0.56", "7"]
    assert ">12.5</text>" in bar_chart([("slow", 12.5)], "x")


def test_column_chart_labels_about_six_columns_but_titles_every_one() -> None:
    svg = column_chart([(f"c{i}", i) for i in range(20)], "y")
    assert svg.count("<title>") == 20
    assert svg.count('text-anchor="middle"') == 5  # every 4th of 20 columns
    assert "highest column: 19" in svg


def test_pages_over_time_labels_buckets_with_clock_times() -> None:
    fine = pages_over_time({"start": "2026-11-24T12:00:00.250Z", "bucket_s": 0.2, "counts": [1, 2]})
    assert "<title>12:00:00.250: 1</title>" in fine and "<title>12:00:00.450: 2</title>" in fine
    coarse = pages_over_time({"start": "2026-11-24T12:00:00Z", "bucket_s": 15, "counts": [3, 0]})
    assert "<title>12:00:00: 3</title>" in coarse and "<title>12:00:15: 0</title>" in coarse
    assert 'aria-label="pages over time"' in coarse
