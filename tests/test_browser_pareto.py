"""The Pareto page in a real headless Chromium: a click, the inspect box and the section below agree; the
searched best point is marked; device budget labels do not overlap."""

import itertools
import re
import shutil

import pytest

from explorer.serve import BROWSER_ARGS, served_app, wait_idle
from tinytl.devices import DEVICES

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium")
TIMEOUT_MS = 120_000
LABEL = re.compile(r"^(?P<mb>[\d.]+) MB · (?P<acc>[\d.]+%) · (?P<res>\d+) px · ")


@pytest.fixture(scope="module")
def page():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with served_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.goto(f"{url}/pareto")
        wait_idle(tab, TIMEOUT_MS)
        yield tab
        browser.close()


def settle(page) -> None:
    page.wait_for_timeout(800)
    wait_idle(page, TIMEOUT_MS)
    shown = page.locator("[data-testid=stException]")
    assert shown.count() == 0, shown.all_inner_texts()


def inspected(page) -> str:
    """The inspect box's value."""
    return page.get_by_role("combobox", name="Point to inspect").input_value()


def section(page) -> dict[str, str]:
    """What the section below the box shows: resolution and the metrics by label."""
    values = {}
    page.locator("[data-testid=stMetric]").first.wait_for(timeout=TIMEOUT_MS)
    for card in page.locator("[data-testid=stMetric]").all():
        label = card.locator("[data-testid=stMetricLabel]").text_content().strip()
        values[label.split(" (")[0]] = card.locator("[data-testid=stMetricValue]").inner_text().strip()
    heading = next(h for h in page.locator("[data-testid=stMain] h3").all_inner_texts() if h.startswith("Sub-net"))
    values["resolution"] = heading.split()[-2]
    return values


def assert_section_follows(page, label: str) -> None:
    parts = LABEL.match(label)
    assert parts, label
    shown = section(page)
    assert shown["resolution"] == parts["res"], shown
    assert shown.get("Training memory") == f"{parts['mb']} MB"
    if "(predicted)" in label:  # the plotted accuracy of a predicted point is the prediction shown below
        assert shown["Predicted accuracy"] == parts["acc"]


def chart(page):
    return page.locator("[data-testid=stPlotlyChart]").first


def test_click_box_and_section_agree(page):
    first = inspected(page)
    assert_section_follows(page, first)
    points = chart(page).locator(".scatterlayer .trace").first.locator("path.point")  # "within budget"
    points.nth(10).wait_for(state="attached", timeout=TIMEOUT_MS)  # plotly draws after the metrics below it
    assert points.count() > 10
    points.nth(7).click(force=True)
    settle(page)
    clicked = inspected(page)
    assert clicked != first
    assert_section_follows(page, clicked)

    box = page.get_by_role("combobox", name="Point to inspect")
    box.click()
    box.press("ArrowDown")
    options = page.get_by_role("option")
    options.first.wait_for(timeout=TIMEOUT_MS)
    assert clicked in options.all_inner_texts()  # the clicked point stays pickable
    target = next(o for o in options.all_inner_texts() if o != clicked)
    page.get_by_role("option", name=target, exact=True).click()
    settle(page)
    assert inspected(page) == target  # the box wins over the chart's lingering selection
    assert_section_follows(page, target)


def test_searched_best_is_marked_and_inspected(page):
    page.get_by_text("Search (evolutionary").click()
    iterations = page.get_by_label("Iterations")
    iterations.fill("20")
    iterations.press("Enter")
    settle(page)
    page.get_by_role("button", name="Run search").click()
    settle(page)
    success = page.locator("[data-testid=stAlertContentSuccess]").inner_text()
    best = re.search(r"predicted accuracy ([\d.]+%) at ([\d.]+) MB, (\d+) px", success)
    assert best, success
    assert "searched best" in chart(page).locator(".legendtext").all_text_contents()
    notes = [a.text_content() for a in chart(page).locator(".annotation").all()]
    assert f"searched best: {best[1]} at {best[2]} MB" in notes
    assert inspected(page).startswith(f"{best[2]} MB · {best[1]} · {best[3]} px")
    assert_section_follows(page, inspected(page))


def test_device_budget_labels_do_not_overlap(page):
    names = [d.name for d in sorted(DEVICES, key=lambda d: d.budget_mb)[:3]]  # three budgets under 1 MB
    box = page.get_by_role("combobox", name="Device budget lines")
    for name in names:
        box.click()
        box.press_sequentially(name.split()[0])
        page.get_by_role("option", name=name, exact=True).click()
        settle(page)
    notes = {a.text_content(): a.bounding_box() for a in chart(page).locator(".annotation").all()}
    assert set(names) <= set(notes), notes
    for (a, p), (b, q) in itertools.combinations(notes.items(), 2):
        apart = (p["x"] + p["width"] <= q["x"] or q["x"] + q["width"] <= p["x"]
                 or p["y"] + p["height"] <= q["y"] or q["y"] + q["height"] <= p["y"])
        assert apart, f"labels {a!r} and {b!r} overlap: {p} {q}"
