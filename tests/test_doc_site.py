"""The real-markup corpus: nginx serves Django's documentation on loopback."""

from __future__ import annotations

import urllib.request

from tests.conftest import DocSite


def test_doc_site_serves_the_documentation(doc_site: DocSite) -> None:
    start = doc_site.log_size()
    with urllib.request.urlopen(doc_site.url("/index.html"), timeout=10) as answer:
        body = answer.read()
    assert answer.status == 200
    assert body == (doc_site.root / "index.html").read_bytes()
    assert doc_site.requests_since(start) == [("/index.html", 200)]
