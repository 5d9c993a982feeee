"""End to end in headless Chromium: the Memory page shows what a device verdict counts, per view, and says which
view's total the verdicts use (on the terms table, in a sentence, and on each headline card)."""

import pytest

from explorer.compute import variants
from explorer.serve import wait_idle
from test_browser import RUN_DONE_MS, app_url, assert_no_exception, page  # noqa: F401  (shared fixtures)
from tinytl.devices import DEVICES, budget_terms, check_budget
from tinytl.memory import analyze, cached_trace
from tinytl.models.setting import ModelSetting

pytestmark = pytest.mark.browser
PI_ZERO = next(d for d in DEVICES if d.name == "Raspberry Pi Zero / Zero 2 W")
JETSON = next(d for d in DEVICES if d.name == "Jetson Nano")


def reports() -> dict:
    """Every view of the app's default setting (ProxylessNAS-Mobile, lite+bias, 224 px, batch 8, 102 classes)."""
    trace = cached_trace(ModelSetting("proxylessnas_mobile", 224, 102, True, "gn"))
    return {v: analyze(trace, "lite+bias", 8, 8, v.view, **dict(v.options)) for v in variants()}


def mb(n: int) -> str:
    return f"{n / 1e6:,.3f}"


def terms_table(page):  # noqa: F811
    return page.locator("[data-testid=stTable]").filter(has_text="gradients MB")


def table_cells(page) -> dict[str, dict[str, str]]:  # noqa: F811
    """The terms table as {row label: {column header: cell text}}: one row per term, one column per view."""
    table = terms_table(page)
    header = [t.strip() for t in table.locator("thead tr").last.locator("th").all_inner_texts()]
    cells = {}
    for row in table.locator("tbody tr").all():
        texts = [t.strip() for t in row.locator("th, td").all_inner_texts()]
        cells[texts[0]] = dict(zip(header[1:], texts[1:]))
    return cells


def card(page, title: str):  # noqa: F811
    return page.locator("[data-testid=stColumn]").filter(
        has=page.locator("[data-testid=stMetricLabel]", has_text=title))


def wait_for_text(page, text: str) -> None:  # noqa: F811
    page.wait_for_function("t => document.querySelector('[data-testid=stMain]').innerText.includes(t)", arg=text,
                           timeout=RUN_DONE_MS)
    wait_idle(page, RUN_DONE_MS)


def assert_terms_shown(page, device, chosen) -> None:  # noqa: F811
    cells = table_cells(page)
    assert {"activations MB", "trainable params MB", "frozen params MB", "gradients MB", "optimizer state (adam) MB",
            "buffers MB", "training total MB", "reserve MB", "total MB", "verdict", "largest batch"} <= set(cells)
    for v, report in reports().items():
        t = budget_terms(report, device)  # defaults: Adam, the report's batch
        assert t.gradient_bytes == 4 * report.num_trainable_params  # one fp32 gradient per trainable parameter
        assert t.optimizer_bytes == 8 * report.num_trainable_params  # Adam: two fp32 moments
        check = check_budget(report, device)
        shown = {row: values[v.title] for row, values in cells.items()}
        assert shown == {
            "used by the verdicts": "yes" if v == chosen else "no",
            "activations MB": mb(t.activation_bytes), "trainable params MB": mb(t.trainable_param_bytes),
            "frozen params MB": mb(t.frozen_param_bytes), "gradients MB": mb(t.gradient_bytes),
            "optimizer state (adam) MB": mb(t.optimizer_bytes), "buffers MB": mb(t.buffer_bytes),
            "training total MB": mb(t.training_bytes), "reserve MB": mb(device.reserve_bytes),
            "total MB": mb(t.total_bytes), "budget MB": mb(device.budget_bytes),
            "headroom MB": mb(check.headroom_bytes),
            "verdict": check.verdict, "largest batch": str(check.largest_batch)}, v.title
    r = reports()[chosen]
    check = check_budget(r, device)
    main = page.locator("[data-testid=stMain]").inner_text()
    assert f"The verdicts in the table above use the {chosen.title} view's total" in main
    assert f"reserve {device.reserve_bytes / 1e6:.2f} MB = {check.total_mb:.2f} MB" in main
    for v in variants():
        text = card(page, v.title).inner_text()
        if v == chosen:
            assert "Device verdicts use this view" in text
            assert f"{check.terms.training_bytes / 1e6:.2f} MB with gradients" in text
        else:
            assert f"Device verdicts use {chosen.title}, not this view" in text


def test_memory_page_shows_the_terms_of_the_verdict(page, app_url):  # noqa: F811
    page.goto(app_url)
    wait_idle(page, RUN_DONE_MS)
    terms_table(page).wait_for(timeout=RUN_DONE_MS)
    assert_no_exception(page)
    paper = variants()[0]
    assert paper.view == "paper"
    assert_terms_shown(page, PI_ZERO, paper)  # the page's default device and view

    recompute = next(v for v in variants() if v.key == "engine·recompute")
    page.locator("[data-testid=stRadio]").filter(has_text="View for the details below").get_by_text(
        recompute.title, exact=True).click()
    wait_for_text(page, f"use the {recompute.title} view's total")
    assert_no_exception(page)
    assert_terms_shown(page, PI_ZERO, recompute)

    box = page.get_by_role("combobox", name="Device", exact=True)
    box.click()
    box.press_sequentially(JETSON.name)  # the option list is virtualised: filter it so the option is rendered
    page.get_by_role("option", name=JETSON.name, exact=True).click()
    wait_for_text(page, f"On {JETSON.name}: activations")
    assert_no_exception(page)
    assert_terms_shown(page, JETSON, recompute)
