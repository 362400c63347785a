"""GGUF export, checked by llama.cpp itself: the tiny model tuned by the real runner is exported
with llama.cpp's converter, loaded by ``llama-cpp-python`` (built from source by pip), and asked
held-out rows through the chat template stored in the file; its greedy answers are the studio's.
The Modelfile renders the same prompt; a failure names its step and leaves no file behind."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from storage.db import Store
from tests.inference_helpers import tune_words
from tests.runner_helpers import word_dataset
from training.core.errors import ModelError
from training.core.template import render_prompt
from training.export.gguf import QUANTIZATIONS, export_gguf
from training.export.model_export import chat_template_for
from training.export.ollama import go_template
from training.inference.engine import generate, resolve_target
from training.inference.model_cache import ModelCache

HELD_OUT = ["word47", "word58", "word63", "word71", "hello", "lamp"]
"""Inputs the model was not tuned on (it was tuned on word00 to word39)."""

Q8_AGREEMENT = 5
"""Of the 6 held-out rows, Q8_0's greedy answer equals the studio's on at least this many."""


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model_dir):
    data_dir = tmp_path_factory.mktemp("gguf") / "data"
    return data_dir, tune_words(data_dir, tiny_model_dir)


@pytest.fixture(scope="module")
def exports(library, tmp_path_factory) -> dict[str, Path]:
    """Quantization -> the unzipped export folder (f32, q8_0, q4_k_m)."""
    data_dir, job_id = library
    found, steps = {}, []
    with Store(data_dir) as store:
        for quantization in ("f32", "q8_0", "q4_k_m"):
            archive = export_gguf(store, data_dir, job_id, quantization,
                                  progress=lambda done, what: steps.append((done, what)))
            into = tmp_path_factory.mktemp(quantization)
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(into)
            (found[quantization],) = into.iterdir()
    assert [what for _, what in steps[:3]] == ["Merging the adapter into the base model…",
                                               "Converting to GGUF with llama.cpp's converter…",
                                               "Packing the GGUF file, the Modelfile and the "
                                               "model card…"]
    assert "Quantizing with llama.cpp…" in [what for _, what in steps]
    return found


def gguf_file(folder: Path) -> Path:
    (path,) = folder.glob("*.gguf")
    return path


def studio_answer(library, text: str) -> str:
    data_dir, job_id = library
    with Store(data_dir) as store:
        target = resolve_target(store, data_dir, job_id)
    return generate(target, text, cache=ModelCache(precision="fp32"))


LLAMA = """
import json, sys
from llama_cpp import Llama

llm = Llama(model_path=sys.argv[1], n_ctx=1024, n_threads=1, verbose=False, seed=0)
print(json.dumps([llm.create_chat_completion([{"role": "user", "content": text}], temperature=0,
                                             max_tokens=256)["choices"][0]["message"]["content"]
                  for text in json.loads(sys.argv[2])]))
"""


def llama_answers(path: Path, texts: list[str]) -> list[str]:
    """Greedy chat completions from llama.cpp, prompted by the file's own chat template (in a
    child process: a crash in native code fails this test, not the whole run)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LLAMA, str(path), json.dumps(texts)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"llama.cpp exited with {done.returncode}: {done.stderr[-2000:]}"
    return json.loads(done.stdout)


def metadata(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()
            if name.startswith(("general.", "tokenizer.chat_template", "tokenizer.ggml.eos"))}


def test_the_f32_gguf_answers_held_out_rows_as_the_studio_does_in_llama_cpp(library, exports):
    expected = [studio_answer(library, text) for text in HELD_OUT]
    assert all(len(answer) >= 3 for answer in expected)
    answers = llama_answers(gguf_file(exports["f32"]), HELD_OUT)
    assert [answer.strip() for answer in answers] == [answer.strip() for answer in expected]


