"""End to end in a real headless Chromium: every page renders without an exception, the policy drives the numbers."""

import shutil

import pytest

from explorer.navigation import PAGES
from explorer.serve import BROWSER_ARGS, open_page, peak_rss_bytes, served_app, wait_idle
from tinytl.memory import profile_memory
from tinytl.models.setting import ModelSetting

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium")
RUN_DONE_MS = 90_000
PAGES_WITH_CHARTS = ("explorer/pages/memory.py", "explorer/pages/compare.py", "explorer/pages/why_bias.py")


@pytest.fixture(scope="module")
def app_url():
    with served_app() as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield tab
        browser.close()


def assert_no_exception(page) -> None:
    shown = page.locator("[data-testid=stException]")
    assert shown.count() == 0, shown.all_inner_texts()


def headline(page) -> str:
    return page.locator("[data-testid=stMetricValue]").first.inner_text().strip()


def test_every_page_renders_and_policy_changes_the_headline(page, app_url):
    page.goto(app_url)
    wait_idle(page, RUN_DONE_MS)
    page.wait_for_selector("[data-testid=stPlotlyChart] .js-plotly-plot", timeout=RUN_DONE_MS)
    assert_no_exception(page)
    lite_bias = profile_memory(ModelSetting("proxylessnas_mobile", 224, 102), policy="lite+bias", batch_size=8)
    assert headline(page) == f"{lite_bias.total_mb:.2f} MB"

    page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").filter(has_text="Update policy").click()
    page.get_by_role("option", name="full (FT-Full)").click()
    full = f"{profile_memory(ModelSetting('proxylessnas_mobile', 224, 102), policy='full').total_mb:.2f} MB"
    page.wait_for_function(
        "v => document.querySelector('[data-testid=stMetricValue]')?.innerText.trim() === v", arg=full,
        timeout=RUN_DONE_MS)
    wait_idle(page, RUN_DONE_MS)
    assert headline(page) == full
    assert "policy=full" in page.url  # the link reproduces the view

    links = page.locator("[data-testid=stSidebarNav] a")
    assert links.count() == len(PAGES)
    for i, entry in enumerate(PAGES):
        if i:  # page 0 is the one already open
            open_page(page, i, RUN_DONE_MS)
        assert_no_exception(page)
        if entry.path in PAGES_WITH_CHARTS:
            page.wait_for_selector("[data-testid=stPlotlyChart] .js-plotly-plot", timeout=RUN_DONE_MS)
            assert_no_exception(page)


def test_bad_url_shows_the_reason_not_a_traceback(page, app_url):
    page.goto(f"{app_url}/?res=0&backbone=nope")
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stAlert]')]"
                           ".some(a => a.innerText.includes('resolution must be'))", timeout=RUN_DONE_MS)
    wait_idle(page, RUN_DONE_MS)
    alerts = " ".join(page.locator("[data-testid=stAlert]").all_inner_texts())
    assert "resolution must be an integer" in alerts and "got 0" in alerts  # markdown renders >= as ≥
    assert "unknown backbone 'nope'" in alerts
    assert_no_exception(page)
    assert page.locator("[data-testid=stSidebar] [data-testid=stNumberInput]").count() >= 4  # sidebar usable


def test_huge_url_settings_answered_without_exhausting_the_server(page):
    """Issue 15: a URL asking for 10^7 classes is refused with a message; the largest allowed one (10^5 classes on
    RegNet) is analysed without real weights; the server's peak resident
    memory stays under 1.5 GB throughout (its own server: the peak covers its whole life)."""
    with served_app() as url:
        tab = page.context.browser.new_page(viewport={"width": 1400, "height": 1000})  # one Playwright per module
        tab.goto(f"{url}/?backbone=regnet_y_400mf&policy=bias&classes=10000000")
        tab.wait_for_function("() => [...document.querySelectorAll('[data-testid=stAlert]')]"
                              ".some(a => a.innerText.includes('classes must be an integer'))", timeout=RUN_DONE_MS)
        assert_no_exception(tab)
        tab.goto(f"{url}/?backbone=regnet_y_400mf&policy=bias&classes=100000")
        wait_idle(tab, RUN_DONE_MS)
        tab.wait_for_selector("[data-testid=stPlotlyChart] .js-plotly-plot", timeout=RUN_DONE_MS)
        assert_no_exception(tab)
        expected = profile_memory(ModelSetting("regnet_y_400mf", 224, 100_000), policy="bias", batch_size=8)
        assert headline(tab) == f"{expected.total_mb:.2f} MB"
        tab.close()
        assert peak_rss_bytes(url.pid) < 1.5e9
