"""Users' plugins (extractors, sinks): loaded by their `package.module:function` names.

Its own module, light to import: the main process checks every plugin spec before the crawl,
and must not import the parser (lxml, bs4, numpy) to do so; only the parse processes need it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["load_callable"]


def load_callable(spec: str) -> Callable[..., Any]:
    """Import `package.module:function`; the ValueError names the spec and the fault.

    The main process calls it on every plugin spec before the crawl, so that a typo is a
    usage error rather than a failure inside each parse process.
    """
    module_name, colon, attr = (part.strip() for part in spec.partition(":"))
    if not colon or not module_name or not attr:
        raise ValueError(f"plugin {spec!r}: expected 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises as it loads
        raise ValueError(f"plugin {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for name in attr.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ValueError(f"plugin {spec!r}: {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"plugin {spec!r}: {attr!r} is not callable")
    return obj  # type: ignore[no-any-return]