def test_the_q8_0_gguf_agrees_with_the_studio_on_held_out_rows(library, exports):
    expected = [studio_answer(library, text).strip() for text in HELD_OUT]
    answers = [a.strip() for a in llama_answers(gguf_file(exports["q8_0"]), HELD_OUT)]
    print("q8_0 agreement:", sum(a == e for a, e in zip(answers, expected)), "of", len(HELD_OUT))
    assert sum(a == e for a, e in zip(answers, expected)) >= Q8_AGREEMENT


def test_the_gguf_carries_the_prompt_as_its_chat_template_and_the_file_type(library, exports):
    template = word_dataset(1).template
    f32, q8, q4 = (metadata(gguf_file(exports[q])) for q in ("f32", "q8_0", "q4_k_m"))
    assert f32["tokenizer.chat_template"] == chat_template_for(template, None)
    assert (f32["general.file_type"], q8["general.file_type"], q4["general.file_type"]) == (0, 7, 15)
    sizes = {q: gguf_file(exports[q]).stat().st_size for q in ("f32", "q8_0", "q4_k_m")}
    assert sizes["q4_k_m"] < sizes["q8_0"] < sizes["f32"] / 2


def test_the_q4_k_m_gguf_loads_and_answers_in_llama_cpp(exports):
    (answer,) = llama_answers(gguf_file(exports["q4_k_m"]), ["word47"])
    assert isinstance(answer, str)


def test_the_modelfile_renders_the_tuned_prompt_with_the_tuned_defaults(library, exports):
    folder = exports["q8_0"]
    lines = (folder / "Modelfile").read_text().splitlines()
    assert f"FROM ./{gguf_file(folder).name}" in lines
    template = word_dataset(1).template
    assert f'TEMPLATE """{go_template(template)}"""' in "\n".join(lines)
    assert go_template(template).replace("{{ .Prompt }}", "word47") == \
        render_prompt(template, {"input": "word47"})
    assert 'PARAMETER stop "<|im_end|>"' in lines
    assert {"PARAMETER temperature 0", "PARAMETER top_k 40", "PARAMETER num_predict 256"} <= set(lines)
    assert f"ollama create {library[1]} -f Modelfile" in (folder / "README.md").read_text()


def test_an_export_of_a_checkpoint_names_it(library, tmp_path):
    data_dir, job_id = library
    with Store(data_dir) as store:
        archive = export_gguf(store, data_dir, job_id, "f16", checkpoint="epoch-1")
    assert archive.name == f"{job_id}-epoch-1-f16-gguf.zip"
    with zipfile.ZipFile(archive) as opened:
        names = opened.namelist()
    assert f"{job_id}-epoch-1-f16-gguf/{job_id}-epoch-1-f16.gguf" in names


def test_bad_choices_are_refused_with_what_to_choose(library):
    data_dir, job_id = library
    with Store(data_dir) as store:
        with pytest.raises(ModelError, match="quantization 'q3' is unknown: use one of "
                                             + ", ".join(QUANTIZATIONS)):
            export_gguf(store, data_dir, job_id, "q3")
        with pytest.raises(ModelError, match="has no checkpoint 'epoch-9'"):
            export_gguf(store, data_dir, job_id, "f16", checkpoint="epoch-9")


