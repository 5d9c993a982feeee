"""Issue 15, item 1: how fast the app answers URLs asking for huge settings, and the server's peak memory.

    python -m benchmarks.bad_url

A fresh server per URL (its peak resident memory, VmHWM, then covers only the server's start and that one URL);
the time runs from navigation to the first alert or chart on the page, in headless Chromium.
"""

from __future__ import annotations

import shutil
import time

from explorer.serve import BROWSER_ARGS, peak_rss_bytes, served_app

URLS = ("/?backbone=regnet_y_400mf&policy=bias&classes=10000000",
        "/?backbone=regnet_y_400mf&classes=10000000",
        "/?res=100000",
        "/?backbone=regnet_y_400mf&policy=bias&classes=100000")
ANSWERED = "[data-testid=stAlert], [data-testid=stPlotlyChart] .js-plotly-plot"


def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is needed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    print("| URL | answered in s | first message | server peak RSS MB |")
    print("|---|---|---|---|")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=BROWSER_ARGS)
        for path in URLS:
            with served_app() as url:
                tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                tab.goto(url)  # a first load warms the server (imports), as a user's first visit does
                tab.wait_for_selector(ANSWERED, timeout=120_000)
                started = time.perf_counter()
                tab.goto(url + path)
                tab.wait_for_selector(ANSWERED, timeout=120_000)
                elapsed = time.perf_counter() - started
                alerts = tab.locator("[data-testid=stAlert]")
                message = (max(alerts.first.inner_text().splitlines(), key=len).strip() if alerts.count()
                           else "(chart drawn)")
                print(f"| `{path}` | {elapsed:.2f} | {message[:90]} | {peak_rss_bytes(url.pid) / 1e6:.0f} |")
                tab.close()
        browser.close()


if __name__ == "__main__":
    main()
