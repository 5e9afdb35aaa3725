"""Headless Debian Chromium driven by Playwright, for the tracker and the dashboard.

Chromium comes from Debian (`make system-deps` installs it); Playwright only drives it.
The flags keep Chromium from reaching for the network this machine does not have.
Also here: `site`, a customer's web site served from memory on another origin than the
collector, and `node_modules`, the npm packages of tests/js (analytics.js, esbuild).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's Chromium; the tests that need it fail (not skip) without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Debian's chromium is not installed: run `make system-deps`")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class Tab:
    """A page and what its console and network said."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    """A fresh browser context and page that records console errors, page errors and
    the URL of every request it makes."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    opened = Tab(page)
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.on("request", lambda r: opened.requests.append(r.url))
    yield opened
    context.close()


class Site:
    """Pages served from memory by a small HTTP server on 127.0.0.1, reached as
    `localhost` so that the page and the collector are different sites, as on the web."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[bytes, str]] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                found = pages.get(path)
                body, kind = found or (b"not found", "text/plain")
                # browsers ask for an icon; a 404 would be a console error
                status = 200 if found else 204 if path == "/favicon.ico" else 404
                self.send_response(status)
                self.send_header("Content-Type", kind)
                if status != 204:
                    self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if status != 204:
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://localhost:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, body: str | bytes, kind: str = "text/html; charset=utf-8") -> str:
        """Serve `body` at `path`; returns its URL."""
        self.pages[path] = (body.encode() if isinstance(body, str) else body, kind)
        return self.url + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    """A customer's web site (empty until a test adds pages), on its own origin."""
    served = Site()
    yield served
    served.close()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/js/node_modules as its package-lock.json pins it: `npm ci` runs only when
    the lock file changed since the last install (a stamp in node_modules says)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: run `make system-deps`")
    modules = JS_DIR / "node_modules"
    stamp = modules / ".touchpoints-lock-sha256"
    digest = hashlib.sha256((JS_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not stamp.is_file() or stamp.read_text() != digest:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm ci failed in {JS_DIR}:\n{done.stderr[-2000:]}")
        stamp.write_text(digest)
    return modules
