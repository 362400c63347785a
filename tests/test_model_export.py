"""Downloading a tuned model: the merged zip loads in plain transformers and answers as the studio
does, the adapter zip loads in peft, the exported chat template renders the studio's prompt, and
the model card says what the model is. The tuned model is the tiny 2-layer model tuned by the
real runner and trainer."""

import contextlib
import io
import json
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from storage.db import Store
from tests.inference_helpers import tune_words
from tests.runner_helpers import word_dataset
from training.core.config import TuningConfig
from training.core.dataset import CHAT_TEMPLATE, Dataset, Example, InputField, PromptTemplate
from training.core.errors import ModelError, NotFoundError
from training.core.generation import GenerationParams, save_generation_defaults
from training.core.progress import EvalMetrics
from training.core.template import render_example, render_prompt
from training.export.model_card import example_messages, generation_settings, model_card
from training.export.model_export import (
    chat_template_for, export_adapter, export_merged, gather_facts, save_merged,
)
from training.inference.engine import generate, resolve_target
from training.inference.model_cache import ModelCache
from training.inference.targets import tuned_dir
from training.jobs.runner import JobRequest, JobRunner

TRICKY = 'Say "hi" {{ x }} {% raw %} {% endraw %} {# note #} \\n \' }} %} é 😀\n\tand go.'
"""A preamble with quotes, backslashes, braces and Jinja-looking text."""


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model_dir):
    """(data_dir, tuned model id): the word-reversal task tuned for 2 epochs."""
    data_dir = tmp_path_factory.mktemp("library") / "data"
    return data_dir, tune_words(data_dir, tiny_model_dir)


@pytest.fixture(scope="module")
def merged(library, tmp_path_factory) -> Path:
    """The merged export, unzipped."""
    with Store(library[0]) as store:
        archive = export_merged(store, *library)
    return unzip(archive, tmp_path_factory.mktemp("merged"))


@pytest.fixture(scope="module")
def adapter(library, tmp_path_factory) -> Path:
    with Store(library[0]) as store:
        archive = export_adapter(store, *library)
    return unzip(archive, tmp_path_factory.mktemp("adapter"))


def unzip(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(into)
    (folder,) = into.iterdir()
    return folder


def studio_answer(library, request) -> str:
    data_dir, job_id = library
    with Store(data_dir) as store:
        target = resolve_target(store, data_dir, job_id)
    return generate(target, request, cache=ModelCache(precision="fp32"))


def card_snippet(folder: Path) -> str:
    return re.search(r"```python\n(.*?)\n```", (folder / "README.md").read_text(), re.S).group(1)


def run_snippet(code: str, cwd: Path, monkeypatch) -> str:
    monkeypatch.chdir(cwd)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    return printed.getvalue().strip()


# ---- the merged model ----

@pytest.mark.parametrize("word", ["word03", "hello"])
def test_the_merged_model_gives_the_studios_greedy_answer_in_plain_transformers(library, merged, word):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(merged, local_files_only=True)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": word}],
                                           add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids)  # greedy and the length limit come from generation_config.json
    expected = studio_answer(library, word)
    assert len(expected) >= 3
    assert tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).lstrip() == expected


def test_the_merged_folder_is_safetensors_without_peft_files(merged):
    names = {p.name for p in merged.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "prompt_template.json",
            "README.md"} <= names
    assert not names & {"adapter_config.json", "adapter_model.safetensors"}


def test_the_merged_model_cards_snippet_prints_the_studios_answer(library, merged, monkeypatch):
    snippet = card_snippet(merged)
    assert "<input>" in snippet
    assert run_snippet(snippet, merged.parent, monkeypatch) == studio_answer(library, "<input>").strip()


def test_the_merged_generation_config_is_greedy_and_ends_at_eos(merged):
    config = json.loads((merged / "generation_config.json").read_text())
    assert (config["do_sample"], config["max_new_tokens"], config["eos_token_id"]) == (False, 256, 2)


def test_the_merged_prompt_template_is_the_studios(library, merged):
    template = PromptTemplate.from_dict(json.loads((merged / "prompt_template.json").read_text()))
    assert template == word_dataset(1).template


