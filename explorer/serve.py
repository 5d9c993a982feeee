"""Run the app as a local Streamlit server (for the real-browser test and the README screenshots)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppURL(str):
    """The served app's URL, carrying the server's process id (to read its memory)."""

    pid: int


def peak_rss_bytes(pid: int) -> int:
    """A process's peak resident memory so far (Linux: VmHWM in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM for process {pid}")


@contextmanager
def served_app(timeout_s: float = 60.0) -> Iterator[AppURL]:
    """Start `streamlit run app.py` on 127.0.0.1:FREEPORT, wait for /_stcore/health, yield its URL, stop it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = AppURL(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode} before it was healthy")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit not healthy on {url} after {timeout_s:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_idle(page, timeout_ms: int = 120_000, polling_grace_ms: int = 15_000) -> None:
    """Wait (Playwright page) until the page has a title and its script run is over.

    A page that polls (st.fragment(run_every=...)) reruns every second and never stays idle: after the
    title is there, its running indicator is awaited at most `polling_grace_ms`.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_selector("[data-testid=stMain] h1", timeout=timeout_ms)
    page.wait_for_timeout(700)  # the running indicator and spinners show up shortly after a run starts
    try:
        page.wait_for_selector("[data-testid=stSpinner]", state="detached", timeout=timeout_ms)
        page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=polling_grace_ms)
    except PlaywrightTimeout:
        page.wait_for_timeout(1000)


def open_page(page, index: int, timeout_ms: int = 120_000) -> str:
    """Click the index-th page of the sidebar navigation, wait for its title to replace the last one and
    for the run to end; return the title."""
    title = page.locator("[data-testid=stMain] h1").first
    previous = title.inner_text() if title.count() else ""
    page.locator("[data-testid=stSidebarNav] a").nth(index).click()
    page.wait_for_function("t => { const h = document.querySelector('[data-testid=stMain] h1');"
                           " return h && h.innerText.length > 0 && h.innerText !== t; }", arg=previous,
                           timeout=timeout_ms)
    wait_idle(page, timeout_ms)
    return page.locator("[data-testid=stMain] h1").first.inner_text()
