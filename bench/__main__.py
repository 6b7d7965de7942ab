"""`python -m bench`: generate the site, serve it with nginx, run each contender, report.

Contenders run one after another on the identical site, each inside `bench.measure`; the
repeats are interleaved (all contenders once, then again), so that a burst of load on the
machine does not fall on one contender's runs alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler.reader import read_stats

from . import report, site
from .contenders import CONTENDERS, JOB, REPO, Contender, Context, cpu_between
from .measure import machine_busy_seconds
from .nginx import Nginx, free_port

DEFAULT_RESULTS = REPO / "bench" / "results" / "latest.json"
HUB_PAGES = 1000  # the hub run: the index page and the site's pages behind it, this many


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _measured(command: list[str], work: Path) -> dict[str, Any]:
    """Run `command` under bench.measure, its output in `work`; the measurement."""
    result = work / "measure.json"
    with (work / "stdout.txt").open("wb") as out, (work / "stderr.txt").open("wb") as err:
        subprocess.run([sys.executable, "-m", "bench.measure", str(result), "--", *command],
                       cwd=REPO, stdout=out, stderr=err, check=False)
    if not result.exists():
        raise RuntimeError(f"bench.measure wrote nothing; see {work / 'stderr.txt'}")
    measured: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    return measured


def run_one(ctx: Context, contender: Contender, work: Path, server: Nginx) -> dict[str, Any]:
    work.mkdir(parents=True)
    offset = server.log_size()
    server_cpu, machine_cpu = server.cpu_seconds(), machine_busy_seconds()
    row = _measured(contender.command(ctx, work), work)
    if row["wall_s"]:
        # what else had the cores: nginx serving the pages, and everything on the machine
        row["server_cpu_pct"] = round(100 * (server.cpu_seconds() - server_cpu) / row["wall_s"], 1)
        row["machine_cpu_pct"] = round(100 * (machine_busy_seconds() - machine_cpu)
                                       / row["wall_s"], 1)
    requests = server.requests_since(offset)
    prefix = ctx.manifest.disallowed_prefix
    row["requests"] = len(requests)
    row["disallowed_fetched"] = sum(uri.startswith(prefix) for uri, _ in requests)
    row["expected"] = len(ctx.manifest.expected)
    row["found"] = 0
    if row["returncode"] == 0:
        found = contender.found(ctx, work)
        row["found"] = found.pages
        row.update(found.info)
    else:
        tail = (work / "stderr.txt").read_text(errors="replace")[-1500:]
        row["stderr_tail"] = tail
        _log(f"  {contender.name} exited {row['returncode']}:\n{tail}")
    row["pages_per_s"] = round(row["found"] / row["wall_s"], 2) if row["wall_s"] else 0.0
    row["cpu_pct"] = round(100 * row["cpu_s"] / row["wall_s"], 1) if row["wall_s"] else 0.0
    # while pages wait: from the first page fetched to the last, start-up and shut-down aside
    series = row.pop("cpu_series", [])
    if row.get("crawling_from") is not None:
        row["cpu_pct_crawling"] = cpu_between(series, row["crawling_from"], row["crawling_to"])
    return row


def run_frontier(ctx: Context, urls: int, work: Path) -> dict[str, Any]:
    """The crawler alone, on hubs that lead to `urls` URLs: peak memory with a big frontier."""
    start, fetch = site.generate_frontier(ctx.root, urls)
    work.mkdir(parents=True)
    seeds = work / "seeds.txt"
    seeds.write_text(ctx.origin + start + "\n", encoding="utf-8")
    # past the hubs: leaves leased while the last hubs are in flight answer 404, and fast: with
    # 256 to spare a 10 000 000-URL run once fetched 261 of them before its last 5 hubs
    max_pages = fetch + max(256, min(4096, urls // 1000))
    crawl = str(Path(ctx.python).with_name("crawl"))
    row = _measured([crawl, str(seeds), "--out", str(work / "out"), "--job", JOB, "--fresh",
                     "--no-progress", "-q", "--max-pages", str(max_pages)], work)
    row["max_pages"] = max_pages
    if row["returncode"] != 0:
        row["discovered"] = 0
        row["stderr_tail"] = (work / "stderr.txt").read_text(errors="replace")[-1500:]
        return row
    stats = read_stats(work / "out" / JOB)
    row["discovered"] = stats["pages"] + stats["errors"] + stats["frontier_left"]
    row["pages"] = stats["pages"]
    row["loop_lag_p99_ms"] = stats["loop_lag_ms"]["p99"]
    return row


def run_hub(ctx: Context, links: int, work: Path) -> dict[str, Any]:
    """The crawler alone, seeded with one page of `links` anchors into the site, crawling on
    from it: the loop lag around a page whose links it takes in all at once."""
    start = site.generate_hub(ctx.root, ctx.manifest, links)
    work.mkdir(parents=True)
    seeds = work / "seeds.txt"
    seeds.write_text(ctx.origin + start + "\n", encoding="utf-8")
    crawl = str(Path(ctx.python).with_name("crawl"))
    row = _measured([crawl, str(seeds), "--out", str(work / "out"), "--job", JOB, "--fresh",
                     "--no-progress", "-q", "--max-pages", str(HUB_PAGES)], work)
    row["links"] = links
    if row["returncode"] != 0:
        row["stderr_tail"] = (work / "stderr.txt").read_text(errors="replace")[-1500:]
        return row
    stats = read_stats(work / "out" / JOB)
    row["pages"] = stats["pages"]
    row["loop_lag_p99_ms"] = stats["loop_lag_ms"]["p99"]
    row["loop_lag_max_ms"] = stats["loop_lag_ms"]["max"]
    return row


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--pages", type=int, default=10_000, help="pages of the site (N)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender")
    parser.add_argument("--frontier", type=int, default=1_000_000,
                        help="URLs the frontier run discovers (0: no frontier run)")
    parser.add_argument("--hub", type=int, default=15_000,
                        help="links of the hub page the hub run starts from (0: no hub run)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated, of {', '.join(CONTENDERS)}")
    parser.add_argument("--seed", type=int, default=1, help="the site generator's seed")
    parser.add_argument("--sites", default=",".join(site.PROFILES),
                        help=f"comma-separated site profiles, of {', '.join(site.PROFILES)}")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the site and the outputs")
    args = parser.parse_args(argv)
    unknown = set(args.contenders.split(",")) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; known: {', '.join(CONTENDERS)}")
    bad = set(args.sites.split(",")) - set(site.PROFILES)
    if bad:
        parser.error(f"unknown site profiles {sorted(bad)}; known: {', '.join(site.PROFILES)}")
    if args.pages < site.MIN_PAGES or args.repeat < 1 or args.frontier < 0 or args.hub < 0:
        parser.error(f"need --pages >= {site.MIN_PAGES}, --repeat >= 1, --frontier >= 0, "
                     "--hub >= 0")
    return args


def run_site(args: argparse.Namespace, profile: str, tmp: Path,
             frontier_urls: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Every contender, `args.repeat` times interleaved, on one generated site of `profile`;
    then, with `args.hub`, the hub run, and when `frontier_urls`, the frontier run, on the
    same server."""
    names = args.contenders.split(",")
    port = free_port()
    root = tmp / profile / "site"
    _log(f"generating {args.pages} pages of the {profile!r} profile (seed {args.seed}) in {root}")
    manifest = site.generate(root, args.pages, port, args.seed, profile)
    server = Nginx(root, port, tmp / profile / "nginx")
    server.start()
    ctx = Context(root, server.origin, manifest)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    frontier = hub = None
    # before the frontier run, whose hubs go into the same folder
    site_bytes = sum(f.stat().st_size for f in root.rglob("*.html"))
    links_per_page = site.links_per_page(root)
    try:
        for repeat in range(1, args.repeat + 1):
            for name in names:
                work = tmp / profile / f"{name}-{repeat}"
                row = run_one(ctx, CONTENDERS[name], work, server)
                runs[name].append(row)
                _log(f"[{profile} {repeat}/{args.repeat}] {name}: {row['found']}/"
                     f"{row['expected']} pages, {row['wall_s']:.1f} s, "
                     f"{row['pages_per_s']:.1f} pages/s, {row['peak_rss_mb']:.0f} MB, "
                     f"CPU {row['cpu_pct']:.0f}%" + (
                         f" ({row['cpu_pct_crawling']:.0f}% while crawling)"
                         if row.get("cpu_pct_crawling") is not None else "")
                     + f", nginx {row.get('server_cpu_pct', 0):.0f}%, the machine "
                       f"{row.get('machine_cpu_pct', 0):.0f}% of {100 * (os.cpu_count() or 1)}%")
                if not args.keep:
                    shutil.rmtree(work, ignore_errors=True)
        if args.hub:
            hub = run_hub(ctx, args.hub, tmp / profile / "hub")
            _log(f"hub run: a page of {args.hub:,} links, then {hub.get('pages', 0):,} pages, "
                 f"loop lag p99 {hub.get('loop_lag_p99_ms')} ms, "
                 f"max {hub.get('loop_lag_max_ms')} ms")
        if frontier_urls:
            _log(f"frontier run: discovering {frontier_urls:,} URLs")
            frontier = run_frontier(ctx, frontier_urls, tmp / "frontier")
            _log(f"frontier: {frontier['discovered']:,} URLs, peak RSS "
                 f"{frontier['peak_rss_mb']:.0f} MB, {frontier['wall_s']:.1f} s")
    finally:
        server.stop()
    medians = {name: report.summarize(rows) for name, rows in runs.items()}
    report.add_ratios(medians)
    result = {"profile": profile,
              "site_bytes": site_bytes, "links_per_page": links_per_page,
              "medians": medians, "targets": report.targets(medians, frontier, hub),
              "hub": hub, "runs": runs}
    return result, frontier


