"""Screenshots of every explorer page in headless Chromium, for the README: docs/img/<page>.png.

    python -m benchmarks.screenshots [--out docs/img]
"""

from __future__ import annotations

import argparse
import shutil
from urllib.parse import urlsplit
from pathlib import Path

from explorer.navigation import PAGES
from explorer.serve import BROWSER_ARGS, ROOT, served_app

WAIT_MS = 120_000
MAIN_HEIGHT = "document.querySelector('[data-testid=stMain]').scrollHeight"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Debian's chromium is needed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with served_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 1000})
        page.goto(url)
        previous = ""
        for i, entry in enumerate(PAGES):
            link = page.locator("[data-testid=stSidebarNav] a").nth(i)
            href = link.get_attribute("href")
            link.click()
            page.wait_for_url(lambda u: urlsplit(u).path == urlsplit(href, "http://x").path, timeout=WAIT_MS)
            page.wait_for_function("t => { const h = document.querySelector('[data-testid=stMain] h1');"
                                   " return h && h.innerText.length > 0 && h.innerText !== t; }",
                                   arg=previous, timeout=WAIT_MS)
            page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=WAIT_MS)
            page.wait_for_selector("[data-testid=stSpinner]", state="detached", timeout=WAIT_MS)
            page.wait_for_timeout(2000)  # let plotly finish drawing
            height = 0
            while height != (height := min(int(page.evaluate(MAIN_HEIGHT)), 6000)):  # grow until it fits
                page.set_viewport_size({"width": args.width, "height": max(800, height)})
                page.wait_for_timeout(1000)
            path = args.out / f"{Path(entry.path).stem}.png"
            page.screenshot(path=str(path))
            page.set_viewport_size({"width": args.width, "height": 1000})
            previous = page.locator("[data-testid=stMain] h1").first.inner_text()
            print(f"{entry.title}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        browser.close()


if __name__ == "__main__":
    main()
