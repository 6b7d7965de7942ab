"""`python -m crawler SEEDS`, the same as `crawl SEEDS`."""

from .cli import main

main()
