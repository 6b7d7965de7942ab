"""A plugin module that takes 2 s to import: a parse process that loads it starts slowly, as
one does on a loaded machine (lxml, numpy and the parser's tables load as it starts)."""

from __future__ import annotations

import time
from typing import Any

time.sleep(2.0)


def nothing(page: Any) -> None:
    return None
