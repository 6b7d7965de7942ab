"""Settings: default.toml matches the dataclass, layering, and errors that name the key."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from crawler import settings as settings_module
from crawler.errors import ConfigError
from crawler.settings import DEFAULTS_FILE, Settings, load, parse_duration

FIELDS = {f.name for f in dataclasses.fields(Settings)}
# a top-level `key = value` line of default.toml (comments and blank lines excluded)
_KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=")


def _key_lines() -> dict[str, str]:
    lines = {}
    for line in DEFAULTS_FILE.read_text(encoding="utf-8").splitlines():
        match = _KEY_LINE.match(line)
        if match:
            lines[match.group(1)] = line
    return lines


def _write(tmp_path: Path, text: str, name: str = "crawl.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(config_text: str | None = None, tmp_path: Path | None = None,
           **overrides: Any) -> str:
    """The ConfigError message that loading these layers raises."""
    config = _write(tmp_path, config_text) if config_text is not None and tmp_path else None
    with pytest.raises(ConfigError) as info:
        load(config, overrides or None)
    return str(info.value)


# --- default.toml and the dataclass -------------------------------------------------------


def test_every_field_has_a_commented_key_in_default_toml() -> None:
    lines = _key_lines()
    missing = sorted(FIELDS - set(lines))
    assert not missing, f"fields without a key in {DEFAULTS_FILE}: {missing}"
    uncommented = sorted(name for name in FIELDS if "#" not in lines[name].split("=", 1)[1])
    assert not uncommented, f"keys without a '#' comment on their line: {uncommented}"


def test_every_key_in_default_toml_is_a_field() -> None:
    parsed = tomllib.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))
    assert set(parsed) == set(_key_lines()), "default.toml has keys on lines the test misses"
    assert not sorted(set(parsed) - FIELDS), f"keys that are no field: {set(parsed) - FIELDS}"


def test_defaults_load_into_settings() -> None:
    s = load()
    parsed = tomllib.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))
    for key, value in parsed.items():
        got = getattr(s, key)
        expected = tuple(value) if isinstance(value, list) else value
        assert got == expected, f"{key}: {got!r} != default.toml's {value!r}"


def test_settings_are_frozen() -> None:
    s = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_pages = 3  # type: ignore[misc]
    assert s.replace(max_pages=3).max_pages == 3


# --- layering -----------------------------------------------------------------------------


def test_config_file_beats_defaults(tmp_path: Path) -> None:
    config = _write(tmp_path, 'max_pages = 5\nscope = "domain"\n')
    s = load(config)
    assert s.max_pages == 5
    assert s.scope == "domain"
    assert s.concurrency == load().concurrency  # keys the file leaves out keep their default


def test_overrides_beat_config_file(tmp_path: Path) -> None:
    config = _write(tmp_path, "max_pages = 5\nper_host = 3\n")
    s = load(config, {"max_pages": 7})
    assert s.max_pages == 7
    assert s.per_host == 3


def test_overrides_without_config_file() -> None:
    assert load(None, {"delay": 1.5}).delay == 1.5


def test_int_is_accepted_for_a_float_key_and_becomes_float(tmp_path: Path) -> None:
    s = load(_write(tmp_path, "timeout = 5\n"))
    assert s.timeout == 5.0
    assert isinstance(s.timeout, float)


def test_list_keys_become_tuples(tmp_path: Path) -> None:
    s = load(_write(tmp_path, 'deny = ["\\\\.pdf$", "/private/"]\n'))
    assert s.deny == (r"\.pdf$", "/private/")


def test_progress_accepts_auto_true_and_false() -> None:
    for value in ("auto", True, False):
        assert load(None, {"progress": value}).progress == value


# --- errors that name the key -------------------------------------------------------------


def test_unknown_key_names_the_key_and_suggests_the_close_one(tmp_path: Path) -> None:
    message = _error("max_page = 5\n", tmp_path)
    assert "max_page" in message
    assert "did you mean 'max_pages'" in message
    assert str(tmp_path / "crawl.toml") in message


def test_unknown_override_names_the_key() -> None:
    message = _error(per_hots=3)
    assert "per_hots" in message
    assert "per_host" in message


def test_every_bad_key_of_a_file_is_named_at_once(tmp_path: Path) -> None:
    message = _error('max_page = 5\ndelay = "slow"\nretries = -1\nper_host = 2\n', tmp_path)
    lines = message.splitlines()
    assert len(lines) == 3, message
    assert "max_page" in lines[0] and "did you mean 'max_pages'" in lines[0]
    assert lines[1].startswith("delay") and "'slow'" in lines[1]
    assert lines[2].startswith("retries")
    assert "per_host" not in message


def test_unknown_key_far_from_any_gives_no_hint(tmp_path: Path) -> None:
    message = _error("zzzzqqq = 1\n", tmp_path)
    assert "zzzzqqq" in message
    assert "did you mean" not in message


@pytest.mark.parametrize(
    ("key", "toml_value"),
    [
        ("fresh", '"yes"'),
        ("robots", "1"),
        ("max_pages", '"10"'),
        ("max_pages", "1.5"),
        ("max_pages", "true"),
        ("delay", '"fast"'),
        ("delay", "false"),
        ("user_agent", "42"),
        ("scope", "[]"),
        ("allow", '"^http"'),
        ("extractors", "[1, 2]"),
        ("progress", '"sometimes"'),
        ("headers", '"Accept-Language: en"'),
        ("headers", '{ "X-N" = 1 }'),
        ("auth", '["a:b"]'),
        ("verify_tls", '"no"'),
    ],
    ids=lambda v: str(v),
)
def test_wrong_type_names_the_key(tmp_path: Path, key: str, toml_value: str) -> None:
    message = _error(f"{key} = {toml_value}\n", tmp_path)
    assert message.startswith(key), message
    assert "expected" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("concurrency", 0), ("per_host", 0), ("max_pages", -1), ("max_depth", -2),
     ("delay", -0.5), ("timeout", 0), ("threads", 0), ("max_url_length", 3)],
)
def test_out_of_range_value_names_the_key(key: str, value: Any) -> None:
    message = _error(**{key: value})
    assert message.startswith(key), message
    assert "at least" in message
    assert repr(value) in message


@pytest.mark.parametrize(("key", "value"), [("scope", "world"), ("private_networks", "some")])
def test_bad_choice_names_the_key_and_the_choices(key: str, value: str) -> None:
    message = _error(**{key: value})
    assert message.startswith(key), message
    assert repr(value) in message
    assert "one of" in message


@pytest.mark.parametrize("key", ["max_runtime", "recrawl_after"])
def test_bad_duration_names_the_key(key: str) -> None:
    message = _error(**{key: "soon"})
    assert message.startswith(key), message
    assert "'soon'" in message


@pytest.mark.parametrize("key", ["allow", "deny"])
def test_bad_regex_names_the_key_and_the_pattern(key: str) -> None:
    message = _error(**{key: ["ok", "(unclosed"]})
    assert message.startswith(key), message
    assert "(unclosed" in message


@pytest.mark.parametrize("spec", ["no_colon", "pkg.mod:", ":fn", "pkg mod:fn", "a:b:c"])
@pytest.mark.parametrize("key", ["extractors", "sinks"])
def test_bad_plugin_spec_names_the_key(key: str, spec: str) -> None:
    message = _error(**{key: [spec]})
    assert message.startswith(key), message
    assert repr(spec) in message


def test_good_plugin_spec_is_accepted() -> None:
    s = load(None, {"extractors": ["tests.plugins.extractors:h1_count"]})
    assert s.extractors == ("tests.plugins.extractors:h1_count",)


def test_bad_frontier_url_names_the_key() -> None:
    assert _error(frontier="http://localhost:6379").startswith("frontier")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message = _error("max_pages = = 3\n", tmp_path)
    assert str(tmp_path / "crawl.toml") in message
    assert "TOML" in message


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        load(missing)
    assert str(missing) in str(info.value)


def test_defaults_file_missing_a_key_is_an_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    partial = _write(tmp_path, 'out = "data"\n', name="default.toml")
    monkeypatch.setattr(settings_module, "DEFAULTS_FILE", partial)
    with pytest.raises(ConfigError) as info:
        load()
    assert "max_pages" in str(info.value)


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45m", 2700.0), ("6h", 21600.0), ("2d", 172800.0), ("1.5s", 1.5), ("30", 30.0),
     ("0", 0.0), ("250ms", 0.25), (" 10 m ", 600.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "max_runtime") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "", "-5m", "5 minutes", "1w", "m", "1.s"])
def test_parse_duration_refuses_and_names_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "recrawl_after")
    assert str(info.value).startswith("recrawl_after")


def test_duration_properties_are_seconds() -> None:
    s = load(None, {"max_runtime": "45m", "recrawl_after": "2d"})
    assert s.max_runtime_s == 2700.0
    assert s.recrawl_after_s == 172800.0


def test_a_redis_cluster_frontier_names_host_port_pairs() -> None:
    assert load(None, {"frontier": "redis-cluster://10.0.0.1:7000,10.0.0.2:7001"}).frontier
    assert _error(frontier="redis-cluster://10.0.0.1").startswith("frontier")
    assert _error(frontier="redis-cluster://").startswith("frontier")
