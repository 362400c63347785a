"""Answering with base and tuned models: the same greedy answer as transformers + peft on the same
rendered prompt, streaming, stop sequences, choosing models and checkpoints, the model cache and
batch tests. The tuned model is the tiny 2-layer model tuned by the real runner and trainer."""

from dataclasses import replace
from pathlib import Path

import pytest

from storage.db import Store
from tests.inference_helpers import plain_greedy, tune_words
from tests.runner_helpers import REPO
from training.core.config import TuningConfig
from training.core.dataset import (
    CHAT_TEMPLATE, Dataset, Example, InputField, Message, PromptTemplate,
)
from training.core.errors import DatasetError, ModelError
from training.core.generation import TUNED_DEFAULTS, GenerationParams, save_generation_defaults
from training.core.template import prompt_text, render_example
from training.inference.batch_test import BatchResult, BatchRow, batch_csv, batch_test, fit_dataset
from training.inference.engine import build_prompt, generate, resolve_target, stream
from training.inference.model_cache import ModelCache
from training.inference.targets import Target, list_checkpoints, tuned_dir
from training.models import ModelRef

GREEDY = GenerationParams(max_output_tokens=16)


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model_dir):
    """(data_dir, tuned model id): the word-reversal task tuned for 2 epochs."""
    data_dir = tmp_path_factory.mktemp("library") / "data"
    return data_dir, tune_words(data_dir, tiny_model_dir)


@pytest.fixture(scope="module")
def cache():
    return ModelCache(precision="fp32")


def resolve(library, name=None, checkpoint=None) -> Target:
    data_dir, job_id = library
    with Store(data_dir) as store:
        return resolve_target(store, data_dir, job_id if name is None else name, checkpoint)


def answer_count(model, run) -> int:
    """Forward passes of ``model`` while ``run()`` runs (counted by a forward hook)."""
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        run()
    finally:
        handle.remove()
    return len(calls)


# ---- the same answer as transformers + peft ----

@pytest.mark.parametrize("word, checkpoint, max_tokens", [
    ("word03", None, 16), ("word38", None, 16), ("hello", None, 16), ("word17", None, 3),
    ("word21", "epoch-1", 16),
])
def test_greedy_answer_equals_transformers_and_peft_on_the_same_prompt(library, cache, tiny_model_dir, word, checkpoint, max_tokens):
    tuned = resolve(library, checkpoint=checkpoint)
    expected = plain_greedy(tiny_model_dir, tuned.adapter_dir, build_prompt(tuned, {"input": word}), max_tokens)
    assert len(expected) >= 3  # the tuned model writes something
    assert generate(tuned, {"input": word}, replace(GREEDY, max_output_tokens=max_tokens), cache=cache) == expected


def test_the_exact_path_gives_the_same_answer(library, cache):
    tuned = resolve(library)
    assert generate(tuned, "word09", GREEDY, cache=cache, exact=True) == generate(tuned, "word09", GREEDY, cache=cache)


def test_a_base_model_continues_a_text_like_transformers(library, cache, tiny_model_dir):
    base = resolve(library, str(tiny_model_dir))
    assert generate(base, "word12 reversed is", GREEDY, cache=cache) == plain_greedy(tiny_model_dir, None, "word12 reversed is", 16)


def test_the_streamed_pieces_join_to_the_answer(library, cache):
    tuned = resolve(library)
    pieces = list(stream(tuned, {"input": "word05"}, GREEDY, cache=cache))
    assert len(pieces) > 1
    assert "".join(pieces) == generate(tuned, {"input": "word05"}, GREEDY, cache=cache)


def test_a_stop_sequence_cuts_the_answer_and_ends_generation_early(library, cache):
    tuned = resolve(library)
    model = cache.get(tuned.base, tuned.adapter_dir, label=tuned.label).model
    params = replace(GREEDY, max_output_tokens=12)
    whole = generate(tuned, "word30", params, cache=cache)
    stop = whole[2:4]
    with_stop = replace(params, stop_sequences=(stop,))
    assert generate(tuned, "word30", with_stop, cache=cache) == whole[:whole.index(stop)]
    assert answer_count(model, lambda: generate(tuned, "word30", with_stop, cache=cache)) < \
        answer_count(model, lambda: generate(tuned, "word30", params, cache=cache))


def test_the_caller_runs_outside_inference_mode_between_pieces(library, cache):
    import torch

    for _ in stream(resolve(library), "word02", GREEDY, cache=cache):
        assert not torch.is_inference_mode_enabled()


def test_sampling_with_a_seed_gives_the_same_answer_again(library, cache):
    tuned = resolve(library)
    params = GenerationParams(temperature=1.0, top_p=0.9, top_k=20, max_output_tokens=12, seed=11)
    assert generate(tuned, "word07", params, cache=cache) == generate(tuned, "word07", params, cache=cache)


def test_settings_are_checked_before_anything_loads(library):
    with pytest.raises(Exception, match="Temperature is 3: use a number"):
        list(stream(resolve(library), "word01", GenerationParams(temperature=3), cache=ModelCache()))


# ---- choosing a model ----

