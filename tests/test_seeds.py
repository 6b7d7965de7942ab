"""Seed files: what is skipped, what is collapsed, and every bad line named by number."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from crawler.errors import SeedError, UsageError
from crawler.seeds import parse_seeds, read_seeds


def _file(tmp_path: Path, text: str, encoding: str = "utf-8") -> str:
    path = tmp_path / "seeds.txt"
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    text = "# my seeds\n\nhttp://a.example/\n   \n  # indented comment\nhttps://b.example/x\n"
    assert read_seeds(_file(tmp_path, text)) == ["http://a.example/", "https://b.example/x"]


def test_duplicates_are_collapsed_in_first_seen_order(tmp_path: Path) -> None:
    text = "http://b.example/\nhttp://a.example/\nhttp://b.example/\n"
    assert read_seeds(_file(tmp_path, text)) == ["http://b.example/", "http://a.example/"]


def test_normalization_applies_and_collapses_spellings(tmp_path: Path) -> None:
    text = ("HTTP://Example.COM:80\n"
            "http://example.com/#frag\n"
            "http://example.com/a/./b/../c?jsessionid=1&q=2\n"
            "  https://example.com:443/  \n")
    assert read_seeds(_file(tmp_path, text)) == [
        "http://example.com/",
        "http://example.com/a/c?q=2",
        "https://example.com/",
    ]


def test_every_bad_line_is_reported_by_number_in_one_error(tmp_path: Path) -> None:
    text = "\n".join([
        "http://good.example/",  # 1
        "ftp://x",  # 2
        "not a url",  # 3
        "# comment",  # 4
        "/relative",  # 5
        "http://",  # 6
        "http://exa mple.com",  # 7
        "https://also-good.example/",  # 8
    ]) + "\n"
    path = _file(tmp_path, text)
    with pytest.raises(SeedError) as info:
        read_seeds(path)
    error = info.value
    assert [number for number, _ in error.problems] == [2, 3, 5, 6, 7]
    message = str(error)
    for number in (2, 3, 5, 6, 7):
        assert f"line {number}:" in message
    assert "line 1:" not in message and "line 8:" not in message
    assert path in message
    assert "'ftp://x'" in message  # the bad line itself is quoted
    assert isinstance(error, UsageError) and error.exit_code == 2


@pytest.mark.parametrize(
    ("line", "reason"),
    [("ftp://x", "scheme"), ("not a url", "whitespace"), ("/relative", "absolute"),
     ("http://", "host"), ("http://exa mple.com", "whitespace"),
     ("mailto:someone@example.com", "scheme")],
)
def test_bad_line_says_what_is_wrong(line: str, reason: str) -> None:
    with pytest.raises(SeedError) as info:
        parse_seeds(f"{line}\n", "seeds.txt")
    ((number, message),) = info.value.problems
    assert number == 1
    assert reason in message


def test_long_bad_line_is_clipped_in_the_message() -> None:
    with pytest.raises(SeedError) as info:
        parse_seeds("ftp://" + "x" * 500 + "\n")
    assert len(info.value.problems[0][1]) < 200


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = _file(tmp_path, "")
    with pytest.raises(SeedError) as info:
        read_seeds(path)
    assert path in str(info.value)
    assert "no seed" in str(info.value)


def test_only_comments_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="no seed"):
        read_seeds(_file(tmp_path, "# nothing yet\n\n"))


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(SeedError) as info:
        read_seeds(missing)
    assert missing in str(info.value)
    assert "no such file" in str(info.value)


def test_byte_order_mark_at_file_start_is_ignored(tmp_path: Path) -> None:
    path = _file(tmp_path, "http://a.example/\nhttp://b.example/\n", encoding="utf-8-sig")
    assert read_seeds(path) == ["http://a.example/", "http://b.example/"]


def test_undecodable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "seeds.txt"
    path.write_bytes(b"http://a.example/\xff\xfe\n")
    with pytest.raises(SeedError) as info:
        read_seeds(str(path))
    assert str(path) in str(info.value)


def test_crlf_line_endings_are_fine(tmp_path: Path) -> None:
    assert read_seeds(_file(tmp_path, "http://a.example/\r\n# c\r\nhttp://b.example/\r\n")) == [
        "http://a.example/", "http://b.example/"]


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("# from a pipe\nhttp://a.example/\n"))
    assert read_seeds("-") == ["http://a.example/"]


def test_bad_line_on_standard_input_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("http://a.example/\nftp://x\n"))
    with pytest.raises(SeedError) as info:
        read_seeds("-")
    assert [n for n, _ in info.value.problems] == [2]
