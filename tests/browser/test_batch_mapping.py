"""Batch test in the playground on a file whose field has another name than the model's."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from tests.browser.helpers import tune_from_the_command_line


def write_csv(path: Path, header: str, rows: int) -> Path:
    lines = [header] + [f"word{n:02d},{'word'[::-1]}{n:02d}" for n in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_file_with_another_field_name_is_mapped_and_every_row_runs(page, module_studio_server,
                                                                      tiny_model_dir, tmp_path):
    server = module_studio_server
    training = write_csv(tmp_path / "words.csv", "text,reversed", 24)
    tune_from_the_command_line(server.data_dir, "One field", data=training, model=tiny_model_dir,
                               epochs=1, batch_size=8)
    other = write_csv(tmp_path / "questions.csv", "question,reversed", 7)

    page.goto(server.url)
    page.get_by_role("tab", name="Playground").click()
    page.locator("#playground-model input").click()
    page.get_by_role("option", name="One field · one-field").click()
    page.get_by_text("Generation settings").click()
    page.locator("#playground-max-tokens input").fill("4")
    page.get_by_text("Batch test", exact=True).click()
    page.locator("#batch-file input[type=file]").set_input_files(str(other))
    expect(page.locator("#batch-limit input")).to_have_value("7")  # the whole file by default
    page.locator("#batch-run").click()
    summary = page.locator("#batch-summary")
    expect(summary).to_contain_text("of 7 answers match the expected output exactly",
                                    timeout=120_000)
    expect(summary).to_contain_text(
        "The dataset's field 'question' is given to the model as its field 'text'.")
    expect(page.locator("#batch-table")).to_contain_text("text: word06")