def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    sites: dict[str, Any] = {}
    frontier = None
    for i, profile in enumerate(args.sites.split(",")):
        sites[profile], ran = run_site(args, profile, tmp, args.frontier if i == 0 else 0)
        frontier = frontier or ran
    return {
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": report.machine(),
        "load_average_before": load_before,
        "params": {"pages": args.pages, "repeat": args.repeat, "seed": args.seed,
                   "frontier": args.frontier, "hub": args.hub,
                   "contenders": args.contenders.split(","),
                   "sites": list(sites)},
        "sites": sites,
        "frontier": frontier,
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: nginx is stopped and the temporary folder removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    tmp = Path(tempfile.mkdtemp(prefix="crawl-bench-"))
    tmp.chmod(0o755)  # nginx's worker (user nobody, when started by root) reads the site
    start = time.monotonic()
    try:
        results = bench(args, tmp)
    except RuntimeError as exc:
        _log(f"bench: {exc}")
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    results["bench_s"] = round(time.monotonic() - start, 1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    m = results["machine"]
    print(f"\n{args.pages:,} pages, medians of {args.repeat} runs; {m['cores']} cores "
          f"({m['cpu']}), {m['memory_gb']} GB, Python {m['python']}, Scrapy {m['scrapy']}, "
          f"{m['nginx']}\n")
    for profile, one in results["sites"].items():
        print(f"site {profile!r}: {one['links_per_page']:.0f} links a page, "
              f"{one['site_bytes'] / 2**20:,.0f} MB of HTML\n")
        print(report.table(one["medians"]))
        print()
        print(report.targets_text(one["targets"]))
        print()
    print(f"results: {args.results}" + (f"; kept {tmp}" if args.keep else ""))
    failed = sum(row["failed"] for one in results["sites"].values()
                 for row in one["medians"].values())
    frontier_failed = results["frontier"] is not None and results["frontier"]["returncode"]
    return 1 if failed or frontier_failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