# ---- the adapter ----

def test_the_adapter_zip_holds_the_peft_folder_template_and_card(adapter):
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "template.json", "README.md"} <= names


def test_the_adapter_cards_snippet_loads_it_with_peft_and_prints_the_studios_answer(library, adapter, monkeypatch):
    snippet = card_snippet(adapter)
    assert "PeftModel.from_pretrained" in snippet
    assert run_snippet(snippet, adapter.parent, monkeypatch) == studio_answer(library, "<input>").strip()


# ---- the model card ----

@pytest.mark.parametrize("line", [
    "library_name: transformers", "| training examples | 40 |", "| evaluation examples | 0 |",
    "| dataset | words version 1 (40 examples) |", "| lora_rank | 4 |", "| learning_rate | 0.01 |",
    "| epochs | 2 of 2 |", "| steps | 20 of 20 |", "| state | ACTIVE (succeeded) |",
])
def test_the_model_card_names_data_settings_and_results(merged, line):
    assert line in (merged / "README.md").read_text()


def test_the_model_card_names_the_base_model_and_final_loss(library, merged, tiny_model_dir):
    with Store(library[0]) as store:
        job = store.get_job(library[1])
    card = (merged / "README.md").read_text()
    assert f"| base model | {tiny_model_dir} |" in card
    assert f"| final train loss (mean of the last epoch) | {job.final_loss:.4f} |" in card


def test_the_model_card_shows_the_last_evaluation_when_there_is_one(library):
    with Store(library[0]) as store:
        facts = gather_facts(store, *library)
    card = model_card(replace(facts, last_eval=EvalMetrics(20, 2.0, 1.23456, 0.5, 80), train_examples=30,
                              eval_examples=10), "merged")
    assert "| evaluation examples | 10 (held back from the dataset) |" in card
    assert "| eval loss at step 20 | 1.2346 |\n| eval token accuracy at step 20 | 0.5000 |" in card


def test_the_zips_land_in_the_exports_folder_and_nothing_else_is_left(library, merged, adapter):
    assert sorted(p.name for p in (library[0] / "exports").iterdir()) == ["reverser-adapter.zip",
                                                                         "reverser-merged.zip"]


# ---- the prompt template as a chat template ----

QUESTION = PromptTemplate(preamble=TRICKY, inputs=(InputField("question", 'Q "{{ q }}":'),
                                                   InputField("the context", "{% raw %}")),
                          output_label="A {%:")


@pytest.mark.parametrize("template, message, fields", [
    (PromptTemplate(preamble=TRICKY), {"content": "V {{ v }}"}, {"input": "V {{ v }}"}),
    (PromptTemplate(preamble=TRICKY), {"input": "by key"}, {"input": "by key"}),
    (PromptTemplate(inputs=(InputField("text", ""),), output_label=""), {"content": "x"}, {"text": "x"}),
    (QUESTION, {"question": "Why?", "the context": "Because."}, {"question": "Why?", "the context": "Because."}),
    (QUESTION, {"content": "Why?"}, {"question": "Why?"}),
    (QUESTION, {"the context": "only"}, {"the context": "only"}),
], ids=["content", "by-key", "no-labels", "multi-field", "content-is-the-first-field", "missing-field"])
def test_the_chat_template_renders_the_studios_prompt(tokenizer, template, message, fields):
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", **message}], chat_template=chat_template_for(template, tokenizer.chat_template),
        add_generation_prompt=True, tokenize=False)
    assert rendered == render_prompt(template, fields)


def test_the_chat_template_renders_a_training_example_with_its_answer(tokenizer):
    example = Example({"question": "Why?", "the context": "Because."}, "So {{ it }} is.")
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", **example.fields}, {"role": "assistant", "content": example.output}],
        chat_template=chat_template_for(QUESTION, None), tokenize=False)
    assert rendered == "".join(s.text for s in render_example(QUESTION, example, tokenizer))


def test_a_chat_model_keeps_the_base_models_chat_template(tokenizer):
    assert chat_template_for(CHAT_TEMPLATE, tokenizer.chat_template) == tokenizer.chat_template


