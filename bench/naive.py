"""The crawler people write first: asyncio + aiohttp + BeautifulSoup, a queue and a seen-set.

    python -m bench.naive START_URL OUT.jsonl [--pool]

With `--pool` the parsing goes to a ProcessPoolExecutor through `run_in_executor`, the mixed
pattern of the usual tutorials. Either way it obeys robots.txt (protego), stays on the start
URL's host, and writes one line per page: url, status, title, links, words.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
from bs4 import BeautifulSoup
from protego import Protego

CONCURRENCY = 64
WORD = re.compile(r"\w+")


def analyse(url: str, status: int, body: bytes) -> tuple[dict[str, Any], list[str]]:
    """The page's record and its links, made absolute and without fragments."""
    soup = BeautifulSoup(body, "lxml")
    links = [urldefrag(urljoin(url, str(a["href"])))[0]
             for a in soup.find_all("a", href=True)]
    for hidden in soup(["script", "style"]):
        hidden.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    words = len(WORD.findall(soup.get_text(" ")))
    return {"url": url, "status": status, "title": title, "links": len(links),
            "words": words}, links


async def crawl(start: str, out_path: str, pool: ProcessPoolExecutor | None) -> int:
    host = urlsplit(start).netloc
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()
    seen = {start}
    queue.put_nowait(start)
    pages = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:
        async with http.get(urljoin(start, "/robots.txt")) as resp:
            robots = Protego.parse(await resp.text() if resp.status == 200 else "")
        # naive on purpose: the toy writes its records from the event loop
        with open(out_path, "w", encoding="utf-8") as out:  # noqa: ASYNC230

            async def worker() -> None:
                nonlocal pages
                while True:
                    url = await queue.get()
                    try:
                        async with http.get(url) as resp:
                            body = await resp.read()
                            status = resp.status
                        if pool is not None:
                            record, links = await loop.run_in_executor(
                                pool, analyse, url, status, body)
                        else:
                            record, links = analyse(url, status, body)
                        out.write(json.dumps(record) + "\n")
                        pages += 1
                        for link in links:
                            if (link not in seen and urlsplit(link).netloc == host
                                    and robots.can_fetch(link, "*")):
                                seen.add(link)
                                queue.put_nowait(link)
                    except Exception as exc:  # one bad page must not stop the crawl
                        print(f"{url}: {exc!r}", file=sys.stderr)
                    finally:
                        queue.task_done()

            workers = [asyncio.create_task(worker()) for _ in range(CONCURRENCY)]
            await queue.join()
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
    return pages


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m bench.naive START_URL OUT.jsonl [--pool]", file=sys.stderr)
        return 2
    if "--pool" in argv[2:]:
        with ProcessPoolExecutor() as pool:
            asyncio.run(crawl(argv[0], argv[1], pool))
    else:
        asyncio.run(crawl(argv[0], argv[1], None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
