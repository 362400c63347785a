"""The datasets tab as a person uses it: upload, map, edit, watch the report, save, find it."""

from __future__ import annotations

import openpyxl
import pytest
from playwright.sync_api import expect

ROWS = 22


def make_workbook(path):
    """A workbook whose first sheet holds notes and whose second holds the examples."""
    workbook = openpyxl.Workbook()
    notes = workbook.active
    notes.title = "Notes"
    notes.append(["Read me: the examples are on the next sheet"])
    tickets = workbook.create_sheet("Tickets")
    tickets.append(["Question", "Context", "Answer"])
    for n in range(ROWS):
        tickets.append([f"What is {n} plus {n + 1}?", f"Arithmetic drill {n}", n + n + 1])
    workbook.save(path)
    return path


SCROLL_GRID_TO_END = """() => {
    for (const el of document.querySelectorAll('#grid *')) {
        if (el.scrollHeight > el.clientHeight + 4 && getComputedStyle(el).overflowY !== 'visible') {
            el.scrollTop = el.scrollHeight;
        }
    }
}"""


def edit_cell(page, row: int, column: int, text: str):
    """Double-click a cell, replace its text and press Enter, as a person does. The grid only
    renders the rows in view, so scroll to the end first for rows further down."""
    cell = page.locator(f"#grid [data-testid=cell-{row}-{column}]")
    if row > 5:
        page.evaluate(SCROLL_GRID_TO_END)
    cell.scroll_into_view_if_needed()
    cell.dblclick()
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_upload_map_edit_add_save_and_find_in_library(page, studio_server, tmp_path):
    workbook = make_workbook(tmp_path / "tickets.xlsx")
    page.goto(studio_server.url)
    page.locator("#upload input[type=file]").set_input_files(str(workbook))

    expect(page.locator("#detected")).to_contain_text(f"XLSX (sheet 'Tickets'), 3 columns, {ROWS} rows")
    expect(page.locator("#report")).to_contain_text(f"Ready: {ROWS} examples, no errors")
    expect(page.locator("#mapping-preview")).to_contain_text("Context → Context:")

    # Map: drop Context from the inputs; the grid and the mapping preview follow.
    page.locator("#map-inputs .token", has_text="Context").locator(".token-remove").click()
    expect(page.locator("#grid [data-testid=header-1]")).to_have_attribute("title", "output")
    expect(page.locator("#mapping-preview")).not_to_contain_text("Context")
    expect(page.locator("#preview")).to_contain_text("Question: What is 0 plus 1?")

    # Edit a cell: the preview shows the new answer as the model will see it.
    edit_cell(page, 0, 1, "forty-two")
    expect(page.locator("#prompt-preview mark.trained")).to_contain_text("forty-two")

    # Add a row (a blank row is not an example yet); half-filled, the report names it.
    page.locator("#add-row").click()
    page.wait_for_timeout(500)
    page.evaluate(SCROLL_GRID_TO_END)
    expect(page.locator(f"#grid [data-testid=cell-{ROWS}-0]")).to_be_attached()
    edit_cell(page, ROWS, 0, "What is 100 plus 1?")
    expect(page.locator("#report")).to_contain_text(f"Row {ROWS + 1}: output is empty")
    edit_cell(page, ROWS, 1, "101")
    expect(page.locator("#report")).to_contain_text(f"Ready: {ROWS + 1} examples, no errors")

    page.locator("#dataset-name textarea, #dataset-name input").first.fill("drill tickets")
    page.locator("#save").click()
    expect(page.locator("#save-message")).to_contain_text(
        f"Saved drill tickets version 1 ({ROWS + 1} examples)")

    page.get_by_role("tab", name="My Library").click()
    expect(page.locator("#library-datasets")).to_contain_text("drill tickets")


def test_duplicate_and_delete_rows_change_the_report(page, studio_server):
    page.goto(studio_server.url)
    page.get_by_role("button", name="Load the sample dataset").click()
    expect(page.locator("#report")).to_contain_text("Ready: 150 examples, no errors")

    page.locator("#grid [data-testid=cell-2-1]").click()
    page.locator("#duplicate-row").click()
    expect(page.locator("#report")).to_contain_text("Row 4 repeats row 3")
    page.locator("#delete-row").click()
    expect(page.locator("#report")).to_contain_text("Ready: 150 examples, no errors")


def test_pasted_rows_append_to_the_grid(page, studio_server):
    page.goto(studio_server.url)
    page.get_by_role("button", name="Start an empty dataset").click()
    page.get_by_text("Or paste rows copied from a spreadsheet").click()
    page.locator("#paste-box textarea").fill("Bonjour\tHello\nMerci\tThank you\n")
    page.locator("#paste-append").click()
    expect(page.locator("#report")).to_contain_text("2 examples")
    expect(page.locator("#grid [data-testid=cell-1-1]")).to_contain_text("Thank you")


def test_a_binary_file_gets_a_clear_message_and_no_traceback(page, studio_server, tmp_path):
    garbage = tmp_path / "data.csv"
    garbage.write_bytes(bytes(range(256)) * 64)
    page.goto(studio_server.url)
    page.get_by_role("button", name="Load the sample dataset").click()
    expect(page.locator("#report")).to_contain_text("Ready: 150 examples")

    page.locator("#upload input[type=file]").set_input_files(str(garbage))
    toast = page.locator(".toast-body")
    expect(toast).to_contain_text("'data.csv' is not a text file")
    expect(toast).not_to_contain_text("Traceback")
    expect(page.locator("#report")).to_contain_text("Ready: 150 examples")  # nothing lost


@pytest.mark.locale("fr-FR")
def test_follows_the_browser_language_and_switches_in_the_studio(page, studio_server):
    page.goto(studio_server.url)
    expect(page.get_by_role("tab", name="Jeux de données")).to_be_visible()

    page.locator("#language input").click()
    page.get_by_role("option", name="简体中文").click()
    expect(page.get_by_role("tab", name="数据集")).to_be_visible()
    expect(page.get_by_role("tab", name="我的资源库")).to_be_visible()
    page.reload()
    expect(page.get_by_role("tab", name="我的资源库")).to_be_visible()
    page.goto(studio_server.url + "?lang=fr")
    expect(page.get_by_role("tab", name="Ma bibliothèque")).to_be_visible()
