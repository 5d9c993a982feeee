"""Screenshots of explorer pages in headless Chromium, for the README: docs/img/<page>.png.

    python -m benchmarks.screenshots [--pages memory compare why_bias] [--out docs/img]

By default only the pages of the explorer issue are shot (other pages' images belong to their authors);
`--pages all` shoots every page in the navigation.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from explorer.navigation import PAGES
from explorer.serve import BROWSER_ARGS, ROOT, open_page, served_app, wait_idle

WAIT_MS = 120_000
DEFAULT_PAGES = ("memory", "compare", "why_bias")
MAIN_HEIGHT = "document.querySelector('[data-testid=stMain]').scrollHeight"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--pages", nargs="+", default=list(DEFAULT_PAGES),
                        help="page file stems to shoot, or 'all'")
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
        wait_idle(page, WAIT_MS)
        for i, entry in enumerate(PAGES):
            if "all" not in args.pages and Path(entry.path).stem not in args.pages:
                continue
            if i:
                open_page(page, i, WAIT_MS)
            page.wait_for_timeout(2000)  # let plotly finish drawing
            height = 0
            while height != (height := min(int(page.evaluate(MAIN_HEIGHT)), 6000)):  # grow until it fits
                page.set_viewport_size({"width": args.width, "height": max(800, height)})
                page.wait_for_timeout(1000)
            path = args.out / f"{Path(entry.path).stem}.png"
            page.screenshot(path=str(path))
            page.set_viewport_size({"width": args.width, "height": 1000})
            print(f"{entry.title}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        browser.close()


if __name__ == "__main__":
    main()
