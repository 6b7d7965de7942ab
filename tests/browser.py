"""Headless Chromium from the system packages, driven over the DevTools protocol.

A small client over aiohttp's websocket (aiohttp is already a dependency): it opens a page,
waits for its load event, evaluates JavaScript, takes a screenshot, and keeps every console
message, uncaught exception, log entry and network request the page caused, so a test can
say "no console error" and "nothing fetched" about a real browser. The DevTools endpoint
listens on 127.0.0.1 only; the flags turn off every background request Chromium makes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://127\.0\.0\.1:\d+/\S+)")
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 60.0


class Page:
    """One tab, attached with a flat session: commands in, events collected."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self._browser = browser
        self.session_id = session_id

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._browser.call(method, session_id=self.session_id, **params)

    def events(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self._browser.events
                if e.get("sessionId") == self.session_id and e["method"] == method]

    async def open(self, url: str) -> None:
        """Navigate and wait for the load event (scripts, styles and images are done)."""
        loaded = self._browser.wait_for("Page.loadEventFired", self.session_id)
        answer = await self.call("Page.navigate", url=url)
        if answer.get("errorText"):
            raise RuntimeError(f"Chromium cannot open {url}: {answer['errorText']}")
        await asyncio.wait_for(loaded, CALL_TIMEOUT_S)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression!r} raised: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def screenshot(self, width: int) -> bytes:
        """A PNG of the whole page at `width` CSS pixels, however long the page is."""
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=800,
                        deviceScaleFactor=1, mobile=False)
        height = int(await self.evaluate("document.documentElement.scrollHeight"))
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=False)
        answer = await self.call("Page.captureScreenshot", format="png",
                                 captureBeyondViewport=True)
        return base64.b64decode(answer["data"])

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads too)."""
        found = [json.dumps(p.get("args")) for p in self.events("Runtime.consoleAPICalled")
                 if p.get("type") in ("error", "assert")]
        found += [json.dumps(p["exceptionDetails"])
                  for p in self.events("Runtime.exceptionThrown")]
        found += [f"{p['entry'].get('source')}: {p['entry'].get('text')}"
                  for p in self.events("Log.entryAdded")
                  if p["entry"].get("level") == "error"]
        return found

    def requested_urls(self) -> list[str]:
        return [p["request"]["url"] for p in self.events("Network.requestWillBeSent")]


class Browser:
    """A Chromium process with a fresh profile; `async with Browser() as b` then `b.page()`."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self._profile = tempfile.TemporaryDirectory(prefix="crawler-chromium-")
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Browser:
        if not os.access(CHROMIUM, os.X_OK):
            raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
                               "(or: apt-get install chromium)")
        self._proc = await asyncio.create_subprocess_exec(
            str(CHROMIUM), *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            endpoint = await asyncio.wait_for(self._endpoint(), START_TIMEOUT_S)
            self._http = aiohttp.ClientSession()
            self._ws = await self._http.ws_connect(endpoint, max_msg_size=0)
        except BaseException:
            await self._stop()
            raise
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("Browser.close"), 10)
        await self._stop()

    async def _endpoint(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        seen = b""
        async for line in self._proc.stderr:
            seen += line
            if match := _LISTENING.search(line):
                # keep draining stderr so that Chromium never blocks on a full pipe
                self._drain = asyncio.create_task(self._proc.stderr.read())
                return match.group(1).decode()
        raise RuntimeError(f"Chromium exited before DevTools listened:\n{seen.decode()[-2000:]}")

    async def _stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None:
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)  # its own session: its helpers
                await self._proc.wait()
            drain = getattr(self, "_drain", None)
            if drain is not None:
                await asyncio.gather(drain, return_exceptions=True)
        self._profile.cleanup()

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._calls.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
                continue
            self.events.append(data)
            for waiter in list(self._waiters):
                method, session, future = waiter
                if data["method"] == method and session in (None, data.get("sessionId")):
                    self._waiters.remove(waiter)
                    if not future.done():
                        future.set_result(data.get("params", {}))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(RuntimeError("the DevTools connection closed"))

    async def call(self, method: str, session_id: str | None = None,
                   **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[ident] = future
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, CALL_TIMEOUT_S)

    def wait_for(self, method: str, session_id: str | None) -> asyncio.Future[dict[str, Any]]:
        """A future for the next event `method` (register it before causing the event)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, session_id, future))
        return future

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A new tab with the Page, Runtime, Log and Network domains reporting."""
        target = (await self.call("Target.createTarget", url="about:blank"))["targetId"]
        attached = await self.call("Target.attachToTarget", targetId=target, flatten=True)
        page = Page(self, attached["sessionId"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.call(f"{domain}.enable")
        try:
            yield page
        finally:
            with contextlib.suppress(Exception):
                await self.call("Target.closeTarget", targetId=target)