def test_a_chat_model_without_a_base_chat_template_gets_the_studios_plain_turns(tokenizer):
    messages = [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "Hi {{ x }}"}]
    rendered = tokenizer.apply_chat_template(messages, chat_template=chat_template_for(CHAT_TEMPLATE, None),
                                             add_generation_prompt=True, tokenize=False)
    assert rendered == render_prompt(CHAT_TEMPLATE, {"system": " Be brief. ", "user": "Hi {{ x }}"}, None)


def test_the_example_message_carries_each_field_under_its_key():
    assert example_messages(QUESTION) == [{"role": "user", "question": "<question>",
                                           "the context": "<the context>"}]


# ---- generation defaults ----

@pytest.mark.parametrize("params, expected", [
    (GenerationParams(), dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                              max_new_tokens=256, stop_strings=None)),
    (GenerationParams(temperature=0.7, top_k=0, max_output_tokens=32, stop_sequences=("\n",)),
     dict(do_sample=True, temperature=0.7, top_p=0.95, top_k=0, max_new_tokens=32, stop_strings=["\n"])),
])
def test_the_generation_settings_carry_the_tuned_defaults(params, expected):
    assert generation_settings(params) == expected


# ---- errors ----

@pytest.mark.parametrize("events, message", [
    ((), "The tuned model 'tickets' has no adapter to download yet (it is CREATING, queued): wait "
         "until it is ACTIVE, then download it."),
    (("start", "fail"), "The tuned model 'tickets' has no adapter to download (it is failed and kept "
                        "no checkpoint): tune it again."),
], ids=["queued", "failed"])
def test_a_job_with_no_adapter_says_what_to_do(data_dir, events, message):
    with Store(data_dir) as store:
        version = store.save_dataset("words", word_dataset(12))
        job = store.create_job(display_name="Tickets", description="", base_model="x",
                               dataset_version_id=version.id, config=TuningConfig())
        for event in events:
            store.change_job_state(job.id, event)
        with pytest.raises(ModelError) as raised:
            export_merged(store, data_dir, job.id)
    assert str(raised.value) == message


def test_an_unknown_model_is_not_found(data_dir):
    with Store(data_dir) as store, pytest.raises(NotFoundError):
        export_adapter(store, data_dir, "nope")


# ---- the real bundled model ----

def test_a_merged_bundled_chat_model_keeps_its_chat_template_and_answers_as_the_studio(bundled_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data_dir = tmp_path / "data"
    (data_dir / "models").mkdir(parents=True)
    (data_dir / "models" / bundled_model_dir.name).symlink_to(bundled_model_dir)  # nothing to convert
    words = [f"word{n:02d}" for n in range(20)]
    chats = Dataset(CHAT_TEMPLATE, tuple(Example({"system": "", "history": "", "user": w}, w[::-1]) for w in words))
    job_id = tune(data_dir, bundled_model_dir.name, chats, epochs=1, batch_size=10, learning_rate=0.003,
                  lora_rank=4, max_input_tokens=64, max_output_tokens=8, precision="fp32")
    save_generation_defaults(tuned_dir(data_dir, job_id), GenerationParams(max_output_tokens=12))
    folder = tmp_path / "merged"  # the folder export_merged zips: zipping 540 MB takes 30 s
    with Store(data_dir) as store:
        save_merged(gather_facts(store, data_dir, job_id), folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    messages = [{"role": "user", "content": "word05"}]
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(bundled_model_dir).chat_template
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).lstrip()
    assert answer and answer == studio_answer((data_dir, job_id), messages)


def tune(data_dir: Path, base_model: str, dataset: Dataset, **config) -> str:
    """Tune ``base_model`` on ``dataset`` with the real runner; the tuned model's id."""
    with Store(data_dir) as store:
        version = store.save_dataset("chats", dataset)
        runner = JobRunner(store, data_dir, poll_interval_s=0.05)
        runner.start()
        try:
            job = runner.submit(JobRequest("Chat", "", base_model, version.id, TuningConfig(**config)))
            job = runner.wait(job.id, timeout_s=240)
        finally:
            runner.stop()
    assert job.state == "succeeded", job.error
    return job.id
