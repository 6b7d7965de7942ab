"""Shared fixtures: the hostile `site`, the `crawl` subprocess runner and output readers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests.site` must not be shadowed by the standard `site`
    sys.path.insert(0, str(ROOT))

from tests.site import BIG, LOG, ROBOTS, BigStream, Hit, RobotsConfig, make_site  # noqa: E402

CRAWL = Path(sys.executable).parent / "crawl"

PAGE_KEYS = frozenset({
    "url", "final_url", "status", "depth", "referrer", "fetched_at", "content_type", "bytes",
    "elapsed_ms", "attempts", "title", "description", "lang", "canonical", "words", "links",
    "sha256", "simhash", "near_duplicate_of", "changed", "not_modified", "location", "extra",
})
LINK_KEYS = frozenset({"from", "to", "text", "nofollow", "followed"})
ERROR_KEYS = frozenset({"url", "depth", "referrer", "kind", "message", "attempts", "at"})
ERROR_KINDS = frozenset({"timeout", "connection", "tls", "too_large", "redirects", "content",
                         "parse", "other"})
STATS_KEYS = frozenset({
    "job", "run_id", "started_at", "finished_at", "duration_s", "pages", "errors", "bytes",
    "pages_per_s", "status_counts", "robots_blocked", "out_of_scope", "duplicates", "retries",
    "frontier_left", "stop_reason", "new", "changed", "unchanged", "gone", "loop_lag_ms",
    "process_pool", "thread_pool",
})
RUN_ID_RE = re.compile(r"^\d{8}T\d{6}Z$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
HEX16_RE = re.compile(r"^[0-9a-f]{16}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


# --- the order tests start in ----------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, the rest after, each group in collection order.

    xdist hands tests out in this order, each process holding the one it runs and the next
    only (`--maxschedchunk 1` in pyproject.toml): a long test started last is the tail of the
    whole suite, so the long ones start while there are short ones left to fill the other
    processes around them. Every process collects the same order (the sort is stable and
    deterministic), as xdist requires.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# --- the site -------------------------------------------------------------------------------


class Site:
    """The running hostile site: URLs into it and what it has been asked."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"

    def url(self, path: str) -> str:
        return self.origin + path

    @property
    def log(self) -> list[Hit]:
        return self.app[LOG]  # type: ignore[no-any-return]

    @property
    def robots(self) -> RobotsConfig:
        return self.app[ROBOTS]  # type: ignore[no-any-return]

    @property
    def big_streams(self) -> list[BigStream]:
        return self.app[BIG]  # type: ignore[no-any-return]

    def paths(self) -> list[str]:
        return [hit.path_qs for hit in self.log]

    def requests_for(self, path_qs: str) -> list[Hit]:
        """Requests whose raw target is exactly `path_qs`."""
        return [hit for hit in self.log if hit.path_qs == path_qs]

    def count(self, path_qs: str) -> int:
        return len(self.requests_for(path_qs))

    def hosts(self) -> set[str]:
        return {hit.headers.get("host", "") for hit in self.log}


@pytest.fixture
async def site(aiohttp_server: Any) -> AsyncIterator[Site]:
    """The hostile site on 127.0.0.1 and a free port, fresh for each test."""
    app = make_site()
    server = await aiohttp_server(app, host="127.0.0.1", shutdown_timeout=0.5)
    yield Site(app, server.port)


# --- running the crawler --------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    pid: int
    seconds: float

    def __str__(self) -> str:
        return (f"exit {self.returncode} after {self.seconds:.1f}s\n--- stdout ---\n"
                f"{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}")


