"""The bundled sample site and `python -m crawler.demo`, which serves, crawls and reports it."""
