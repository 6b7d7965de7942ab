"""Settings: `config/default.toml`, then `--config FILE`, then the command line; validated once."""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "default.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, key: str) -> float:
    """Seconds in `"45m"`, `"6h"`, `"2d"`, `"1.5s"` or a bare number of seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(
            f"{key}: {text!r} is not a duration (expected a number with s, m, h or d, e.g. '45m')"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting; the one home of their defaults and comments is `config/default.toml`."""

    out: str
    job: str
    fresh: bool
    warc: bool
    max_pages: int
    max_depth: int
    max_pages_per_host: int
    max_runtime: str
    max_bytes: int
    max_url_length: int
    max_links_per_page: int
    max_redirects: int
    concurrency: int
    per_host: int
    delay: float
    max_crawl_delay: float
    timeout: float
    connect_timeout: float
    read_timeout: float
    retries: int
    backoff: float
    max_retry_after: float
    throttle: bool
    throttle_target: float
    robots: bool
    user_agent: str
    follow_nofollow: bool
    sitemaps: bool
    scope: str
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    private_networks: str
    proxy: str
    cookies: bool
    headers: dict[str, str]
    auth: dict[str, str]
    verify_tls: bool
    ca_file: str
    recrawl_after: str
    frontier: str
    lease_timeout: float
    worker: str
    workers: int
    threads: int
    parse_timeout: float
    sink_queue: int
    near_duplicate_distance: int
    stats_interval: float
    extractors: tuple[str, ...]
    sinks: tuple[str, ...]
    extract: str
    progress: bool | str
    verbosity: int

    @property
    def max_runtime_s(self) -> float:
        return parse_duration(self.max_runtime, "max_runtime")

    @property
    def recrawl_after_s(self) -> float:
        return parse_duration(self.recrawl_after, "recrawl_after")

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_CHOICES = {
    "scope": ("host", "domain", "any"),
    "private_networks": ("seeds", "allow", "deny"),
    "extract": ("", "text", "markdown"),
}
# (least value) for numbers that must not go below it
_MINIMUM = {
    "max_pages": 0, "max_depth": -1, "max_pages_per_host": 0, "max_bytes": 1,
    "max_url_length": 16, "max_links_per_page": 0, "max_redirects": 0, "concurrency": 1,
    "per_host": 1, "delay": 0, "max_crawl_delay": 0, "timeout": 0.001, "connect_timeout": 0.001,
    "read_timeout": 0.001, "retries": 0, "backoff": 0, "max_retry_after": 0, "lease_timeout": 1,
    "throttle_target": 0.01, "workers": 0, "threads": 1, "parse_timeout": 0.001, "sink_queue": 1,
    "near_duplicate_distance": 0, "stats_interval": 0.1, "verbosity": -1,
}


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(Settings)}


def _check(key: str, value: Any, source: str) -> Any:
    """The value converted to the field's type, or a ConfigError naming key and value."""
    kind = _field_types()[key]
    where = f"{key} (in {source})"

    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{where}: expected {expected}, got {value!r}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise wrong("a string")
    elif kind == "tuple[str, ...]":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        value = tuple(value)
    elif kind == "dict[str, str]":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise wrong("a table of strings")
        value = dict(value)
    elif kind == "bool | str" and value not in (True, False, "auto"):
        raise wrong('true, false or "auto"')
    if key in _MINIMUM and value < _MINIMUM[key]:
        raise wrong(f"a value of at least {_MINIMUM[key]}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise wrong("one of " + ", ".join(repr(c) for c in _CHOICES[key]))
    return value


def read_toml(path: Path) -> dict[str, Any]:
    """One TOML settings file, or a ConfigError that names the file."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"settings file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def load(config_file: str | os.PathLike[str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults < config file < overrides (the command line's options that were given)."""
    values = read_toml(DEFAULTS_FILE)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_file is not None:
        layers.append((str(config_file), read_toml(Path(config_file))))
    if overrides:
        layers.append(("the command line", overrides))
    known = _field_types()
    missing = sorted(set(known) - set(values))
    if missing:
        raise ConfigError(f"{DEFAULTS_FILE} lacks the key(s) {', '.join(missing)}")
    problems: list[str] = []  # every bad key at once, so a file is mended in one go
    for source, layer in [(str(DEFAULTS_FILE), dict(values)), *layers]:
        for key, value in layer.items():
            if key not in known:
                problems.append(f"unknown setting {key!r} in {source}{_close_key(key, known)}")
                continue
            try:
                values[key] = _check(key, value, source)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    settings = Settings(**values)
    _check_relations(settings)
    if settings.ca_file:  # read from the current directory, whatever happens to it later
        from .transport import check_ca_file

        settings = settings.replace(ca_file=check_ca_file(settings.ca_file))
    return settings


def _close_key(key: str, known: Mapping[str, str]) -> str:
    import difflib

    close = difflib.get_close_matches(key.replace("-", "_"), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_access(s: Settings) -> None:
    from .transport import check_headers, parse_auth, parse_proxy

    if s.proxy:
        parse_proxy(s.proxy, "proxy")
    parse_auth(s.auth)
    check_headers(s.headers)


def _check_relations(s: Settings) -> None:
    _check_access(s)
    s.max_runtime_s  # noqa: B018 -- validates the duration's syntax now, not mid-crawl
    s.recrawl_after_s  # noqa: B018
    for key in ("allow", "deny"):
        for pattern in getattr(s, key):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{key}: {pattern!r} is not a valid regex: {exc}") from None
    if s.frontier and not s.frontier.startswith(("redis://", "rediss://", "unix://",
                                                 "redis-cluster://")):
        raise ConfigError("frontier: expected empty, a redis:// URL or redis-cluster://HOST:PORT"
                          f"[,HOST:PORT...], got {s.frontier!r}")
    if s.frontier.startswith("redis-cluster://") and not re.fullmatch(
            r"redis-cluster://[^,/:]+:\d+(,[^,/:]+:\d+)*/?", s.frontier):
        raise ConfigError("frontier: a Redis Cluster is named redis-cluster://HOST:PORT"
                          f"[,HOST:PORT...], got {s.frontier!r}")
    if s.worker and not re.fullmatch(r"[\w.\-]+", s.worker):
        raise ConfigError(f"worker: {s.worker!r} is not a usable file-name part "
                          "(letters, digits, '.', '-' and '_')")
    for key in ("extractors", "sinks"):
        for spec in getattr(s, key):
            if not re.fullmatch(r"[\w.]+:[\w]+", spec):
                raise ConfigError(f"{key}: {spec!r} is not of the form 'package.module:function'")
