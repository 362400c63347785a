"""Downloading a tuned model from My Library, as a person does: select it, click a download
button, click the zip's link, and find a complete model in the zip the browser saved."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import expect

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "statics" / "samples" / "support_tickets.csv"
JOB_ID = "export-model"
EXAMPLES = 20  # the fewest the studio tunes on: one epoch is two steps on the bundled model
EXPORT_TIMEOUT_MS = 180_000  # merging and zipping 135 M parameters in float32 (540 MB)


def first_rows(source: Path, target: Path, count: int) -> Path:
    with source.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))[:count + 1]  # with the header
    with target.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)
    return target


@pytest.fixture(scope="module")
def tuned(studio_server, tmp_path_factory) -> str:
    """An ACTIVE tuned model of the bundled base model: 20 examples, one epoch (a few seconds)."""
    data = first_rows(SAMPLE, tmp_path_factory.mktemp("export-data") / "export-tickets.csv", EXAMPLES)
    done = subprocess.run(
        [sys.executable, "app.py", "tune", "--data", str(data), "--name", "Export model",
         "--epochs", "1", "--batch-size", "10", "--data-dir", str(studio_server.data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return JOB_ID


def open_job(page, server, job_id: str):
    page.goto(server.url)
    page.get_by_role("tab", name="My Library").click()
    page.locator("#library-jobs [role=gridcell]", has_text=job_id).first.click()
    expect(page.locator("#job-header")).to_contain_text("ACTIVE (succeeded)")


def download_export(page, button_name: str, zip_name: str) -> zipfile.ZipFile:
    """Click a download button, wait for the zip's link, click it: the zip the browser saved
    (in the browser context's downloads folder, removed with the page)."""
    page.get_by_role("button", name=button_name, exact=True).click()
    name_cell = page.get_by_role("cell", name=zip_name, exact=True)
    expect(page.locator("#job-file").get_by_role("row").filter(has=name_cell)).to_be_visible(
        timeout=EXPORT_TIMEOUT_MS)
    link = page.locator("#job-file").get_by_role("row").filter(has=name_cell).get_by_role("link")
    expect(link).to_have_attribute("download", zip_name)
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == zip_name
    return zipfile.ZipFile(download.path())


def test_download_the_merged_model_then_the_adapter(page, studio_server, tuned):
    open_job(page, studio_server, tuned)
    expect(page.locator("#job-file")).to_be_hidden()

    with download_export(page, "Download merged model", f"{tuned}-merged.zip") as merged:
        root = f"{tuned}-merged/"
        names = set(merged.namelist())
        assert {root + name for name in ("config.json", "model.safetensors",
                                         "generation_config.json", "tokenizer.json",
                                         "tokenizer_config.json", "chat_template.jinja",
                                         "prompt_template.json", "README.md")} <= names
        assert all(name.startswith(root) for name in names)
        assert not any("adapter" in name for name in names)  # merged: no peft files
        assert json.loads(merged.read(root + "config.json"))["architectures"] == ["LlamaForCausalLM"]
        # The tokenizer's chat template is the training prompt, not the base model's chat turns.
        assert "subject:" in merged.read(root + "chat_template.jinja").decode()
        template = json.loads(merged.read(root + "prompt_template.json"))
        assert [field["key"] for field in template["inputs"]] == ["subject", "message"]
        card = merged.read(root + "README.md").decode()
        assert 'base_model: "HuggingFaceTB/SmolLM2-135M-Instruct"' in card
        assert "| base model | SmolLM2-135M-Instruct |" in card
        assert "# Export model" in card

    with download_export(page, "Download adapter", f"{tuned}-adapter.zip") as adapter:
        root = f"{tuned}-adapter/"
        names = set(adapter.namelist())
        assert {root + name for name in ("adapter_config.json", "adapter_model.safetensors",
                                         "template.json", "chat_template.jinja",
                                         "generation.json", "README.md")} <= names
        assert all(name.startswith(root) for name in names)
        assert json.loads(adapter.read(root + "adapter_config.json"))["peft_type"] == "LORA"
        assert json.loads(adapter.read(root + "template.json")) == template
        assert "subject:" in adapter.read(root + "chat_template.jinja").decode()
        card = adapter.read(root + "README.md").decode()
        assert 'base_model: "HuggingFaceTB/SmolLM2-135M-Instruct"' in card
        assert "library_name: peft" in card


def test_download_gguf_with_a_quantization(page, studio_server, tuned):
    open_job(page, studio_server, tuned)
    choice = page.locator("#job-gguf-quantization input")
    expect(choice).to_have_value("q8_0")
    choice.click()
    page.get_by_role("option", name="q4_k_m", exact=True).click()
    with download_export(page, "Download GGUF", f"{tuned}-q4_k_m-gguf.zip") as gguf:
        root = f"{tuned}-q4_k_m-gguf/"
        assert sorted(gguf.namelist()) == [root + "Modelfile", root + "README.md",
                                           root + f"{tuned}-q4_k_m.gguf"]
        assert gguf.read(root + f"{tuned}-q4_k_m.gguf")[:4] == b"GGUF"
        modelfile = gguf.read(root + "Modelfile").decode()
        assert f"FROM ./{tuned}-q4_k_m.gguf" in modelfile
        assert "subject: {{ .Prompt }}" in modelfile
        assert "library_name: gguf" in gguf.read(root + "README.md").decode()
