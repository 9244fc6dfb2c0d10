"""Headless Chromium for the tests: a local web server, a browser, and what a page did when it loaded.

The browser is Debian's `chromium` (or $COURSE_CHROMIUM) driven by Playwright; Playwright's own
browser downloads are never used, so nothing here needs the internet. Without a browser the tests
skip, except in CI (CI=true), where a missing browser is a failure: `.ci/run` installs it.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from course_utils.paths import repo_root


def chromium_path() -> str | None:
    for candidate in (os.environ.get("COURSE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def require_browser():
    """(playwright's sync_playwright, the browser's path), or skip — or fail in CI."""
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = [what for what, ok in (("chromium", path), ("playwright", sync_playwright)) if not ok]
    if missing:
        message = (f"browser tests need {' and '.join(missing)} (apt-get install chromium; pip install -e '.[dev]')")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright, path


def artifacts_dir() -> Path:
    """Where the browser tests leave screenshots: $COURSE_TEST_ARTIFACTS, else test-artifacts/ (git-ignored)."""
    folder = Path(os.environ.get("COURSE_TEST_ARTIFACTS") or repo_root() / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """A static web server for `folder` on a free local port; yields its base URL."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def browser():
    """A headless Chromium (Playwright Browser), closed afterwards."""
    sync_playwright, path = require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@dataclass
class PageReport:
    """What happened while a page loaded."""

    url: str
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, failed loads
    images: list[dict] = field(default_factory=list)  # src, decoded (complete and naturalWidth > 0), shown size
    links: list[str] = field(default_factory=list)  # absolute hrefs of every <a>
    ids: set[str] = field(default_factory=set)  # element ids (link fragments must name one)
    math: int = 0  # formulas MathJax typeset
    math_errors: int = 0  # formulas MathJax could not parse
    text: str = ""  # the page's visible text

    @property
    def broken_images(self) -> list[str]:
        """Images the browser could not decode, and figures (cell outputs) drawn at zero size.

        Other images may be hidden on purpose (the icons of a closed menu) and so have no size."""
        return [i["src"] for i in self.images
                if not i["decoded"] or (i["output"] and not (i["width"] > 0 and i["height"] > 0))]


def load(b, url: str, settle_ms: int = 500, screenshot: Path | None = None) -> PageReport:
    """Open `url` in a fresh page of browser `b` and report what it did; optionally save a screenshot."""
    report = PageReport(url)
    page = b.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: report.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: report.errors.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: report.errors.append(f"failed to load {r.url}: {r.failure}"))
    page.on("response", lambda r: report.errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    try:
        page.goto(url, wait_until="load")
        # Images load lazily on some themes: bring each into view, then wait for all to settle.
        page.evaluate("() => { for (const i of document.images) { i.loading = 'eager'; } }")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(settle_ms)
        report.images = page.evaluate("""() => Array.from(document.images).map(i => ({
            src: i.currentSrc || i.src, decoded: i.complete && i.naturalWidth > 0,
            width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height,
            output: !!i.closest('.cell_output, .output')}))""")
        report.links = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        report.ids = set(page.evaluate("() => Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
        report.math = page.evaluate("() => document.querySelectorAll('mjx-container').length")
        report.math_errors = page.evaluate("() => document.querySelectorAll('mjx-merror').length")
        report.text = page.evaluate("() => document.body.innerText")
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=False)
    finally:
        page.close()
    return report


def screenshot_at(b, url: str, selector: str, path: Path) -> None:
    """Save a screenshot of the viewport scrolled to the first element matching `selector`."""
    page = b.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url, wait_until="networkidle")
        page.locator(selector).first.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(path))
    finally:
        page.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab(root_dir: Path, env: dict[str, str], log: Path, startup_s: float = 120.0):
    """A JupyterLab server for `root_dir` on a free local port; yields the URL prefix (…/lab/tree/) with
    its token. The server and its kernels are stopped afterwards (their whole process group)."""
    import secrets
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}", "--ServerApp.allow_root=True",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", token
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass
class SliderRun:
    before: str  # the interactive figure's image (data URL) after running all cells
    after: str | None  # the same image after the slider moved (None: no image any more)
    readout: str  # what the slider's readout shows after the move
    text: str  # the interactive output's visible text (a traceback, if the callback failed)


def run_all_and_move_slider(b, base: str, token: str, notebook: str, value: str, *, done_text: str,
                            run_timeout_s: float = 600, change_timeout_s: float = 60,
                            screenshots: Path | None = None) -> SliderRun:
    """Open `notebook` in JupyterLab, run all cells, wait for an output showing `done_text`, type `value`
    into the first slider's readout and wait for the interactive figure to change."""
    import re
    import time

    page = b.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/lab/tree/{notebook}?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        # "Run All" before the kernel is ready is silently dropped: wait for the status bar's "Idle",
        # then check that the first cell started, and ask again if not.
        page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\|\s*Idle")).first.wait_for(timeout=120_000)
        for _attempt in range(3):
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
            try:
                page.locator(".jp-CodeCell .jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]")).first \
                    .wait_for(timeout=20_000)
                break
            except Exception:
                page.wait_for_timeout(2000)
        # In an output, not the source that prints it.
        page.locator(".jp-OutputArea-output", has_text=done_text).first.wait_for(timeout=run_timeout_s * 1000)
        box = page.locator(".widget-interact").first
        box.wait_for(timeout=30_000)
        box.scroll_into_view_if_needed()
        box.locator("img").first.wait_for(timeout=30_000)
        before = box.locator("img").first.get_attribute("src")
        if screenshots:
            page.screenshot(path=str(screenshots / "jupyterlab-before.png"))
        readout = box.locator(".widget-readout").first
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(value)
        page.keyboard.press("Enter")
        after = before
        deadline = time.monotonic() + change_timeout_s
        while time.monotonic() < deadline:
            images = box.locator("img")
            after = images.first.get_attribute("src") if images.count() else None
            if after is not None and after != before:
                break
            time.sleep(0.5)
        page.wait_for_timeout(500)
        if screenshots:
            page.screenshot(path=str(screenshots / "jupyterlab-after.png"))
        return SliderRun(before, after, readout.inner_text(), box.inner_text())
    except Exception:
        page.screenshot(path=str(artifacts_dir() / "jupyterlab-failure.png"))  # what the page showed when it failed
        raise
    finally:
        page.close()
