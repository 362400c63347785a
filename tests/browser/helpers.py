"""What several browser tests do the same way: tune from the command line, fill the form."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "statics" / "samples" / "support_tickets.csv"


def tune_from_the_command_line(data_dir: Path, name: str, *, data: Path = SAMPLE,
                               model: Path | None = None, epochs: int = 2,
                               batch_size: int = 16) -> None:
    """A finished tuned model in the studio's library, made by ``app.py tune`` (the bundled
    model unless ``model`` is given)."""
    command = [sys.executable, "app.py", "tune", "--data", str(data), "--name", name,
               "--epochs", str(epochs), "--batch-size", str(batch_size),
               "--data-dir", str(data_dir)]
    if model is not None:
        command += ["--model", str(model)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def save_sample_dataset(page, name: str):
    page.get_by_role("button", name="Load the sample dataset").click()
    expect(page.locator("#report")).to_contain_text("Ready: 150 examples", timeout=60_000)
    page.locator("#dataset-name textarea, #dataset-name input").first.fill(name)
    page.locator("#save").click()
    expect(page.locator("#save-message")).to_contain_text(f"Saved {name} version 1")


def fill_new_model(page, name: str, base_model: str, dataset: str, epochs: int):
    page.get_by_role("tab", name="New tuned model").click()
    page.locator("#new-name textarea, #new-name input").first.fill(name)
    base = page.locator("#new-base-model input")
    base.fill(base_model)
    base.press("Enter")
    page.locator("#new-dataset input").click()
    page.get_by_role("option", name=dataset, exact=True).click()
    expect(page.locator("#new-version input")).to_have_value(re.compile("version 1"))
    epochs_box = page.locator("#new-epochs input")
    epochs_box.fill(str(epochs))
    page.locator("#new-batch-size input").fill("8")
