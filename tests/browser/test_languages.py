"""A whole walk in each language: upload -> report -> save -> tune -> My Library, with no English
left on the page except the data, the model names and technical names."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from studio import i18n
from tests.browser.helpers import SAMPLE
from training.core import messages

TECHNICAL = {"lora", "csv", "tsv", "xlsx", "json", "jsonl", "gguf", "bf16", "fp32", "auto",
             "cpu", "smollm2", "instruct", "gradio", "api", "mb", "id",
             "alpha", "dropout", "proj", "gate", "down",  # LoRA's terms and the layers' names
             "llama", "cpp", "ollama", "modelfile",  # the runtimes a GGUF export is for
             "gpu", "fsdp"}
"""Names that stay as they are in every language."""

DATA = ["#grid", "#prompt-preview", "#mapping-preview", "#fields", "#preamble", "#output-label",
        "#dataset-name", "#saved-datasets", "#token-model", "#new-base-model", "#new-dataset",
        "#new-name", "#new-version", "#job-log", "#map-inputs", "#map-output", "#upload .file-name",
    "footer", ".sr-only", "[data-testid=status-tracker]"]
"""Where the page shows the user's data, names and paths (and Gradio's footer, its
screen-reader-only status line, which is not shown, and its progress overlay, whose "processing |"
Gradio writes in English for every language while an event runs)."""

VISIBLE_TEXT_WITHOUT_DATA = """(selectors) => {
    const hidden = [];
    for (const selector of selectors) {
        for (const el of document.querySelectorAll(selector)) {
            hidden.push([el, el.style.display]);
            el.style.display = 'none';
        }
    }
    const text = document.body.innerText;
    for (const [el, display] of hidden) el.style.display = display;
    return text;
}"""


COMMON_ENGLISH = set("""the and from with whole number least for your this that step steps loss
examples example error errors rows row columns column saved save version ready training epoch
epochs tuned model accuracy eval left queued running cancelled finished waiting tokens input
output mean upload drop file here click detected prompt preview name dataset state progress
created final base""".split())


def english_words(language: str) -> set[str]:
    """Words of the English interface and messages (and common English words) that the other
    language does not use."""
    def words(tables):
        found = set()
        for table in tables:
            for value in table.values():
                found |= {w.lower() for w in re.findall(r"[A-Za-z]{3,}", re.sub(r"\{[^}]*\}", "", value))}
        return found

    other = {"zh-CN": (i18n.ZH, messages.ZH), "fr": (i18n.FR, messages.FR)}[language]
    return (words((i18n.EN, messages.EN)) | COMMON_ENGLISH) - words(other) - TECHNICAL


def english_left(page, language: str, *names: str) -> list[str]:
    text = page.evaluate(VISIBLE_TEXT_WITHOUT_DATA, DATA)
    for name in (*names, *(n.lower().replace(" ", "-") for n in names), SAMPLE.stem):
        text = text.replace(name, " ")  # the user's names are data
    vocabulary = english_words(language)

    def english(word: str) -> bool:  # Chinese has no Latin words but names; French shares some
        return word.lower() not in TECHNICAL if language == "zh-CN" else word.lower() in vocabulary

    left = sorted({w for w in re.findall(r"[A-Za-z]{3,}", text) if english(w)})
    for word in left:
        at = text.find(word)
        print(f"English left: {word!r} in {text[max(0, at - 60):at + 60]!r}")
    return left


@pytest.mark.parametrize("page_locale, language, picker, ready, finished", [
    ("zh-CN", "zh-CN", "简体中文", "就绪：150 个示例，没有错误", "可用（已完成）"),
    ("fr-FR", "fr", "Français", "Prêt : 150 exemples, aucune erreur", "ACTIF (terminé)"),
])
def test_upload_report_tune_library_in_the_pages_language(page, module_studio_server,
                                                          tiny_model_dir, language, picker,
                                                          ready, finished):
    server = module_studio_server
    name, dataset = f"Walk {language}", f"tickets {language}"
    tabs = page.locator("button[role=tab]")
    page.goto(server.url)
    expect(page.locator("#language input")).to_have_value(picker)  # the language in use
    page.locator("#upload input[type=file]").set_input_files(str(SAMPLE))
    expect(page.locator("#report")).to_contain_text(ready, timeout=60_000)
    expect(page.locator("#detected")).to_contain_text(messages.CATALOGUE[language]["data.detected"])
    page.locator("#dataset-name textarea, #dataset-name input").first.fill(dataset)
    page.locator("#save").click()
    expect(page.locator("#save-message")).to_contain_text(dataset)
    assert english_left(page, language, name, dataset, str(tiny_model_dir)) == []

    tabs.nth(1).click()
    page.locator("#new-name textarea, #new-name input").first.fill(name)
    base = page.locator("#new-base-model input")
    base.fill(str(tiny_model_dir))
    base.press("Enter")
    page.locator("#new-dataset input").click()
    page.get_by_role("option", name=dataset, exact=True).click()
    page.locator("#new-epochs input").fill("2")
    page.locator("#new-batch-size input").fill("16")
    page.locator("#new-tune").click()

    header = page.locator("#job-header")
    expect(header).to_contain_text(finished, timeout=120_000)
    expect(page.locator("#job-log textarea")).to_have_value(
        re.compile(messages.CATALOGUE[language]["log.finished"].split("{")[0]))
    page.wait_for_timeout(1500)  # the table and the chart follow within a second
    assert english_left(page, language, name, dataset, str(tiny_model_dir)) == []

    tabs.nth(1).click()  # a refusal, in the page's language too
    page.wait_for_timeout(2000)  # the tab's refresh of its lists lands first (see the note)
    advanced = {"zh-CN": i18n.ZH, "fr": i18n.FR}[language]["new.advanced"]
    page.locator("#new-advanced").get_by_text(advanced).click()
    page.locator("#new-eval-rows input").fill("145")  # leaves 5 of 150 for training: refused
    page.locator("#new-eval-rows input").press("Tab")
    expect(page.locator("#new-eval-rows input")).to_have_value("145")
    page.locator("#new-tune").click()
    too_many = messages.CATALOGUE[language]["request.eval_rows_too_many"].split("{")[0]
    expect(page.locator("#new-message")).to_contain_text(too_many.strip())
    assert english_left(page, language, name, dataset, str(tiny_model_dir)) == []
