"""New tuned model's form as a person fills it wrongly, then rightly."""

from __future__ import annotations

from playwright.sync_api import expect

from storage.db import Store
from tests.browser.helpers import fill_new_model
from tests.runner_helpers import word_dataset


def test_bad_numbers_are_named_with_their_range_and_stay_until_fixed(page, module_studio_server,
                                                                     tiny_model_dir):
    server = module_studio_server
    with Store(server.data_dir) as store:
        store.save_dataset("words", word_dataset())
    page.goto(server.url)
    fill_new_model(page, "Words", str(tiny_model_dir), "words", epochs=1)
    page.locator("#new-epochs input").fill("")
    page.locator("#new-batch-size input").fill("0")
    page.locator("#new-learning-rate input").fill("-1")
    page.locator("#new-tune").click()

    message = page.locator("#new-message")
    expect(message).to_contain_text("Epochs is empty: enter a whole number from 1 to 1000.")
    expect(message).to_contain_text("Batch size is 0: use a whole number from 1 to 1024.")
    expect(message).to_contain_text("Learning rate is -1: use a number above 0 and at most 1")
    expect(page.get_by_role("tab", name="New tuned model")).to_have_attribute("aria-selected", "true")
    page.wait_for_timeout(6000)  # longer than a toast lasts
    expect(message).to_contain_text("Batch size is 0")
    with Store(server.data_dir) as store:
        assert "long-words" not in [job.id for job in store.list_jobs()]

    page.locator("#new-epochs input").fill("1")
    page.locator("#new-batch-size input").fill("8")
    page.locator("#new-learning-rate input").fill("0.001")
    page.locator("#new-tune").click()
    expect(page.locator("#job-header")).to_contain_text("Words")
    assert "Traceback" not in server.output()


def test_job_actions_follow_its_state_and_delete_asks_first(page, module_studio_server,
                                                            tiny_model_dir):
    server = module_studio_server
    with Store(server.data_dir) as store:
        store.save_dataset("many words", word_dataset())
    page.goto(server.url)
    fill_new_model(page, "Long words", str(tiny_model_dir), "many words", epochs=500)
    page.locator("#new-tune").click()
    header = page.locator("#job-header")
    expect(header).to_contain_text("running", timeout=60_000)

    def shown(*ids):
        for name in ("cancel", "resume", "open-playground", "download", "download-merged",
                     "download-gguf", "delete"):
            button = page.locator(f"#job-{name}")
            expect(button).to_be_visible() if name in ids else expect(button).to_be_hidden()

    shown("cancel", "tune-again")  # no model yet, and a running job cannot be deleted
    page.locator("#job-cancel").click()
    expect(header).to_contain_text("Cancelled", timeout=60_000)
    expect(header).not_to_contain_text("final loss")
    expect(page.locator("#library-jobs")).to_contain_text("Cancelled")
    cancelled_with_model = "partial model" in header.inner_text()
    shown("resume", "delete", *(("open-playground", "download", "download-merged", "download-gguf")
                                if cancelled_with_model else ()))

    page.locator("#job-delete").click()
    confirm = page.locator("#job-delete-question")
    expect(confirm).to_contain_text("Delete Long words (long-words), its model, checkpoints and log?")
    page.wait_for_timeout(2500)  # the page's once-a-second refresh leaves the question open
    expect(confirm).to_be_visible()
    page.locator("#job-delete-no").click()
    expect(confirm).to_be_hidden()
    with Store(server.data_dir) as store:
        assert "long-words" in [job.id for job in store.list_jobs()]

    page.locator("#job-delete").click()
    page.locator("#job-delete-yes").click()
    expect(page.locator("#job-header")).to_be_hidden()
    expect(page.locator("#library-jobs")).not_to_contain_text("long-words")
    with Store(server.data_dir) as store:
        assert "long-words" not in [job.id for job in store.list_jobs()]
