"""Plain data passed between the stages; everything here pickles for the process pool."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any, overload


@dataclass(frozen=True, slots=True)
class Request:
    """A URL leased from the frontier, with what the frontier knows of its last fetch."""

    url: str
    depth: int
    referrer: str | None
    # validators and results of the last full fetch, for conditional requests on recrawl
    etag: str | None = None
    last_modified: str | None = None
    last_status: int | None = None
    sha256: str | None = None
    simhash: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """The last hop of a fetch: what the parse stage and the page record need."""

    url: str  # as requested (normalized)
    final_url: str  # after the redirects that were followed
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined by ", "
    body: bytes  # decoded per Content-Encoding
    elapsed_ms: int
    attempts: int
    fetched_at: str  # ISO 8601 UTC with a Z
    location: str | None = None  # absolute redirect target not followed
    # the last hop's request headers as sent (names as sent, in order), for the WARC file
    request_headers: tuple[tuple[str, str], ...] = ()
    # the response headers as received (names in their case, repeats apart), for the WARC file
    raw_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ParseInput:
    """What crosses into a parse process: bytes and strings only."""

    url: str  # final URL, the base for relative links
    status: int
    content_type: str | None  # media type without parameters
    charset: str | None  # from the Content-Type header
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Link:
    """One outlink as the parser saw it; `refused` says why it may not be followed."""

    to: str
    text: str
    nofollow: bool
    refused: str | None = None  # None, or a reason: "scope", "deny", "length", "scheme", ...


class Links(Sequence[Link]):
    """A page's outlinks, in document order, as four columns: what a parse process sends
    back, where four lists pickle in C and an object a link is rebuilt in Python (a page of
    60 links: 100 us there and back against 28). `links[i]` and iteration give `Link`s; the
    engine and the recorder read the columns."""

    __slots__ = ("nofollow", "refused", "text", "to")

    def __init__(self, to: list[str] | None = None, text: list[str] | None = None,
                 nofollow: list[bool] | None = None,
                 refused: list[str | None] | None = None) -> None:
        self.to = to if to is not None else []
        self.text = text if text is not None else []
        self.nofollow = nofollow if nofollow is not None else []
        self.refused = refused if refused is not None else []

    def __len__(self) -> int:
        return len(self.to)

    @overload
    def __getitem__(self, index: int) -> Link: ...
    @overload
    def __getitem__(self, index: slice) -> Links: ...
    def __getitem__(self, index: int | slice) -> Link | Links:
        if isinstance(index, slice):
            return Links(self.to[index], self.text[index], self.nofollow[index],
                         self.refused[index])
        return Link(self.to[index], self.text[index], self.nofollow[index], self.refused[index])

    def __iter__(self) -> Iterator[Link]:
        return map(Link, self.to, self.text, self.nofollow, self.refused)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return list(self) == other  # as the list of `Link`s it stands for
        if not isinstance(other, Links):
            return NotImplemented
        return (self.to, self.text, self.nofollow, self.refused) == (
            other.to, other.text, other.nofollow, other.refused)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        return repr(list(self))  # as the list of `Link`s it stands for

    def __reduce__(self) -> tuple[type[Links], tuple[list[str], list[str], list[bool],
                                                      list[str | None]]]:
        return Links, (self.to, self.text, self.nofollow, self.refused)


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What comes back from a parse process."""

    sha256: str
    is_html: bool
    title: str | None = None
    description: str | None = None
    lang: str | None = None
    canonical: str | None = None
    words: int | None = None
    simhash: str | None = None
    encoding: str | None = None
    links: Links = field(default_factory=Links)
    links_dropped: int = 0  # past max_links_per_page
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # an extractor that raised: logged, the page still counts
    content: str | None = None  # the main content (--extract), "" when none; None when off
    content_lang: str | None = None  # the declared language, else the content's detected one
    busy_s: float = 0.0  # time spent inside the worker

    def __reduce__(self) -> tuple[type[ParseResult], tuple[Any, ...]]:
        # rebuilt through __init__, not the slots dataclass's __setstate__ (which calls
        # fields() for every result)
        return ParseResult, _result_fields(self)


_result_fields = attrgetter(*(f.name for f in fields(ParseResult)))
