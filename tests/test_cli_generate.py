"""`python app.py generate`: a real process answering with a tuned tiny model, and its exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from storage.db import Store
from tests.inference_helpers import tune_words
from tests.runner_helpers import REPO
from training.core.generation import GenerationParams
from training.inference.engine import generate, resolve_target
from training.inference.model_cache import ModelCache


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model_dir):
    data_dir = tmp_path_factory.mktemp("cli-library") / "data"
    return data_dir, tune_words(data_dir, tiny_model_dir)


def run_generate(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", "generate", "--data-dir", str(data_dir), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_generate_prints_the_tuned_models_answer_and_exits_0(library):
    data_dir, job_id = library
    result = run_generate(data_dir, "--model", job_id, "--field", "input=word04", "--max-output-tokens", "12")
    with Store(data_dir) as store:
        target = resolve_target(store, data_dir, job_id)
    expected = generate(target, {"input": "word04"}, GenerationParams(max_output_tokens=12),
                        cache=ModelCache(precision="fp32"))
    assert (result.returncode, result.stdout) == (0, expected + "\n"), result.stderr
    assert result.stderr == ""


def test_a_single_field_model_takes_the_text_argument(library):
    data_dir, job_id = library
    by_field = run_generate(data_dir, "--model", job_id, "--field", "input=word11", "--max-output-tokens", "8")
    by_text = run_generate(data_dir, "--model", job_id, "word11", "--max-output-tokens", "8")
    assert by_text.returncode == 0 and by_text.stdout == by_field.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "nonesuch", "hello"],
     "'nonesuch' is neither a tuned model in this library nor a base model: choose a tuned model id "
     "shown in My Library, SmolLM2-135M-Instruct, a local model folder or a Hugging Face model id "
     "such as HuggingFaceTB/SmolLM2-360M-Instruct.\n"),
    (["--model", "reverser", "--checkpoint", "epoch-7", "hello"],
     "The tuned model 'reverser' has no checkpoint 'epoch-7': choose one of epoch-1, epoch-2.\n"),
    (["--model", "reverser", "--temperature", "5", "hello"],
     "Temperature is 5: use a number from 0 (always the most likely token) to 2.\n"),
    (["--model", "reverser", "--field", "input"],
     "--field 'input' must be KEY=VALUE, e.g. --field question=Why?\n"),
])
def test_what_cannot_be_used_is_named_and_exits_2(library, args, message):
    result = run_generate(library[0], *args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)
