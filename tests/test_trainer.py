"""The LoRA trainer: tokenizing and batching, loss on output tokens, the training loop, its
checkpoints, stop and resume, evaluation and early stopping, and one real run of the bundled model.

Training tests run the real ``train`` on the 2-layer random model (``tiny_model_dir``) on CPU."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training.core.config import ConfigError, TuningConfig
from training.core.dataset import Dataset, Example, InputField, PromptTemplate
from training.core.errors import DatasetError, TrainingError
from training.core.messages import english
from training.core.template import render_example, token_counts
from training.models import ModelRef
from training.tuning.batching import (
    IGNORE_INDEX, TokenizedExample, collate, plan_batches, split_eval, tokenize_examples, truncate,
)
from training.tuning.hardware import (
    cpu_has_bf16_flags, is_out_of_memory, out_of_memory_error, pick_precision,
)
from training.tuning.loss import score_logits, select_outputs
from training.tuning.trainer import estimate, learning_rate_factor, train

COLOURS = ("red", "green", "blue")
TEMPLATE = PromptTemplate(preamble="Name the colour.", inputs=(InputField("item", "item:"),),
                          output_label="colour:")


def colour_dataset(count: int = 24) -> Dataset:
    """A small learnable task: the colour of an item is its number modulo 3."""
    return Dataset(TEMPLATE, tuple(Example({"item": f"thing {n}"}, COLOURS[n % 3], f"row {n + 1}")
                                   for n in range(count)))


FAST = TuningConfig(epochs=2, batch_size=4, learning_rate=0.01, precision="fp32")


class RecordingSink:
    """Keeps every report of a run, in order."""

    def __init__(self):
        self.started, self.steps, self.evals, self.epochs, self.checkpoints, self.lines = [], [], [], [], [], []

    def on_start(self, total_steps, steps_per_epoch, first_step):
        self.started.append((total_steps, steps_per_epoch, first_step))

    def on_step(self, metrics):
        self.steps.append(metrics)

    def on_eval(self, metrics):
        self.evals.append(metrics)

    def on_epoch(self, snapshot):
        self.epochs.append(snapshot)

    def on_checkpoint(self, epoch, step, path):
        self.checkpoints.append((epoch, step, Path(path)))

    def log(self, key, **params):
        self.lines.append(english(key, **params))

    @property
    def losses(self):
        return [m.loss for m in self.steps]


def tiny(folder) -> ModelRef:
    return ModelRef("tiny", str(folder), "local")


def run(model_dir, out, config=FAST, dataset=None, eval_set=None, sink=None, **kwargs):
    sink = sink or RecordingSink()
    result = train(base_model=tiny(model_dir), train_set=dataset or colour_dataset(),
                   eval_set=eval_set, config=config, output_dir=out, sink=sink, **kwargs)
    return result, sink


# --- tokenizing, truncating, splitting, batching -----------------------------------------------


def test_labels_are_ignored_on_prompt_tokens_and_are_the_output_tokens(tokenizer):
    [example] = tokenize_examples(colour_dataset(1), tokenizer, TuningConfig())
    output = tokenizer(" red" + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    prompt_length = example.length - len(output)
    assert example.labels[:prompt_length] == (IGNORE_INDEX,) * prompt_length
    assert list(example.labels[prompt_length:]) == output == list(example.input_ids[prompt_length:])


def test_token_lengths_are_those_the_dataset_report_counts(tokenizer):
    dataset = colour_dataset(5)
    counts = token_counts([render_example(TEMPLATE, ex, tokenizer) for ex in dataset.examples], tokenizer)
    examples = tokenize_examples(dataset, tokenizer, TuningConfig())
    assert [(ex.length - ex.num_predictions, ex.num_predictions) for ex in examples] == counts


@pytest.mark.parametrize("max_in, max_out, ids, labels", [
    (9, 9, (1, 2, 3, 4, 5, 6), (IGNORE_INDEX,) * 4 + (5, 6)),   # under both limits: unchanged
    (2, 9, (3, 4, 5, 6), (IGNORE_INDEX,) * 2 + (5, 6)),          # prompt loses its beginning
    (9, 1, (1, 2, 3, 4, 5), (IGNORE_INDEX,) * 4 + (5,)),         # output loses its end
    (1, 1, (4, 5), (IGNORE_INDEX, 5)),                           # both
])
def test_truncation_cuts_the_prompt_from_the_left_and_the_output_at_the_end(max_in, max_out, ids, labels):
    example = truncate([([1, 2, 3, 4], False), ([5, 6], True)], max_in, max_out)
    assert (example.input_ids, example.labels) == (ids, labels)


def test_a_conversation_over_the_input_limit_loses_its_earliest_turns():
    parts = [([1, 2], False), ([3], True), ([4, 5], False), ([6, 7], True)]
    example = truncate(parts, 2, 10)
    assert example.input_ids == (4, 5, 6, 7)
    assert example.labels == (IGNORE_INDEX, IGNORE_INDEX, 6, 7)


def test_the_eval_split_is_chosen_by_the_seed_and_disjoint():
    dataset = colour_dataset(30)
    train_set, eval_set = split_eval(dataset, 10, seed=3)
    assert split_eval(dataset, 10, seed=3) == (train_set, eval_set)
    assert (len(train_set.examples), len(eval_set.examples)) == (20, 10)
    sources = sorted(ex.source for ex in train_set.examples + eval_set.examples)
    assert sources == sorted(ex.source for ex in dataset.examples)
    assert split_eval(dataset, 10, seed=4)[1] != eval_set
    assert split_eval(dataset, 0, seed=3) == (dataset, None)


def test_an_eval_split_must_leave_training_rows():
    with pytest.raises(DatasetError) as caught:
        split_eval(colour_dataset(10), 10, seed=0)
    assert str(caught.value) == ("Evaluation rows is 10 but the dataset has 10 examples: use fewer "
                                 "evaluation rows so that some remain for training, or add examples.")


def test_batches_hold_similar_lengths_and_change_with_seed_and_epoch():
    lengths = [n % 50 + 1 for n in range(200)]
    plan = plan_batches(lengths, 8, seed=0, epoch=1)
    assert sorted(i for batch in plan for i in batch) == list(range(200))
    assert max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan) <= 3
    assert plan == plan_batches(lengths, 8, seed=0, epoch=1)
    assert plan != plan_batches(lengths, 8, seed=0, epoch=2) != plan_batches(lengths, 8, seed=1, epoch=1)


def test_batches_are_padded_on_the_right_and_masked_only_when_padded():
    short, long = TokenizedExample((7, 8), (IGNORE_INDEX, 8)), TokenizedExample((1, 2, 3), (IGNORE_INDEX, 2, 3))
    batch = collate([short, long], pad_id=0)
    assert batch.input_ids.tolist() == [[7, 8, 0], [1, 2, 3]]
    assert batch.labels.tolist() == [[IGNORE_INDEX, 8, IGNORE_INDEX], [IGNORE_INDEX, 2, 3]]
    assert batch.attention_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert (batch.tokens, batch.num_predictions) == (5, 3)
    assert collate([long, long], pad_id=0).attention_mask is None


# --- loss and token accuracy -------------------------------------------------------------------


def test_token_accuracy_and_loss_count_only_output_positions():
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, 0], [IGNORE_INDEX, 1, IGNORE_INDEX, IGNORE_INDEX]])
    hidden = torch.arange(8.0).reshape(2, 4, 1)  # position t's "hidden state" is its index
    chosen, targets = select_outputs(hidden, labels)
    assert chosen.flatten().tolist() == [1.0, 2.0, 4.0]  # positions before each output token
    assert targets.tolist() == [2, 0, 1]
    logits = torch.tensor([[0.0, 0.0, 9.0], [0.0, 9.0, 0.0], [0.0, 9.0, 0.0]])  # right, wrong, right
    score = score_logits(logits, targets)
    assert (score.correct, score.count) == (2, 3)
    expected = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    assert float(score.loss_sum) == pytest.approx(float(expected))


def test_learning_rate_warms_up_then_decays_towards_zero():
    factors = [learning_rate_factor(i, 100) for i in range(100)]
    assert factors[:3] == [1 / 3, 2 / 3, 1.0]
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert 0 < factors[-1] < 0.001
    assert learning_rate_factor(0, 1) == 1.0


# --- hardware choices and errors ---------------------------------------------------------------


@pytest.mark.parametrize("flags, expected", [
    ("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile", True),
    ("flags\t\t: fpu avx2 amx_bf16", True),
    ("flags\t\t: fpu avx2 avx512f", False),
    ("Features\t: fp asimd bf16", False),
])
def test_bf16_needs_an_x86_bf16_instruction_set(flags, expected):
    assert cpu_has_bf16_flags(f"processor\t: 0\n{flags}\n") is expected


@pytest.mark.parametrize("flags, expected", [
    ("flags\t\t: fpu avx512_bf16 amx_bf16 amx_tile", True),
    ("flags\t\t: fpu avx512_bf16", False),
])
def test_amx_chooses_bf16_without_timing(flags, expected):
    """On AMX every process chooses bf16 alike, however busy the machine (no timing probe)."""
    from training.tuning.hardware import cpu_has_amx_bf16

    assert cpu_has_amx_bf16(f"processor\t: 0\n{flags}\n") is expected


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_an_explicit_precision_is_used_as_chosen(precision):
    assert pick_precision(TuningConfig(precision=precision), "cpu") == precision


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory) out of memory"),
])
def test_running_out_of_memory_says_what_to_lower(error):
    assert is_out_of_memory(error)
    message = str(out_of_memory_error(TuningConfig(batch_size=16), "cpu", 1200))
    assert message == ("Training ran out of memory with batch size 16 and examples of up to 1,200 "
                       "tokens: lower the batch size (e.g. to 8) or the maximum input tokens (now "
                       "8,192), then tune again.")


def test_other_errors_are_not_out_of_memory():
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_a_target_module_the_model_lacks_is_named(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError) as caught:
        run(tiny_model_dir, tmp_path, TuningConfig(target_modules=("q_proj", "qkv_proj")))
    assert str(caught.value) == ("Target modules qkv_proj is not a layer of this model: choose among "
                                 "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj.")


# --- training on the tiny model ----------------------------------------------------------------


def test_loss_decreases_on_a_small_learnable_task(tiny_model_dir, tmp_path):
    result, sink = run(tiny_model_dir, tmp_path, TuningConfig(epochs=4, batch_size=4, learning_rate=0.01))
    assert result.status == "completed" and result.last_step == 24
    means = [snapshot.mean_loss for snapshot in sink.epochs]
    assert means[-1] < means[0] - 0.1  # a random 2-layer model's logits cannot move much further
    assert means == sorted(means, reverse=True)
    assert result.final_loss == sink.epochs[-1].mean_loss
    assert sink.started == [(24, 6, 1)]
    assert [m.step for m in sink.steps] == list(range(1, 25))
    assert all(m.num_predictions > 0 and m.tokens > m.num_predictions for m in sink.steps)


def test_the_same_seed_gives_the_same_loss_curve(tiny_model_dir, tmp_path):
    config = TuningConfig(epochs=1, batch_size=4, learning_rate=0.01, lora_dropout=0.1)
    first = run(tiny_model_dir, tmp_path / "a", config)[1].losses
    second = run(tiny_model_dir, tmp_path / "b", config)[1].losses
    other = run(tiny_model_dir, tmp_path / "c", TuningConfig(**{**config.to_dict(), "seed": 1,
                                                                "target_modules": config.target_modules}))[1].losses
    assert first == second
    assert first != other


def test_a_resumed_run_continues_the_uninterrupted_curve(tiny_model_dir, tmp_path):
    config = TuningConfig(epochs=3, batch_size=4, learning_rate=0.01, lora_dropout=0.1)
    whole = run(tiny_model_dir, tmp_path / "whole", config)[1]
    first = RecordingSink()
    stopped, _ = run(tiny_model_dir, tmp_path / "part", config, sink=first,
                     should_stop=lambda: len(first.steps) >= 6)
    assert stopped.status == "stopped" and stopped.last_step == 6
    resumed, second = run(tiny_model_dir, tmp_path / "part", config,
                          resume_from=tmp_path / "part" / "checkpoints" / "epoch-1")
    assert second.started == [(18, 6, 7)]
    assert "Resumed from epoch 1 checkpoint (step 6)." in second.lines
    assert [m.step for m in second.steps] == list(range(7, 19))
    assert second.losses == pytest.approx(whole.losses[6:], abs=1e-5)
    assert resumed.final_loss == pytest.approx(whole.epochs[-1].mean_loss, abs=1e-5)



def test_training_runs_again_from_another_thread_with_the_same_curve(tiny_model_dir, tmp_path):
    import threading

    config = TuningConfig(epochs=1, batch_size=4, learning_rate=0.01, precision="fp32")
    here = run(tiny_model_dir, tmp_path / "a", config)[1].losses
    there = RecordingSink()
    worker = threading.Thread(target=run, args=(tiny_model_dir, tmp_path / "b", config), kwargs={"sink": there})
    worker.start()
    worker.join()
    assert there.losses == here


def test_resuming_from_a_folder_that_is_not_a_checkpoint_is_refused(tiny_model_dir, tmp_path):
    folder = tmp_path / "checkpoints" / "epoch-1"
    folder.mkdir(parents=True)
    with pytest.raises(TrainingError) as caught:
        run(tiny_model_dir, tmp_path, resume_from=folder)
    assert str(caught.value) == (f"The folder {folder} is not a complete checkpoint (it needs "
                                 "adapter/adapter_model.safetensors and trainer_state.pt): start the "
                                 "job again from the beginning.")


def test_resuming_with_settings_that_change_the_steps_is_refused(tiny_model_dir, tmp_path):
    run(tiny_model_dir, tmp_path, TuningConfig(epochs=1, batch_size=4, precision="fp32"))
    folder = tmp_path / "checkpoints" / "epoch-1"
    with pytest.raises(TrainingError) as caught:
        run(tiny_model_dir, tmp_path, TuningConfig(epochs=2, batch_size=8, precision="fp32"), resume_from=folder)
    assert str(caught.value) == (f"The checkpoint {folder} was made with 6 steps per epoch, but these "
                                 "settings and examples give 3: tune again from the beginning.")


def test_stopping_returns_the_last_checkpoints_adapter(tiny_model_dir, tmp_path):
    sink = RecordingSink()
    result, _ = run(tiny_model_dir, tmp_path, sink=sink, should_stop=lambda: len(sink.steps) >= 8)
    assert (result.status, result.last_step) == ("stopped", 8)
    assert result.adapter_dir == tmp_path / "checkpoints" / "epoch-1" / "adapter"
    assert sink.checkpoints == [(1, 6, tmp_path / "checkpoints" / "epoch-1")]
    assert result.final_loss == pytest.approx(sum(sink.losses[6:]) / 2)
    assert not (tmp_path / "adapter").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "stopped"


def test_stopping_before_the_first_checkpoint_leaves_no_adapter(tiny_model_dir, tmp_path):
    result, sink = run(tiny_model_dir, tmp_path, should_stop=lambda: True)
    assert (result.status, result.last_step, result.adapter_dir) == ("stopped", 0, None)
    assert sink.steps == []


def test_checkpoints_are_complete_folders_without_temporary_leftovers(tiny_model_dir, tmp_path):
    (tmp_path / "checkpoints").mkdir(parents=True)
    (tmp_path / "checkpoints" / ".epoch-1.tmp-crashed").mkdir()  # left by a killed run
    run(tiny_model_dir, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-1", "epoch-2"]
    for folder in (tmp_path / "checkpoints").iterdir():
        assert (folder / "trainer_state.pt").is_file()
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (folder / "adapter").iterdir()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "checkpoints", "metrics.json"]


def test_the_tuned_adapter_loads_with_peft_and_changes_greedy_output(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _ = run(tiny_model_dir, tmp_path, TuningConfig(epochs=3, batch_size=4, learning_rate=0.05))
    assert result.adapter_dir == tmp_path / "adapter"
    prompt = torch.tensor([[1, 2, 3, 4, 5]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    before = base.generate(prompt, max_new_tokens=8, do_sample=False)
    tuned = PeftModel.from_pretrained(base, result.adapter_dir)
    after = tuned.generate(input_ids=prompt, max_new_tokens=8, do_sample=False)
    assert before.tolist() != after.tolist()


def test_metrics_json_has_the_final_figures(tiny_model_dir, tmp_path):
    result, _ = run(tiny_model_dir, tmp_path, eval_set=colour_dataset(12))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["last_step"] == 12
    assert metrics["final_loss"] == result.final_loss
    assert (metrics["train_examples"], metrics["eval_examples"], metrics["precision"]) == (24, 12, "fp32")
    assert metrics["final_eval_loss"] > 0 and metrics["tokens_per_s"] > 0
    assert (metrics["processes"], metrics["sharded"]) == (1, False) and metrics["weights_mb"] > 0


def test_splitting_the_model_with_one_process_says_it_holds_the_whole_model(tiny_model_dir, tmp_path):
    result, sink = run(tiny_model_dir, tmp_path, config=replace(FAST, epochs=1, shard_model=True))
    assert result.status == "completed"
    assert any(line.startswith("Split the model between processes (FSDP) needs two or more")
               for line in sink.lines)


# --- evaluation, early stopping, best checkpoint -------------------------------------------------


def test_evaluation_runs_every_interval_and_at_each_epoch_end(tiny_model_dir, tmp_path):
    config = TuningConfig(epochs=2, batch_size=4, learning_rate=0.01, eval_interval_steps=4)
    _, sink = run(tiny_model_dir, tmp_path, config, eval_set=colour_dataset(12))
    assert [m.step for m in sink.evals] == [4, 6, 8, 12]
    assert all(m.eval_num_predictions == sink.evals[0].eval_num_predictions for m in sink.evals)
    assert all(0 <= m.eval_token_accuracy <= 1 and math.isfinite(m.eval_loss) for m in sink.evals)
    assert sink.evals[1].epoch == 1.0


def test_early_stopping_ends_when_eval_token_accuracy_stops_improving(tiny_model_dir, tmp_path):
    config = TuningConfig(epochs=5, batch_size=4, learning_rate=1e-6, eval_interval_steps=100,
                          early_stopping=True, early_stopping_patience=1)
    result, sink = run(tiny_model_dir, tmp_path, config, eval_set=colour_dataset(12))
    assert (result.status, result.last_step) == ("early_stopped", 12)
    assert [m.step for m in sink.evals] == [6, 12]
    assert [c[0] for c in sink.checkpoints] == [1, 2]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def same_words(word: str, count: int) -> Dataset:
    return Dataset(TEMPLATE, tuple(Example({"item": f"thing {n}"}, word) for n in range(count)))


def test_best_checkpoint_selection_keeps_the_adapter_with_the_lowest_eval_loss(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    config = TuningConfig(epochs=3, batch_size=4, learning_rate=0.01, eval_interval_steps=100,
                          select_best_checkpoint=True)
    # learning to answer "red" makes "blue" less likely: the first evaluation is the best
    result, sink = run(tiny_model_dir, tmp_path, config, dataset=same_words("red", 24),
                       eval_set=same_words("blue", 12))
    assert [m.step for m in sink.evals] == [6, 12, 18] and result.best_step == 6
    final = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    first = load_file(tmp_path / "checkpoints" / "epoch-1" / "adapter" / "adapter_model.safetensors")
    last = load_file(tmp_path / "checkpoints" / "epoch-3" / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(final[name], first[name]) for name in final)
    assert not all(torch.equal(final[name], last[name]) for name in final)


def test_early_stopping_without_an_eval_set_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError) as caught:
        run(tiny_model_dir, tmp_path, TuningConfig(early_stopping=True))
    assert str(caught.value) == ("Early stopping and best-checkpoint selection need an evaluation "
                                 "set: set evaluation rows (10-250) or choose an evaluation dataset.")


# --- estimate, precision, the real model -------------------------------------------------------


def test_estimate_counts_steps_and_measures_a_positive_duration(tiny_model_dir):
    result = estimate(base_model=tiny(tiny_model_dir), train_set=colour_dataset(),
                      config=TuningConfig(epochs=3, batch_size=5, precision="fp32"))
    assert (result.train_examples, result.steps_per_epoch, result.total_steps) == (24, 5, 15)
    assert 0 < result.seconds_per_step < 5
    assert result.total_seconds == pytest.approx(15 * result.seconds_per_step)
    assert (result.device, result.precision) == ("cpu", "fp32")


def test_bf16_training_keeps_float32_adapters_and_learns(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    result, sink = run(tiny_model_dir, tmp_path, TuningConfig(epochs=2, batch_size=4, learning_rate=0.01,
                                                             precision="bf16"))
    assert sink.epochs[-1].mean_loss < sink.epochs[0].mean_loss
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert {tensor.dtype for tensor in weights.values()} == {torch.float32}


def test_the_bundled_model_tunes_a_few_steps_end_to_end(bundled_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ref = ModelRef("SmolLM2-135M-Instruct", str(bundled_model_dir), "bundled")
    sink = RecordingSink()
    result = train(base_model=ref, train_set=colour_dataset(20), eval_set=None, output_dir=tmp_path,
                   config=TuningConfig(epochs=1, batch_size=5), sink=sink)
    assert (result.status, result.last_step) == ("completed", 4)
    assert all(math.isfinite(loss) for loss in sink.losses)
    assert sink.losses[-1] < sink.losses[0]
    base = AutoModelForCausalLM.from_pretrained(bundled_model_dir, local_files_only=True)
    PeftModel.from_pretrained(base, result.adapter_dir)
