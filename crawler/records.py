"""The output records of contract section 3, built from plain data; keys always present."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from .models import ParseResult, Request, Response

Record = dict[str, Any]
_WORD = re.compile(r"\w+")

PAGE_KEYS = ("url", "final_url", "status", "depth", "referrer", "fetched_at", "content_type",
             "bytes", "elapsed_ms", "attempts", "title", "description", "lang", "canonical",
             "words", "links", "sha256", "simhash", "near_duplicate_of", "changed",
             "not_modified", "location", "extra")
LINK_KEYS = ("from", "to", "text", "nofollow", "followed")
ERROR_KEYS = ("url", "depth", "referrer", "kind", "message", "attempts", "at")
CONTENT_KEYS = ("url", "fetched_at", "title", "lang", "format", "content", "words")


def content_type(value: str | None) -> tuple[str | None, str | None]:
    """The media type without parameters, and the charset parameter, of a Content-Type."""
    if not value:
        return None, None
    media, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            charset = val.strip().strip("\"'") or None
    return media.strip().lower() or None, charset


def page_record(request: Request, response: Response, result: ParseResult | None,
                media_type: str | None) -> Record:
    """A page record; `result` is None for a 304, whose fields come from the last full fetch;
    `media_type` is the Content-Type's, as `content_type` read it for the parse."""
    not_modified = response.status == 304
    record: Record = {
        "url": request.url,
        "final_url": response.final_url,
        "status": response.status,
        "depth": request.depth,
        "referrer": request.referrer,
        "fetched_at": response.fetched_at,
        "content_type": media_type,
        "bytes": len(response.body),
        "elapsed_ms": response.elapsed_ms,
        "attempts": response.attempts,
        "title": None, "description": None, "lang": None, "canonical": None,
        "words": None, "links": 0,
        "sha256": hashlib.sha256(response.body).hexdigest() if result is None else result.sha256,
        "simhash": None,
        "near_duplicate_of": None,
        "changed": None,
        "not_modified": not_modified,
        "location": response.location,
        "extra": {},
    }
    if not_modified:
        record.update(sha256=request.sha256, simhash=request.simhash, title=request.title,
                      changed=False)
    elif result is not None:
        if result.is_html:
            record.update(title=result.title, description=result.description, lang=result.lang,
                          canonical=result.canonical, words=result.words,
                          simhash=result.simhash)
        record["links"] = len(result.links) + result.links_dropped
        record["extra"] = result.extra
        if request.sha256 is not None:
            record["changed"] = result.sha256 != request.sha256
    return record


def content_record(page: Record, result: ParseResult, fmt: str) -> Record | None:
    """The main-content record of a 2xx HTML page (contract section 8); None for any other."""
    if result.content is None or not 200 <= page["status"] < 300:
        return None
    return {"url": page["url"], "fetched_at": page["fetched_at"], "title": page["title"],
            "lang": result.content_lang, "format": fmt, "content": result.content,
            "words": len(_WORD.findall(result.content))}


class LinkRecord(msgspec.Struct, rename={"source": "from"}):
    """A link record: msgspec writes it as the object of LINK_KEYS, in their order, byte for
    byte what the dict gave; a struct, not a dict, as a page's links are many: building and
    encoding them costs a quarter less (`msgspec.to_builtins` gives the dict)."""

    source: str
    to: str
    text: str
    nofollow: bool
    followed: bool


def link_record(source: str, to: str, text: str, nofollow: bool, followed: bool) -> LinkRecord:
    return LinkRecord(source, to, text, nofollow, followed)


def error_record(request: Request, kind: str, message: str, attempts: int, at: str) -> Record:
    return {"url": request.url, "depth": request.depth, "referrer": request.referrer,
            "kind": kind, "message": message, "attempts": attempts, "at": at}
