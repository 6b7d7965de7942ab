"""`make bench`: this crawler against Scrapy, naive crawlers and a parse-only ceiling."""
