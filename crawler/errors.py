"""The exception tree: every error the crawler raises on purpose.

    CrawlError                  anything the crawler reports to its user
    ├── UsageError              bad command line, settings or seeds: exit 2
    │   ├── ConfigError         a settings key or value (names the key)
    │   ├── SeedError           seed lines (names every bad line)
    │   └── OutputError         an output folder that cannot be written (names the path)
    ├── LockedError             another run holds the job's lock: exit 3
    ├── FrontierUnavailable     the shared frontier stayed unreachable (or lost the
    │                           worker's leases): the crawl stops, exit 1
    └── FetchError              one URL given up on; becomes an error record
        ├── FetchTimeout        kind "timeout"
        ├── FetchConnection     kind "connection"
        │   └── ProxyFailure    the proxy itself refused or could not be reached
        ├── FetchTLS            kind "tls": a failed handshake or certificate
        ├── TooLarge            kind "too_large"
        ├── RedirectError       kind "redirects"
        ├── ContentError        kind "content"
        └── Blocked             kind "other": an address the settings forbid

Control flow that is not an error (a robots.txt refusal, a stop request) is not in this
tree: see `Disallowed` in the fetch module.
"""

from __future__ import annotations


class CrawlError(Exception):
    """Root of the crawler's own errors; `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(CrawlError):
    exit_code = 2


class ConfigError(UsageError):
    """A settings key with a bad value; the message names the key."""


class SeedError(UsageError):
    """Bad seed lines; `problems` holds `(line_number, message)` pairs."""

    def __init__(self, source: str, problems: list[tuple[int, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  line {n}: {msg}" for n, msg in problems)
        super().__init__(f"{source}: {len(problems)} bad seed line(s):\n{lines}")


class OutputError(UsageError):
    """The output root or job folder cannot be created or written."""


class LockedError(CrawlError):
    exit_code = 3


class FrontierUnavailable(CrawlError):
    """The shared frontier's Redis stayed unreachable past the bound, or this worker's leases
    expired: the crawl's failure, not a URL's; exit 1 with the server named."""


class FetchError(CrawlError):
    """One URL given up on; `kind` is the error record's kind."""

    kind = "other"

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class FetchTimeout(FetchError):
    kind = "timeout"


class FetchConnection(FetchError):
    kind = "connection"


class ProxyFailure(FetchConnection):
    """The proxy, not the site, failed: the message names the proxy (password masked)."""


class FetchTLS(FetchError):
    kind = "tls"


class TooLarge(FetchError):
    kind = "too_large"


class RedirectError(FetchError):
    kind = "redirects"


class ContentError(FetchError):
    kind = "content"


class Blocked(FetchError):
    kind = "other"


ERROR_KINDS = ("timeout", "connection", "tls", "too_large", "redirects", "content", "parse",
               "other")