def test_a_model_llama_cpp_cannot_convert_fails_at_convert_and_leaves_nothing(tmp_path, tokenizer):
    """An OPT model (transformers has it, llama.cpp does not) tuned by the real runner."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    model = OPTForCausalLM(OPTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                     ffn_dim=64, num_attention_heads=2, word_embed_proj_dim=32,
                                     max_position_embeddings=256,
                                     eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id,
                                     bos_token_id=tokenizer.bos_token_id))
    base = tmp_path / "opt"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    data_dir = tmp_path / "data"
    job_id = tune_words(data_dir, base, epochs=1, target_modules=("q_proj", "v_proj"))
    with Store(data_dir) as store:
        with pytest.raises(ModelError, match="The GGUF export failed at converting to GGUF: .*OPT"):
            export_gguf(store, data_dir, job_id, "f16")
    assert sorted(p.name for p in (data_dir / "exports").iterdir()) == []
    assert json.loads((base / "config.json").read_text())["architectures"] == ["OPTForCausalLM"]


def test_app_py_export_writes_the_folder_and_says_where(library, tmp_path):
    import subprocess
    import sys

    from tests.runner_helpers import REPO

    data_dir, job_id = library
    command = [sys.executable, str(REPO / "app.py"), "export", job_id, "--quantization", "q8_0",
               "--checkpoint", "epoch-2", "--out", str(tmp_path / "out"), "--data-dir",
               str(data_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = Path(done.stdout.strip())
    assert folder == (tmp_path / "out" / f"{job_id}-epoch-2-q8_0-gguf").resolve()
    assert sorted(p.name for p in folder.iterdir()) == [
        "Modelfile", "README.md", f"{job_id}-epoch-2-q8_0.gguf"]
    assert "Converting to GGUF with llama.cpp's converter…" in done.stderr

    refused = subprocess.run([*command[:3], "no-such-model", "--data-dir", str(data_dir)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "There is no tuned model 'no-such-model'" in refused.stderr


def test_a_chat_model_on_a_chatml_base_gets_chatml_turns_and_the_default_system(tokenizer):
    from training.core.dataset import CHAT_TEMPLATE
    from training.export.ollama import CHATML, PLAIN_TURNS, _template

    template, system = _template(CHAT_TEMPLATE, tokenizer)
    assert template == CHATML
    assert system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    plain = type("NoTemplate", (), {"chat_template": None})()
    assert _template(CHAT_TEMPLATE, plain) == (PLAIN_TURNS, "")


def test_template_text_that_looks_like_go_template_syntax_stays_text():
    from training.core.dataset import InputField, PromptTemplate
    from training.export.ollama import _quoted, go_template

    template = PromptTemplate(preamble='Use {{ .System }} and """quotes""".',
                              inputs=(InputField("q", "Q:"),), output_label="A:")
    rendered = go_template(template)
    assert rendered == ('Use {{ "{{" }} .System }} and """quotes""".\n\nQ: {{ .Prompt }}\nA:')
    assert _quoted(rendered).count('"""') == 2


@pytest.fixture(scope="module")
def bundled_library(tmp_path_factory, bundled_model_dir):
    """The bundled 135M model tuned by the real runner on the word task (20 steps)."""
    from tests.runner_helpers import seed_bundled_model

    data_dir = tmp_path_factory.mktemp("gguf-bundled") / "data"
    seed_bundled_model(data_dir, bundled_model_dir)
    return data_dir, tune_words(data_dir, "SmolLM2-135M-Instruct", name="Bundled reverser",
                                learning_rate=0.003)


def test_the_bundled_model_tuned_and_exported_answers_as_the_studio_in_llama_cpp(
        bundled_library, tmp_path):
    """End to end on the real default model: f16 equals the studio's greedy answers on held-out
    rows; Q8_0 agrees on at least Q8_AGREEMENT of them."""
    data_dir, job_id = bundled_library
    expected = [studio_answer(bundled_library, text).strip() for text in HELD_OUT]
    found = {}
    with Store(data_dir) as store:
        for quantization in ("f16", "q8_0"):
            archive = export_gguf(store, data_dir, job_id, quantization)
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(tmp_path / quantization)
            (path,) = (tmp_path / quantization).rglob("*.gguf")
            found[quantization] = [a.strip() for a in llama_answers(path, HELD_OUT)]
    print("bundled f16 / q8_0 agreement:", *(sum(a == e for a, e in zip(found[q], expected))
                                             for q in found), "of", len(HELD_OUT), expected)
    assert found["f16"] == expected
    assert sum(a == e for a, e in zip(found["q8_0"], expected)) >= Q8_AGREEMENT
