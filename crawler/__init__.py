"""A web crawler on the mixed concurrency pattern: asyncio for the network, processes for
parsing, threads for blocking clients.

What one page goes through, one module a step, each handing down to the next:

1. `seeds`      read the seed URLs, refusing bad lines before any request
2. `frontier`   queue, dedup and per-run state of every URL (SQLite, or Redis when shared);
                `lease` hands the engine a batch of `Request`s
3. `scheduler`  the lease buffer: `ready()` returns the requests whose host may start one now
4. `politeness` the one per-host gate, `HostSlot` (concurrency, Retry-After, the pace: one
                rule for delay, throttle and back-off), made by one factory; a fleet's slots
                are also the fleet's
5. `fetch`      aiohttp on the event loop: address checks, `robots`, retries and redirects,
                each attempt through the host's slot; `decoding` undoes Content-Encoding
                under the byte limit; gives one `Response` or a `FetchError`
6. `parse`      in the process pool: encoding, lxml, links, text, simhash, extractor plugins
                (`plugins` loads them by name); the main process never imports it
7. `recorder`   the engine's one frozen `Finished` value per URL (its records built there,
                once); each flush has the frontier `prepare` the batch (which links are new,
                which page is a near duplicate), writes `records`, the links file and `warc`,
                `commit`s with the journal, then the pages and errors files and the `sinks`
8. `stats`      counters, loop lag and pool time, written to stats.json
9. `reader`     read the records back (the public API below)
10. `report`    the `crawl-report` command: `summary` counts a run, `htmlreport` and `charts`
                draw report.html

`engine` owns the tasks of steps 2 to 7 on one event loop (one `TaskGroup`: a task per URL,
the flush timer, the sitemap readers, which `sitemaps` admits through the recorder);
`runner` builds the stages for one invocation and ends the run; `fleet` is what the workers
of a shared frontier share besides the queue (host slots, robots.txt, dead workers' files);
`cli` is the `crawl` command.
"""

from .reader import read_content, read_errors, read_links, read_pages

__all__ = ["read_content", "read_errors", "read_links", "read_pages"]
__version__ = "0.1.0"
