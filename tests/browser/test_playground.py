"""The playground as a person uses it: from My Library to a streamed answer, then a comparison."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import tune_from_the_command_line


@pytest.fixture(scope="module")
def tuned(studio_server) -> str:
    tune_from_the_command_line(studio_server.data_dir, "Playground model")
    return "playground-model"


def open_playground_with(page, server, model_label: str):
    page.goto(server.url)
    page.get_by_role("tab", name="Playground").click()
    page.locator("#playground-model input").click()
    page.get_by_role("option", name=model_label).click()
    page.get_by_text("Generation settings").click()
    page.locator("#playground-max-tokens input").fill("16")


def test_open_a_tuned_model_fill_its_fields_stream_and_compare(page, studio_server, tuned):
    page.goto(studio_server.url)
    page.get_by_role("tab", name="My Library").click()
    page.locator("#library-jobs [role=gridcell]", has_text="playground-model").first.click()
    expect(page.locator("#job-header")).to_contain_text("ACTIVE (succeeded)")
    page.locator("#job-open-playground").click()

    expect(page.get_by_role("tab", name="Playground")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#playground-about")).to_contain_text("prompted with its training template")
    subject = page.locator("#playground-field-0 textarea")
    expect(page.locator("#playground-field-0")).to_contain_text("subject:")
    expect(page.locator("#playground-field-1")).to_contain_text("message:")
    expect(page.locator("#playground-message textarea")).to_be_hidden()
    subject.fill("Parcel issue")
    page.locator("#playground-field-1 textarea").fill("The box for order 12345 arrived damaged.")
    page.get_by_text("Generation settings").click()
    page.locator("#playground-max-tokens input").fill("48")

    # Streamed: the answer grows in several steps before it is complete.
    page.evaluate("""() => {
        window.__seen = new Set();
        const box = document.querySelector('#playground-output textarea');
        setInterval(() => { if (box.value) window.__seen.add(box.value); }, 20);
    }""")
    page.locator("#playground-run").click()
    page.wait_for_function("() => window.__seen.size >= 3", timeout=60_000)
    expect(page.locator("#playground-output textarea")).to_have_value(
        re.compile(r"^category: \w+; urgency: (high|low)$"), timeout=60_000)
    page.get_by_text("Prompt as the model sees it").click()
    expect(page.locator("#playground-prompt")).to_contain_text("subject: Parcel issue")
    expect(page.locator("#playground-prompt")).to_contain_text("message: The box for order 12345")

    # Compare: the same input to the base model, two answers side by side.
    page.locator("#playground-compare").click()
    page.locator("#playground-compare-on input").check()
    page.locator("#playground-model-b input").click()
    page.get_by_role("option", name="SmolLM2-135M-Instruct (base)").click()
    page.locator("#playground-run").click()
    expect(page.locator("#playground-output-b textarea")).not_to_have_value("", timeout=120_000)
    expect(page.locator("#playground-output textarea")).not_to_have_value("")


def test_batch_test_scores_a_tuned_model_on_a_saved_dataset(page, studio_server, tuned):
    open_playground_with(page, studio_server, "Playground model · playground-model")
    page.get_by_text("Batch test", exact=True).click()
    page.locator("#batch-dataset input").click()
    page.get_by_role("option", name="support_tickets").click()
    # choosing the dataset sets "Rows to run" to all of it: wait for that before changing it
    expect(page.locator("#batch-limit input")).to_have_value("150")
    page.locator("#batch-limit input").fill("4")
    page.locator("#batch-run").click()
    expect(page.locator("#batch-summary")).to_contain_text(
        re.compile(r"\d of 4 answers match the expected output exactly"), timeout=120_000)
    expect(page.locator("#batch-table")).to_contain_text("category:")
    expect(page.get_by_role("cell", name="batch-playground-model.csv")).to_be_visible()


def test_a_base_model_chats(page, studio_server):
    open_playground_with(page, studio_server, "SmolLM2-135M-Instruct (base)")
    expect(page.locator("#playground-message textarea")).to_be_visible()
    expect(page.locator("#playground-field-0 textarea")).to_be_hidden()
    page.locator("#playground-message textarea").fill("What is the capital of France?")
    page.locator("#playground-run").click()
    answer = page.locator("#playground-chatbot .message-row").nth(1)
    expect(answer).not_to_be_empty(timeout=60_000)
    expect(page.locator("#playground-chatbot")).to_contain_text("What is the capital of France?")