class Crawl:
    """A `crawl` subprocess started by `start_crawl`; `await wait()` for its Result.

    Its output goes to unnamed files, not pipes: parse processes orphaned by a `kill -9` keep
    inherited descriptors open, and a pipe would then never reach end-of-file.
    """

    def __init__(self, proc: asyncio.subprocess.Process, stdout: IO[bytes],
                 stderr: IO[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.started = time.monotonic()
        self._stdout, self._stderr = stdout, stderr

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def descendants(self) -> list[int]:
        """Process ids below the crawl (its parse pool, forkserver, resource tracker)."""
        found: list[int] = []
        todo = [self.pid]
        while todo:
            pid = todo.pop()
            for children in Path(f"/proc/{pid}/task").glob("*/children"):
                with contextlib.suppress(OSError):
                    kids = [int(k) for k in children.read_text().split()]
                    found.extend(kids)
                    todo.extend(kids)
        return found

    def _output(self) -> tuple[str, str]:
        texts = []
        for f in (self._stdout, self._stderr):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
            f.close()
        return texts[0], texts[1]

    async def wait(self, timeout: float = 60) -> Result:  # noqa: ASYNC109 -- kills the child
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            _, stderr = self._output()
            pytest.fail(f"crawl did not finish within {timeout}s\n{stderr[-3000:]}")
        assert self.proc.returncode is not None
        stdout, stderr = self._output()
        return Result(self.proc.returncode, stdout, stderr, self.pid,
                      time.monotonic() - self.started)


def reap(pids: Iterable[int]) -> list[int]:
    """Kill what is left of these processes (orphans of a killed crawl); the ones that were."""
    alive = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            alive.append(pid)
    return alive


def crawl_env(**extra: str) -> dict[str, str]:
    """The test's environment, with the repository root importable for the plugin modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("COLUMNS", None)
    env.update(extra)
    return env


async def start_crawl(*args: str | os.PathLike[str], stdin: bytes | None = None,
                      env: dict[str, str] | None = None,
                      command: Iterable[str] = (str(CRAWL),),
                      new_session: bool = False) -> Crawl:
    """Start `crawl ARGS` without blocking the loop that also runs the test site; with
    `new_session`, in a process group of its own, as a shell starts a job in a terminal."""
    # closed by Crawl.wait, which outlives this function
    stdout, stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
    proc = await asyncio.create_subprocess_exec(
        *command, *map(str, args),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=stdout, stderr=stderr, cwd=ROOT, env=env or crawl_env(),
        start_new_session=new_session,
    )
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        await proc.stdin.drain()
        proc.stdin.close()
    return Crawl(proc, stdout, stderr)


async def run_crawl(*args: str | os.PathLike[str], stdin: bytes | None = None,
                    timeout: float = 60,  # noqa: ASYNC109 -- on expiry the child is killed
                    env: dict[str, str] | None = None,
                    command: Iterable[str] = (str(CRAWL),)) -> Result:
    """Run `crawl ARGS` to its end; the caller passes `--out` and the speed options."""
    crawl = await start_crawl(*args, stdin=stdin, env=env, command=command)
    return await crawl.wait(timeout)


def fast(out: Path, *, timeout: float = 5, retries: int = 0) -> list[str]:
    """The options nearly every test wants: quiet, quick to give up, writing under `out`."""
    return ["--out", str(out), "--no-progress", "--timeout", str(timeout),
            "--retries", str(retries)]


async def wait_until(predicate: Any, timeout: float = 15,  # noqa: ASYNC109 -- fails the test
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def seeds_file(tmp_path: Path, *urls: str, name: str = "seeds.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
    return path


def config_file(tmp_path: Path, text: str, name: str = "crawl.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- reading what the crawler wrote ---------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of one part file; each must be a complete JSON object."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path}:{number} is not valid JSON ({exc}): {line[:200]!r}")
        assert isinstance(record, dict), f"{path}:{number} is not a JSON object"
        records.append(record)
    return records


@dataclass
class Run:
    dir: Path
    pages: list[dict[str, Any]]
    links: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    stats: dict[str, Any]

    def page(self, url: str) -> dict[str, Any]:
        found = [p for p in self.pages if p["url"] == url]
        assert len(found) == 1, f"expected one page record for {url}, got {len(found)}: " \
            f"{sorted(p['url'] for p in self.pages)}"
        return found[0]

    def error(self, url: str) -> dict[str, Any]:
        found = [e for e in self.errors if e["url"] == url]
        assert len(found) == 1, f"expected one error record for {url}, got {len(found)}: " \
            f"{[(e['url'], e.get('kind')) for e in self.errors]}"
        return found[0]

    def urls(self) -> list[str]:
        return [p["url"] for p in self.pages]


def run_dirs(out: Path, job: str) -> list[Path]:
    return sorted(p for p in (out / job / "runs").glob("*") if p.is_dir())


def load_run(out: Path, job: str, run_dir: Path | None = None) -> Run:
    """The job's only run folder (or `run_dir`), with every record and stats.json."""
    if run_dir is None:
        dirs = run_dirs(out, job)
        assert len(dirs) == 1, f"expected one run folder under {out / job / 'runs'}: {dirs}"
        run_dir = dirs[0]

    def part_files(pattern: str) -> list[dict[str, Any]]:
        return [r for f in sorted(run_dir.glob(pattern)) for r in read_jsonl(f)]

    stats_path = run_dir / "stats.json"
    assert stats_path.is_file(), f"no stats.json in {run_dir}: {sorted(run_dir.iterdir())}"
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    return Run(run_dir, part_files("pages*.jsonl"), part_files("links*.jsonl"),
               part_files("errors*.jsonl"), stats)


def complete_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """What a reader finds in these part files right now, a crawl still writing or killed:
    every complete line (a torn last one is skipped, as the resuming run cuts it)."""
    records = []
    for path in paths:
        if path.exists():
            for line in path.read_bytes().split(b"\n"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
    return records


def load_checked_run(out: Path, job: str = "seeds") -> Run:
    """`load_run`, with every page and error record held to the contract's shapes."""
    run = load_run(out, job)
    for record in run.pages:
        assert_page_shape(record)
    for record in run.errors:
        assert_error_shape(record)
    return run


# --- record shapes --------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def assert_page_shape(record: dict[str, Any]) -> None:
    """Exactly the contract's page keys, each of its type."""
    assert set(record) == PAGE_KEYS, (
        f"page record keys: missing {sorted(PAGE_KEYS - set(record))}, "
        f"unexpected {sorted(set(record) - PAGE_KEYS)}")
    for key in ("status", "depth", "attempts"):
        assert _is_int(record[key]), f"{key}={record[key]!r} is not an int"
    assert record["attempts"] >= 1
    assert _is_int(record["bytes"]) and record["bytes"] >= 0
    assert isinstance(record["elapsed_ms"], int | float) and record["elapsed_ms"] >= 0
    assert isinstance(record["url"], str) and isinstance(record["final_url"], str)
    for key in ("referrer", "content_type", "title", "description", "lang", "canonical",
                "near_duplicate_of", "location", "simhash"):
        assert _str_or_none(record[key]), f"{key}={record[key]!r}"
    assert isinstance(record["fetched_at"], str) and TIMESTAMP_RE.match(record["fetched_at"]), \
        f"fetched_at={record['fetched_at']!r} is not ISO 8601 UTC ending in Z"
    if record["content_type"] is not None:
        assert ";" not in record["content_type"], "content_type keeps its parameters"
    assert record["words"] is None or _is_int(record["words"])
    assert record["links"] is None or _is_int(record["links"])
    if record["sha256"] is not None:
        assert HEX64_RE.match(record["sha256"]), f"sha256={record['sha256']!r}"
    if record["simhash"] is not None:
        assert HEX16_RE.match(record["simhash"]), \
            f"simhash={record['simhash']!r} is not 16 lower-case hex digits"
    assert record["changed"] in (None, True, False)
    assert record["not_modified"] in (None, True, False)
    assert isinstance(record["extra"], dict)


def assert_link_shape(record: dict[str, Any]) -> None:
    assert set(record) == LINK_KEYS, f"link record keys: {sorted(record)}"
    assert isinstance(record["from"], str) and isinstance(record["to"], str)
    assert isinstance(record["text"], str) and len(record["text"]) <= 200
    assert record["text"] == record["text"].strip(), f"untrimmed text {record['text']!r}"
    assert isinstance(record["nofollow"], bool) and isinstance(record["followed"], bool)


def assert_error_shape(record: dict[str, Any]) -> None:
    assert set(record) == ERROR_KEYS, (
        f"error record keys: missing {sorted(ERROR_KEYS - set(record))}, "
        f"unexpected {sorted(set(record) - ERROR_KEYS)}")
    assert record["kind"] in ERROR_KINDS, f"kind={record['kind']!r}"
    assert isinstance(record["url"], str) and isinstance(record["message"], str)
    assert _is_int(record["depth"]) and _is_int(record["attempts"]) and record["attempts"] >= 1
    assert _str_or_none(record["referrer"])
    assert isinstance(record["at"], str) and TIMESTAMP_RE.match(record["at"]), \
        f"at={record['at']!r} is not ISO 8601 UTC ending in Z"


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr, str(result)
    assert "Traceback" not in result.stdout, str(result)


# --- a real redis-server for the shared frontier ----------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A `redis-server` child on 127.0.0.1 and a free port, with its files in `folder`.

    `make test` installs the server when it is missing; a machine without it fails here with
    a message, never a skip.
    """

    def __init__(self, folder: Path) -> None:
        import shutil
        import subprocess

        self._subprocess = subprocess
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("redis-server is not installed: run `make test`, which installs it")
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Any = None
        self.extra: list[str] = []

    def start(self, extra: Sequence[str] = ()) -> None:
        """Start (or restart, with the same `extra` arguments) the server on its port."""
        import redis

        if extra:
            self.extra = list(extra)
        self.proc = self._subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
             "--protected-mode", "no", *self.extra],
            stdout=self._subprocess.DEVNULL, stderr=self._subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits; `start` reads it again."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except self._subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterable[RedisServer]:
    """One redis-server for the session, stopped at its end, failed tests or not."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


DOC_ROOT = Path("/usr/share/doc/python-django-doc/html")


class DocSite:
    """Django's documentation (Debian's python-django-doc) served by nginx on loopback.

    Real markup, written by people for browsers: the corpus for tests of link resolution,
    near-duplicates and main-content extraction. `make docs` (a prerequisite of `make test`)
    installs the package; a machine without it fails here with a message, never a skip.
    """

    def __init__(self, server: Any) -> None:
        self._server = server
        self.root = DOC_ROOT
        self.origin = server.origin

    def url(self, path: str = "/") -> str:
        return self.origin + (path if path.startswith("/") else "/" + path)

    def log_size(self) -> int:
        return int(self._server.log_size())

    def requests_since(self, offset: int) -> list[tuple[str, int]]:
        """(request URI, status) of each request nginx logged after byte `offset` of its log."""
        return list(self._server.requests_since(offset))


@pytest.fixture(scope="session")
def doc_site(tmp_path_factory: pytest.TempPathFactory) -> Iterable[DocSite]:
    """One nginx for the session serving the documentation, stopped at its end."""
    from bench.nginx import Nginx

    if not (DOC_ROOT / "index.html").is_file():
        pytest.fail(f"{DOC_ROOT} is missing: run `make test`, which installs python-django-doc")
    prefix = tmp_path_factory.mktemp("nginx-docs")
    prefix.chmod(0o755)  # nginx's worker (user nobody, when started by root) writes its temp dirs
    server = Nginx(DOC_ROOT, free_port(), prefix)
    server.start()
    try:
        yield DocSite(server)
    finally:
        server.stop()


class RedisCluster:
    """A Redis Cluster of three masters on 127.0.0.1, each a `redis-server` child in `folder`.

    Started as an operator would: three `--cluster-enabled yes` servers with append-only files,
    joined with `redis-cli --cluster create` (no replicas), the hash slots split evenly.
    `url` names every node (`redis-cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`).
    """

    MASTERS = 3

    def __init__(self, folder: Path) -> None:
        import shutil

        self.folder = folder
        self.cli = shutil.which("redis-cli")
        self.nodes = [RedisServer(folder / f"node{i}") for i in range(self.MASTERS)]
        if self.cli is None:
            pytest.fail("redis-cli is not installed: run `make test`, which installs it")
        self.url = "redis-cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        import subprocess

        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            # the bus port is the client port + 10000 unless given: past 65535 for high ports
            node.start(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000", "--cluster-port", str(free_port())])
        subprocess.run(
            [str(self.cli), "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + 15
        while not all(self.cluster_ok(n) for n in self.nodes):
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def cluster_ok(self, node: RedisServer) -> bool:
        import subprocess

        info = subprocess.run([str(self.cli), "-p", str(node.port), "cluster", "info"],
                              capture_output=True, text=True, timeout=10).stdout
        return "cluster_state:ok" in info

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterable[RedisCluster]:
    """One three-master Redis Cluster for the session, stopped at its end, failed or not."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
