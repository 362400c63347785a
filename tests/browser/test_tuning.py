"""New tuned model -> My Library, as a person clicks it: a real (tiny) model trains in the studio."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.helpers import fill_new_model, save_sample_dataset

POINTS_ON_CHART = """() => {
    const plot = document.querySelector('#job-chart .js-plotly-plot');
    return plot && plot.data && plot.data.length ? plot.data[0].x.length : 0;
}"""


def test_tune_watch_the_curve_and_see_it_ready_then_cancel_another(page, browser, studio_server,
                                                                    tiny_model_dir):
    page.goto(studio_server.url)
    save_sample_dataset(page, "tickets")

    fill_new_model(page, "Ticket triage", str(tiny_model_dir), "tickets", epochs=2)
    page.locator("#new-tune").click()

    # The click returns at once and lands on the job's page in My Library.
    expect(page.get_by_role("tab", name="My Library")).to_have_attribute("aria-selected", "true")
    header = page.locator("#job-header")
    expect(header).to_contain_text("Ticket triage")
    expect(header).to_contain_text("ticket-triage")
    page.wait_for_function(f"({POINTS_ON_CHART})() > 0", timeout=60_000)
    expect(header).to_contain_text("ACTIVE (succeeded)", timeout=120_000)
    assert page.evaluate(POINTS_ON_CHART) == 38  # 150 rows / batch 8 = 19 steps x 2 epochs
    expect(page.locator("#library-jobs")).to_contain_text("ACTIVE (succeeded)")
    expect(page.locator("#job-log textarea")).to_have_value(re.compile("Finished at step 38"))

    # A reload reopens the same job page: the selected job is kept in the address.
    page.reload()
    expect(page.locator("#job-header")).to_contain_text("ACTIVE (succeeded)")
    page.wait_for_function(f"({POINTS_ON_CHART})() == 38")

    # A second, long job: cancel it while it trains.
    fill_new_model(page, "Long run", str(tiny_model_dir), "tickets", epochs=200)
    page.locator("#new-tune").click()
    expect(header).to_contain_text("Long run")
    expect(header).to_contain_text("running", timeout=60_000)
    page.wait_for_function(f"({POINTS_ON_CHART})() > 0", timeout=60_000)

    # A second browser tab shows the same live job: select it in the table, see its curve grow.
    other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    other.goto(studio_server.url)
    other.get_by_role("tab", name="My Library").click()
    other.locator("#library-jobs [role=gridcell]", has_text="long-run").first.click()
    expect(other.locator("#job-header")).to_contain_text("running")
    other.wait_for_function(f"({POINTS_ON_CHART})() > 0", timeout=30_000)
    first = other.evaluate(POINTS_ON_CHART)
    other.wait_for_function(f"({POINTS_ON_CHART})() > {first}", timeout=30_000)
    other.context.close()

    page.locator("#job-cancel").click()
    expect(header).to_contain_text("Cancelled", timeout=60_000)
    expect(page.locator("#library-jobs")).to_contain_text("Cancelled")

