"""Scrapy's side of the bench: a link-following spider that records what the crawler records.

    scrapy runspider bench/scrapy_spider.py -a start=URL -O items.jsonl

Runs in its own virtual environment (bench/.venv-scrapy), with Scrapy's defaults but for
the settings below, chosen to match the crawler's: robots.txt obeyed, 64 requests in flight,
8 per host. Fields: url, status, title, links (all links found), words (visible text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

import scrapy  # type: ignore[import-not-found]
from scrapy.linkextractors import LinkExtractor  # type: ignore[import-not-found]

WORD = re.compile(r"\w+")
VISIBLE = "//body//text()[not(ancestor::script)][not(ancestor::style)]"


class BenchSpider(scrapy.Spider):  # type: ignore[misc]
    name = "bench"
    custom_settings: ClassVar[dict[str, Any]] = {
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": 64,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
        "LOG_LEVEL": "WARNING",
        "TELNETCONSOLE_ENABLED": False,
    }

    def __init__(self, start: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = [start]
        self.allowed_domains = ["127.0.0.1"]
        self.links = LinkExtractor()

    def parse(self, response: Any) -> Iterator[Any]:
        links = self.links.extract_links(response)
        words = len(WORD.findall(" ".join(response.xpath(VISIBLE).getall())))
        yield {"url": response.url, "status": response.status,
               "title": response.xpath("//title/text()").get(), "links": len(links),
               "words": words}
        for link in links:
            yield response.follow(link.url, callback=self.parse)
