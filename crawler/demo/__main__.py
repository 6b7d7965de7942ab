"""`python -m crawler.demo [--out DIR]`: serve the sample site, crawl it, report on it.

Works with no network at all: the site is served on 127.0.0.1 on a free port, the crawl is
the real `crawl` command (`python -m crawler`) in a subprocess, and the report is read from
what that crawl wrote to `OUT/demo/`. The exit status is the crawl's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from crawler import report
from crawler.demo.server import start

JOB = "demo"
_STOP_WAIT_S = 30.0


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the crawl's exit status (or 2 when there is nothing to report)."""
    parser = argparse.ArgumentParser(
        prog="python -m crawler.demo",
        description="Serve the bundled sample site on 127.0.0.1, crawl it, print the summary "
        "and write report.html.",
    )
    parser.add_argument(
        "--out", default="data", type=Path, help="output root (default: data); the job is 'demo'"
    )
    args = parser.parse_args(argv)
    try:
        status = asyncio.run(_serve_and_crawl(args.out))
    except KeyboardInterrupt:
        return 130
    job = args.out / JOB
    try:
        summary = report.summarize(job)
    except (OSError, ValueError) as exc:
        print(f"demo: no report: {exc}", file=sys.stderr)
        return status or 2
    if not summary["pages"] and not summary["errors"]:
        print(f"demo: no report: {summary['run_dir']} has no records", file=sys.stderr)
        return status or 2
    report.print_summary(summary)
    path = report.write_html(Path(summary["run_dir"]), summary)
    print(f"report: {path}")
    return status


async def _serve_and_crawl(out: Path) -> int:
    runner, origin = await start()
    try:
        print(f"demo: serving the sample site at {origin}/", flush=True)
        with tempfile.TemporaryDirectory(prefix="crawler-demo-") as tmp:
            seeds = Path(tmp) / "seeds.txt"
            await asyncio.to_thread(seeds.write_text, f"{origin}/\n", encoding="utf-8")
            command = [
                *(sys.executable, "-m", "crawler", str(seeds)),
                *("--out", str(out), "--job", JOB, "--fresh", "--no-progress"),
            ]
            crawl = await asyncio.create_subprocess_exec(*command)
            try:
                return await crawl.wait()
            except asyncio.CancelledError:
                # Ctrl-C reached the crawl too (same process group): give it time to save
                # its state while the site is still up, then make sure it is gone.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(crawl.wait(), _STOP_WAIT_S)
                if crawl.returncode is None:
                    crawl.kill()
                    await crawl.wait()
                raise
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
