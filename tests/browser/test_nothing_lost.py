"""Nothing the user typed is lost, and every list is current (issue: pasted text, double saves,
lists after a reload or a new model)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from storage.db import Store
from tests.browser.helpers import tune_from_the_command_line
from tests.runner_helpers import word_dataset


def paste(page, box, text: str) -> None:
    """Replace the box's text with ``text`` through the clipboard (Ctrl+A, Ctrl+V), as a person
    pasting does: no key is typed into the box."""
    page.evaluate("text => navigator.clipboard.writeText(text)", text)
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Control+V")


def latest(server, name: str):
    with Store(server.data_dir) as store:
        return store.get_version(name)


def versions(server, name: str) -> list[int]:
    with Store(server.data_dir) as store:
        return [v.version for v in store.list_versions(name)]


def load_sample(page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url[:-1])
    page.goto(server.url)
    page.get_by_role("button", name="Load the sample dataset").click()
    expect(page.locator("#report")).to_contain_text("Ready: 150 examples", timeout=60_000)


class BusyServer:
    """Holds back every event the page sends except the one that carries ``marker`` (the save:
    the dataset's name is among its inputs), as a busy server answers late, until ``release``.
    What is saved meanwhile must come from the boxes, not from the last preview's state."""

    def __init__(self, page, marker: str):
        self.marker, self.held = marker, []
        page.route("**/queue/join*", self._route)

    def _route(self, route):
        if self.marker in (route.request.post_data or ""):
            route.continue_()
        else:
            self.held.append(route)

    def release(self, page):
        held, self.held = self.held, []
        self.marker = ""  # everything passes from now on
        for route in held:
            route.continue_()


def test_text_pasted_into_every_editor_box_is_saved(page, module_studio_server):
    server = module_studio_server
    load_sample(page, server)
    busy = BusyServer(page, marker="pasted-x7")
    paste(page, page.locator("#preamble textarea"), "Sort the ticket.\nAnswer in one line.")
    paste(page, page.locator("#output-label textarea, #output-label input").first, "triage:")
    page.locator("#fields [data-testid=cell-0-1]").dblclick()
    page.keyboard.press("Control+A")
    page.evaluate("text => navigator.clipboard.writeText(text)", "Subject line:")
    page.keyboard.press("Control+V")
    page.keyboard.press("Enter")
    paste(page, page.locator("#dataset-name textarea, #dataset-name input").first, "pasted-x7")
    page.locator("#save").click()
    expect(page.locator("#save-message")).to_contain_text("Saved pasted-x7 version 1")
    assert busy.held  # the previews of the pastes had not come back when the save ran

    template = latest(server, "pasted-x7").dataset.template
    assert template.preamble == "Sort the ticket.\nAnswer in one line."
    assert template.output_label == "triage:"
    assert template.inputs[0].label == "Subject line:"
    busy.release(page)  # the late previews arrive in any order; leaving a box shows the latest
    page.locator("#preamble textarea").click()
    page.locator("#dataset-name textarea, #dataset-name input").first.click()
    expect(page.locator("#preview")).to_contain_text("Sort the ticket.")
    expect(page.locator("#preview")).to_contain_text("Subject line:")


def test_a_double_click_saves_one_version_and_an_unchanged_save_none(page, module_studio_server):
    server = module_studio_server
    load_sample(page, server)
    page.locator("#dataset-name textarea, #dataset-name input").first.fill("double")
    page.locator("#save").dblclick()
    expect(page.locator("#save-message")).to_contain_text(re.compile(
        "Saved double version 1|Nothing to save: double version 1"))
    page.wait_for_timeout(1500)  # a second save, if one had started, has finished by now
    assert versions(server, "double") == [1]

    page.locator("#save").click()
    expect(page.locator("#save-message")).to_contain_text(
        "Nothing to save: double version 1 already holds these examples")
    paste(page, page.locator("#preamble textarea"), "Changed.")
    page.locator("#save").click()
    expect(page.locator("#save-message")).to_contain_text("Saved double version 2")
    assert versions(server, "double") == [1, 2]


def dropdown_options(page, selector: str) -> list[str]:
    page.locator(f"{selector} input").click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    texts = options.all_inner_texts()
    page.keyboard.press("Escape")
    return [text.strip() for text in texts]


def test_lists_are_current_after_a_reload_and_a_new_model(page, module_studio_server, tiny_model_dir):
    server = module_studio_server
    page.goto(server.url)
    with Store(server.data_dir) as store:  # saved after the page was built
        store.save_dataset("saved while open", word_dataset())
    page.reload()
    assert "saved while open" in dropdown_options(page, "#saved-datasets")

    # A tuned model made elsewhere (the command line) while the page is open.
    tune_from_the_command_line(server.data_dir, "Listed model", model=tiny_model_dir, epochs=1)
    page.get_by_role("tab", name="Playground").click()
    assert any("listed-model" in option for option in dropdown_options(page, "#playground-model"))
    page.locator("#playground-compare").click()
    assert any("listed-model" in option for option in dropdown_options(page, "#playground-model-b"))
    page.get_by_role("tab", name="New tuned model").click()
    assert "support_tickets" in dropdown_options(page, "#new-dataset")

    page.reload()
    page.get_by_role("tab", name="Playground").click()
    page.locator("#playground-compare").click()
    assert any("listed-model" in option for option in dropdown_options(page, "#playground-model-b"))
