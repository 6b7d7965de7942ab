"""A web crawler on the mixed concurrency pattern: asyncio for the network, processes for
parsing, threads for blocking clients.

The data flow, one module a step:

1. `seeds`     read the seed URLs, refusing bad lines before any request
2. `frontier`  queue, dedup and per-run state of every URL (SQLite, or Redis when shared)
3. `fetch`     aiohttp on the event loop: politeness, `robots`, retries, redirects, limits;
              `decoding` undoes Content-Encoding under the byte limit
4. `parse`     in the process pool: encoding, lxml, links, text, simhash, extractor plugins
5. `sinks`     JSONL files through aiofiles, sink plugins behind a bounded queue; `warc`
6. `stats`     counters, loop lag and pool time, written to stats.json
7. `reader`    read the records back (the public API below)
8. `report`    the `crawl-report` command: `summary` counts a run, `htmlreport` and `charts`
               draw report.html

`engine` runs steps 2 to 5 on one event loop and `recorder` makes their outcomes durable;
`runner` builds the stages for one invocation and ends the run; `fleet` shares politeness
and robots.txt through Redis; `cli` is the `crawl` command.
"""

from .reader import read_content, read_errors, read_links, read_pages

__all__ = ["read_content", "read_errors", "read_links", "read_pages"]
__version__ = "0.1.0"
