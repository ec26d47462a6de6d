"""Headless Chromium driven over the DevTools protocol, for tests that look at the dashboard.

Debian's ``chromium`` (no chromedriver needed) and aiohttp (a Ray dependency) for the
websocket. ``async with Browser() as page:`` starts a throwaway profile on a free port and
kills the browser's process group on exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


class Page:
    """One tab: navigate, evaluate JavaScript, wait for a condition, screenshot."""

    def __init__(self, ws):
        self.ws = ws
        self._ids = iter(range(1, 10**9))

    async def call(self, method: str, **params):
        i = next(self._ids)
        await self.ws.send_json({"id": i, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json()
            if msg.get("id") == i:
                assert "error" not in msg, msg
                return msg["result"]

    async def js(self, expr: str):
        return (await self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True))["result"].get("value")

    async def text(self) -> str:
        return await self.js("document.body ? document.body.innerText : ''") or ""

    async def until(self, expr: str, what: str, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.js(expr):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the dashboard never showed {what}; it shows:\n{(await self.text())[:3000]}")

    async def goto(self, url: str):
        await self.call("Page.navigate", url=url)

    async def shot(self, path: Path):
        data = (await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False))["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    @staticmethod
    def has(text: str) -> str:
        """A JavaScript condition: the page's visible text contains ``text``."""
        return f"document.body && document.body.innerText.includes({json.dumps(text)})"


class Browser:
    def __init__(self, width: int = 1700, height: int = 1100):
        self.size = f"{width},{height}"

    async def __aenter__(self) -> Page:
        import aiohttp

        self.profile = Path(tempfile.mkdtemp(prefix="algoperf-chromium-"))
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", f"--window-size={self.size}", "about:blank"],
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        port = None
        for line in self.proc.stderr:
            if m := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                port = int(m.group(1))
                break
        assert port, "chromium did not open its DevTools port"
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # keep draining
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        return Page(self.ws)

    async def __aexit__(self, *exc):
        with contextlib.suppress(Exception):
            await self.ws.close()
            await self.session.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)