def test_a_tuned_model_carries_its_adapter_template_and_limits(library):
    data_dir, job_id = library
    tuned = resolve(library)
    assert tuned.adapter_dir == tuned_dir(data_dir, job_id) / "adapter"
    assert tuned.template.preamble == "Reverse the word."
    assert (tuned.defaults, tuned.max_input_tokens, tuned.label) == (TUNED_DEFAULTS, 64, job_id)


def test_checkpoints_are_listed_by_epoch_and_can_be_chosen(library):
    data_dir, job_id = library
    assert list_checkpoints(data_dir, job_id) == ["epoch-1", "epoch-2"]
    first = resolve(library, checkpoint="epoch-1")
    assert first.adapter_dir == tuned_dir(data_dir, job_id) / "checkpoints" / "epoch-1" / "adapter"
    assert first.label == f"{job_id} (epoch-1)"


def test_generation_defaults_saved_for_a_tuned_model_are_its_defaults(library):
    data_dir, job_id = library
    path = save_generation_defaults(tuned_dir(data_dir, job_id), GenerationParams(temperature=0.4))
    try:
        assert resolve(library).defaults.temperature == 0.4
    finally:
        path.unlink()


@pytest.mark.parametrize("name, checkpoint, message", [
    ("", None, "No model was chosen: choose a tuned model from My Library or a base model."),
    ("nonesuch", None, "'nonesuch' is neither a tuned model in this library nor a base model: "
                       "choose a tuned model id shown in My Library, SmolLM2-135M-Instruct, a local "
                       "model folder or a Hugging Face model id such as HuggingFaceTB/SmolLM2-360M-Instruct."),
    (None, "epoch-9", "The tuned model 'reverser' has no checkpoint 'epoch-9': choose one of epoch-1, epoch-2."),
    ("HuggingFaceTB/SmolLM2-360M-Instruct", "epoch-1",
     "Checkpoints belong to tuned models, and 'HuggingFaceTB/SmolLM2-360M-Instruct' is a base model: "
     "leave the checkpoint empty or choose a tuned model."),
])
def test_a_model_that_cannot_be_used_is_named_with_what_to_choose(library, name, checkpoint, message):
    with pytest.raises(ModelError) as error:
        resolve(library, name, checkpoint)
    assert str(error.value) == message


def test_a_tuned_model_still_in_the_queue_is_not_ready(library, tiny_model_dir):
    data_dir, _ = library
    with Store(data_dir) as store:
        job = store.create_job(display_name="Waiting", description="", base_model=str(tiny_model_dir),
                               dataset_version_id=store.get_version("words").id,
                               config=TuningConfig(), eval_dataset_version_id=None)
        with pytest.raises(ModelError) as error:
            resolve_target(store, data_dir, job.id)
        store.delete_job(job.id)
    assert str(error.value) == ("The tuned model 'waiting' is not ready yet (it is queued) and has no "
                                "checkpoint yet: wait until training finishes.")


# ---- prompts ----

def test_a_chat_is_prompted_exactly_as_chat_training_renders_it(tokenizer):
    chat = Target("chatty", ModelRef("x", "x", "local"), Path("adapter"), CHAT_TEMPLATE, TUNED_DEFAULTS)
    messages = [Message("system", "Answer briefly."), Message("user", "Hi"),
                Message("assistant", "Hello! How can I help?"), Message("user", "What is 2+2?")]
    trained = Example({"system": "Answer briefly.", "history": "user: Hi\nassistant: Hello! How can I help?",
                       "user": "What is 2+2?"}, "4")
    expected = prompt_text(render_example(CHAT_TEMPLATE, trained, tokenizer))
    assert build_prompt(chat, messages, tokenizer) == expected
    assert build_prompt(chat, [{"role": m.role, "content": m.content} for m in messages], tokenizer) == expected


@pytest.mark.parametrize("target, request_, message", [
    ("tuned", {"question": "x"}, "The tuned model 'reverser' has no input field 'question': its fields are input."),
    ("tuned", {"input": "  "}, "Every input field is empty: fill in input."),
    ("tuned", [Message("user", "hi")], "The tuned model 'reverser' was tuned on structured prompts, not chats: fill in its input fields (input)."),
    ("chat", {"question": "x", "user": "hi"}, "A chat takes the fields system, history and user; 'question' is not one of them."),
    ("chat", [Message("user", "hi"), Message("assistant", "hello")], "The conversation must end with a user message: type a message for the model to answer."),
    ("base", {"input": "x"}, "The base model base has no prompt template, so it takes a text or a chat, not input fields: type a prompt, or compare it with a tuned model to use that model's fields."),
    ("base", " ", "The prompt is empty: type something for the model to continue."),
    ("base", [Message("user", "hi"), Message("assistant", "hello")], "The conversation must end with a user message: type a message for the model to answer."),
])
def test_a_request_that_does_not_fit_the_model_says_what_to_give(library, tokenizer, target, request_, message):
    tuned = resolve(library)
    chosen = {"tuned": tuned, "chat": replace(tuned, template=CHAT_TEMPLATE),
              "base": replace(tuned, name="base", adapter_dir=None, template=None)}[target]
    with pytest.raises(DatasetError) as error:
        build_prompt(chosen, request_, tokenizer)
    assert str(error.value) == message


