"""Open report.html in headless Chromium: no console errors, no network requests, images decode.

Uses the DevTools protocol over ``--remote-debugging-pipe`` (NUL-delimited JSON on fds 3/4), so
the standard library is enough: no websocket client, no new dependency. Skipped when no Chromium
binary is installed (CI: ``apt-get install -y --no-install-recommends chromium``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time

import pytest
from fixtures_report import build_run_store

from rankscope.report import write_report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--remote-debugging-pipe"]
LOCAL_SCHEMES = ("file:", "data:", "about:")


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


class Pipe:
    """A minimal DevTools client: send commands, collect events, wait for replies."""

    def __init__(self, binary: str, profile: str):
        to_chrome_r, self._write = os.pipe()
        self._read, from_chrome_w = os.pipe()

        def child_fds() -> None:
            # Chromium reads commands on fd 3 and writes replies on fd 4. Copy both ends first so
            # that placing one cannot overwrite the other; dup2'd fds are inheritable, the rest
            # of Python's fds are not, so close_fds=False leaks nothing else.
            read_end, write_end = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     close_fds=False, preexec_fn=child_fds,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer, self._next_id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method}")
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            event = self._receive(deadline)
            if event is None:
                return False
            self.events.append(event)
        return True

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (event := self._receive(deadline)) is not None:
            self.events.append(event)

    def _receive(self, deadline: float) -> dict | None:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                return None
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, TimeoutError, AssertionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


def test_report_opens_in_headless_chromium_without_errors_or_network(tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (apt-get install -y --no-install-recommends chromium)")
    report = write_report([build_run_store(tmp_path / "run")])
    browser = Pipe(binary, str(tmp_path / "profile"))
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": report.resolve().as_uri()}, session=session)
        assert browser.wait_for("Page.loadEventFired"), "report.html never finished loading"
        browser.drain(0.5)  # late console messages
        check = ("JSON.stringify({n: document.images.length, ok: Array.from(document.images)"
                 ".every(i => i.complete && i.naturalWidth > 0), tables: document.querySelectorAll('table').length})")
        page = json.loads(browser.send("Runtime.evaluate", {"expression": check, "returnByValue": True},
                                       session=session)["result"]["value"])
    finally:
        browser.close()
    events = browser.events
    errors = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert errors == []
    assert [u for u in requests if not u.startswith(LOCAL_SCHEMES)] == []
    assert any(u.startswith("file:") for u in requests)  # the monitor did see the page itself
    assert page["n"] >= 6 and page["ok"] and page["tables"] >= 3
