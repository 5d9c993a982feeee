"""Screenshots of every explorer page in headless Chromium, for the README: docs/img/<page>.png.

    python -m benchmarks.screenshots [--out docs/img]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from explorer.navigation import PAGES
from explorer.serve import BROWSER_ARGS, ROOT, served_app

WAIT_MS = 120_000


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
        for i, entry in enumerate(PAGES):
            link = page.locator("[data-testid=stSidebarNav] a").nth(i)
            href = link.get_attribute("href")
            link.click()
            page.wait_for_url(href, timeout=WAIT_MS)
            page.wait_for_timeout(500)  # the run starts just after the URL changes
            page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=WAIT_MS)
            page.wait_for_timeout(1500)  # let plotly finish drawing
            path = args.out / f"{Path(entry.path).stem}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"{entry.title}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        browser.close()


if __name__ == "__main__":
    main()
