"""End to end in headless Chromium: Enter in a Fine-tune field starts nothing; a started run draws per-step curves
and its measured peak before its first epoch ends; another session finds it on the Runs page and cancels it."""

import os
import time

import pytest

from explorer.navigation import PAGES
from explorer.serve import BROWSER_ARGS, open_page, served_app, wait_idle
from test_browser import CHROMIUM, RUN_DONE_MS, assert_no_exception
from tinytl.train.store import RunStore

pytestmark = pytest.mark.browser
FINETUNE = next(i for i, p in enumerate(PAGES) if p.path.endswith("finetune.py"))
RUNS = next(i for i, p in enumerate(PAGES) if p.path.endswith("runs.py"))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def app_url(home):
    """The app with its own, empty run store (the server inherits TINYTL_HOME)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYTL_HOME", str(home))
        with served_app() as url:
            yield url


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


def new_tab(browser, url: str, page_index: int):
    """A new session (its own tab) on one page of the app."""
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.goto(url)
    wait_idle(tab, RUN_DONE_MS)
    open_page(tab, page_index, RUN_DONE_MS)
    return tab


def wait_for(condition, timeout_s: float = RUN_DONE_MS / 1000, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not met after {timeout_s:.0f} s")


def test_runs_are_visible_live_and_cancellable_from_any_session(browser, app_url, home):
    store = RunStore(os.path.join(home, "runs.sqlite"))
    tab = new_tab(browser, app_url, FINETUNE)
    epochs = tab.get_by_label("Epochs", exact=True)
    epochs.fill("3")
    epochs.press("Enter")
    tab.wait_for_timeout(1500)
    assert store.list_runs() == []  # Enter applies the field; only the button starts a run
    tab.get_by_role("button", name="Start fine-tune").click()
    run_id = wait_for(lambda: [r["id"] for r in store.list_runs()], what="a recorded run")[0]

    tab.wait_for_selector("[data-testid=stPlotlyChart] .js-plotly-plot", timeout=RUN_DONE_MS)
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["history"] == []  # curves drawn before the first epoch ends
    assert run["settings"]["epochs"] == 3
    peak = tab.locator("[data-testid=stMetric]").filter(
        has=tab.locator("[data-testid=stMetricLabel]", has_text="Measured peak (one step")).locator(
        "[data-testid=stMetricValue]")
    tab.wait_for_function("el => el.innerText.includes('MB')", arg=peak.element_handle(), timeout=RUN_DONE_MS)
    measured = store.get_run(run_id)["measured_peak_bytes"]
    assert peak.inner_text().strip() == f"{measured / 1e6:.1f} MB" and store.get_run(run_id)["history"] == []
    assert tab.locator(f".st-key-ft_cancel_{run_id} button").is_visible()
    assert_no_exception(tab)

    other = new_tab(browser, app_url, RUNS)  # a new session, which never saw the run start
    other.locator(f".st-key-runs_cancel_{run_id} button").wait_for(timeout=RUN_DONE_MS)
    # the progress label is its own element: it may be drawn a moment after the button
    other.get_by_text(f"#{run_id} lite+bias (shipped)", exact=False).first.wait_for(timeout=RUN_DONE_MS)
    other.locator(f".st-key-runs_cancel_{run_id} button").click()
    ended = wait_for(lambda: (r := store.get_run(run_id))["status"] != "running" and r, what="the run ending")
    assert ended["status"] == "cancelled" and ended["cancel_requested"]
    assert 0 < len(store.get_steps(run_id)) < ended["total_steps"]
    other.locator(f".st-key-runs_cancel_{run_id}").wait_for(state="detached", timeout=RUN_DONE_MS)
    assert_no_exception(other)
    assert_no_exception(tab)
