"""robots.txt groups by RFC 9309: matched on the product token (2.2.1), ended only by a
user-agent line after rules (2.2.4). The examples of RFC 9309 section 5 and the cases of
issue 11, where protego alone picked the wrong group."""

from __future__ import annotations

import pytest

from crawler.robots import product_token, rules_from

UA = "crawler/0.1 (+https://github.com/crawler-project/crawler)"  # config/default.toml
SITE = "http://site.test"

# RFC 9309 5.1, "Simple Example"
RFC_5_1 = b"""\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
"""

# RFC 9309 5.2, "Longest Match"
RFC_5_2 = b"""\
User-Agent: foobot
Allow: /example/page/
Disallow: /example/page/disallowed.gif
"""

# RFC 9309 2.2.1: two groups for one product token are merged
RFC_2_2_1 = b"""\
user-agent: ExampleBot
disallow: /foo
disallow: /bar

user-agent: ExampleBot
disallow: /baz
"""

# (user agent, robots.txt, path, allowed)
RFC_CASES = [
    ("foobot/1.0", RFC_5_1, "/example/page.html", True),
    ("foobot/1.0", RFC_5_1, "/example/allowed.gif", True),
    ("foobot/1.0", RFC_5_1, "/example/other.html", False),
    ("foobot/1.0", RFC_5_1, "/publications/", False),
    ("barbot", RFC_5_1, "/example/page.html", False),
    ("bazbot", RFC_5_1, "/example/page.html", False),
    ("bazbot", RFC_5_1, "/example/other.html", True),
    ("quxbot", RFC_5_1, "/example/page.html", True),  # an empty group: no rules, not `*`
    ("otherbot", RFC_5_1, "/example/page.html", False),
    ("otherbot", RFC_5_1, "/images/a.gif", False),
    ("otherbot", RFC_5_1, "/publications/a.gif", True),  # the longer allow wins
    ("otherbot", RFC_5_1, "/publications/a.html", True),
    ("FooBot", RFC_5_2, "/example/page/", True),  # matched case-insensitively
    ("foobot", RFC_5_2, "/example/page/disallowed.gif", False),
    ("ExampleBot/2", RFC_2_2_1, "/foo", False),
    ("ExampleBot/2", RFC_2_2_1, "/baz", False),
    ("ExampleBot/2", RFC_2_2_1, "/qux", True),
]


@pytest.mark.parametrize(("agent", "body", "path", "allowed"), RFC_CASES)
def test_rfc_9309_examples(agent: str, body: bytes, path: str, allowed: bool) -> None:
    assert rules_from(200, body, agent).allows(SITE + path, agent) is allowed


def test_product_token_is_the_leading_letters_of_the_user_agent() -> None:
    assert product_token(UA) == "crawler"
    assert product_token("Foo_Bar-bot/2.0 (compatible)") == "foo_bar-bot"
    assert product_token("") == ""


# (robots.txt, path, allowed for UA)
ISSUE_CASES = [
    # groups named after words of the header, or a prefix of the token, are not ours
    ("User-agent: github\nDisallow: /\n", "/x", True),
    ("User-agent: https\nDisallow: /\n", "/x", True),
    ("User-agent: crawl\nDisallow: /\n", "/x", True),
    ("User-agent: crawler-project\nDisallow: /\n\nUser-agent: crawler\nAllow: /\n", "/x", True),
    ("User-agent: crawler-project\nAllow: /\n\nUser-agent: crawler\nDisallow: /\n", "/x", False),
    ("User-agent: Crawler/2.0\nDisallow: /x\n", "/x", False),  # the value's token counts
    ("User-agent: *\nDisallow: /\n\nUser-agent: crawler\nDisallow: /private\n", "/x", True),
    # a group is not ended by an unknown line, a crawl-delay or a sitemap line (2.2.4)
    ("User-agent: crawler\nFoo: bar\nUser-agent: other\nDisallow: /private\n", "/private",
     False),
    ("User-agent: crawler\nCrawl-delay: 3\nUser-agent: other\nDisallow: /private\n",
     "/private", False),
    ("User-agent: crawler\nSitemap: http://site.test/s.xml\nUser-agent: other\n"
     "Disallow: /private\n", "/private", False),
    # ...but a user-agent line after a rule does
    ("User-agent: crawler\nDisallow: /a\nUser-agent: other\nDisallow: /private\n", "/private",
     True),
]


@pytest.mark.parametrize(("body", "path", "allowed"), ISSUE_CASES)
def test_groups_are_matched_on_the_product_token_only(body: str, path: str,
                                                      allowed: bool) -> None:
    assert rules_from(200, body.encode(), UA).allows(SITE + path, UA) is allowed


def test_crawl_delay_and_sitemaps_of_a_group_ended_late() -> None:
    body = (b"User-agent: crawler\nCrawl-delay: 3\nSitemap: http://site.test/s.xml\n"
            b"User-agent: other\nDisallow: /private\n\nUser-agent: *\nCrawl-delay: 9\n")
    rules = rules_from(200, body, UA)
    assert rules.crawl_delay == 3.0
    assert rules.sitemaps == ("http://site.test/s.xml",)
    assert rules_from(200, body, "somebot").crawl_delay == 9.0