# ---- the model cache ----

def test_the_least_recently_used_model_is_evicted_first(library, tiny_model_dir):
    base, final, first = (resolve(library, str(tiny_model_dir)), resolve(library),
                          resolve(library, checkpoint="epoch-1"))
    size = ModelCache(precision="fp32").get(base.base).nbytes
    cache = ModelCache(max_bytes=int(2.5 * size), precision="fp32")
    for target in (base, final, base, first):
        cache.get(target.base, target.adapter_dir, label=target.label)
    assert cache.labels() == [base.label, first.label]
    assert cache.used_bytes <= cache.max_bytes


def test_two_threads_asking_for_one_model_load_it_once(library):
    import threading

    tuned, cache, loaded = resolve(library), ModelCache(precision="fp32"), []
    threads = [threading.Thread(target=lambda: loaded.append(cache.get(tuned.base, tuned.adapter_dir)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loaded[0] is loaded[1] and len(cache.labels()) == 1


def test_the_status_line_counts_models_and_memory(library):
    cache = ModelCache(max_bytes=4 * 10**9, precision="fp32")
    assert cache.status() == "No model loaded (room for 4.0 GB)."
    tuned = resolve(library)
    cache.get(tuned.base, tuned.adapter_dir)
    assert cache.status() == "1 model loaded, 0.0 GB of 4.0 GB."


# ---- batch test ----

def test_batch_test_reports_the_exact_match_rate(library, cache):
    tuned = resolve(library)
    words = [f"word{n:02d}" for n in range(4)]
    produced = [generate(tuned, w, None, cache=cache) for w in words[:2]]
    dataset = Dataset(tuned.template, tuple(Example({"input": w}, out, f"row {i + 1}") for i, (w, out)
                                            in enumerate(zip(words, produced + ["nope", "nope"]))))
    result = batch_test(tuned, dataset, cache=cache)
    assert [row.exact for row in result.rows] == [True, True, False, False]
    assert (result.exact_match_rate, result.summary()) == (
        0.5, "2 of 4 answers match the expected output exactly (50%).")
    assert len(batch_test(tuned, dataset, limit=1, cache=cache).rows) == 1


def test_batch_test_gives_a_single_field_under_another_name_to_the_model(library, cache):
    tuned = resolve(library)
    produced = generate(tuned, "word01", None, cache=cache)
    dataset = Dataset(PromptTemplate(inputs=(InputField("question", "question:"),)),
                      (Example({"question": "word01"}, produced, "row 1"),))
    fitted, mapped, note = fit_dataset(tuned, dataset)
    assert note == "The dataset's field 'question' is given to the model as its field 'input'."
    assert mapped.template == tuned.template and mapped.examples[0].fields == {"input": "word01"}
    assert batch_test(tuned, dataset, cache=cache).matches == 1


def test_batch_test_refuses_a_dataset_with_other_fields(library, cache):
    dataset = Dataset(PromptTemplate(inputs=(InputField("question", "question:"),
                                             InputField("context", "context:"))), ())
    with pytest.raises(DatasetError) as error:
        batch_test(resolve(library), dataset, cache=cache)
    assert str(error.value) == ("The dataset's fields (question, context) are not the fields "
                                "'reverser' was tuned on (input): choose a dataset made with the "
                                "same prompt.")


def test_the_batch_table_downloads_as_csv_safe_for_spreadsheets():
    result = BatchResult("m", ("input",), (BatchRow("row 1", {"input": "=SUM(A1)"}, "-1", "-1", True),))
    assert batch_csv(result).decode("utf-8-sig") == (
        "input,expected,produced,exact\r\n'=SUM(A1),'-1,'-1,yes\r\n")


# ---- the real bundled model ----

def test_the_bundled_model_with_a_quickly_tuned_adapter_answers_like_transformers_and_peft(bundled_model_dir, tmp_path):
    from training.core.progress import NullSink
    from training.data import formats
    from training.tuning.trainer import train

    table = formats.read_file(REPO / "statics" / "samples" / "support_tickets.csv").table
    tickets = formats.map_columns(table, *formats.guess_mapping(table.header))
    base = ModelRef("SmolLM2-135M-Instruct", str(bundled_model_dir), "local")
    result = train(base_model=base, train_set=Dataset(tickets.template, tickets.examples[:16]), eval_set=None,
                   config=TuningConfig(epochs=1, batch_size=4, learning_rate=0.003, precision="fp32"),
                   output_dir=tmp_path, sink=NullSink())
    tuned = Target("tickets", base, result.adapter_dir, tickets.template, TUNED_DEFAULTS)
    cache = ModelCache(precision="fp32")
    for example in tickets.examples[100:102]:
        expected = plain_greedy(bundled_model_dir, result.adapter_dir, build_prompt(tuned, example.fields), 24)
        assert expected  # 4 steps: the answer is on its way to 'category: ...; urgency: ...'
        assert generate(tuned, example.fields, replace(GREEDY, max_output_tokens=24), cache=cache) == expected
