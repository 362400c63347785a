"""Training throughput: the studio's trainer against the seed walkthrough's LoRA recipe.

In one run, on the bundled SmolLM2-135M-Instruct, the same examples (statics/samples/
support_tickets.csv: 120 rows to train on, 30 held out), the same examples per optimizer step
and the same epochs:

(a) the recipe of the LoRA walkthrough (seeds/002): transformers ``Trainer`` +
    ``DataCollatorForSeq2Seq(padding=True)`` (dynamic padding to the longest of each batch),
    peft LoRA r=8, alpha=32, dropout=0.1 on all projections, gradient checkpointing, batch 8 x 2
    accumulation steps, learning rate 1e-4, float32 (half precision is unusable on CPU);
(b) ``training.tuning.trainer.train`` with the studio's defaults (r=8, alpha=16, learning rate 1e-3) and
    batch size 16.

Both train on the same token ids (``tokenize_examples``: the studio's template). Reported: real
(non-padding) tokens per second of each, the final eval loss of each on the held-out rows
(computed by one function: the model's full forward in float32, mean cross-entropy over output
tokens), the studio's achieved FLOP rate (4.1 x parameters per real token) against this CPU's
measured matrix-multiply rates, the time from calling ``train`` to its first step report, and
``estimate``'s duration and prediction. The thread count (1 or 2) is measured first and used for
both. Prints figures, asserts nothing; the last line is ``ratio=<studio tokens/s / recipe
tokens/s>``.

    python bench/train_throughput.py --data-dir ./data [--epochs 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads its OpenMP runtime
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402

from training.tuning.batching import IGNORE_INDEX, collate, plan_eval_batches, split_eval, tokenize_examples  # noqa: E402
from training.core.config import ALL_PROJECTIONS, TuningConfig  # noqa: E402
from training.core.dataset import Dataset, InputField, PromptTemplate  # noqa: E402
from training.tuning.lora import attach_lora, model_parts  # noqa: E402
from training.tuning.loss import score_batch  # noqa: E402
from training.models import ModelRef, load_model, load_tokenizer, prepare_bundled_model  # noqa: E402
from training.core.progress import NullSink  # noqa: E402
from training.tuning.trainer import estimate, train  # noqa: E402

SAMPLES = REPO / "statics" / "samples" / "support_tickets.csv"
EVAL_ROWS = 30
SEED = 0
BATCH = 16
RECIPE_MICRO_BATCH, RECIPE_ACCUMULATION = 8, 2
FLOPS_PER_PARAMETER_TOKEN = 4.1
TEMPLATE = PromptTemplate(
    preamble="Classify the support ticket: give its category and its urgency.",
    inputs=(InputField("subject", "subject:"), InputField("message", "message:")),
    output_label="output:",
)


def load_tickets() -> Dataset:
    with SAMPLES.open(newline="", encoding="utf-8") as handle:
        rows = [[r["subject"], r["message"], r["label"]] for r in csv.DictReader(handle)]
    return Dataset.from_rows(TEMPLATE, rows)


def matmul_gflops(dtype, size: int = 2048, repeats: int = 3) -> float:
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def pick_threads(ref: ModelRef, examples) -> tuple[int, dict]:
    """Time a float32 LoRA forward + backward on one batch with 1 and with 2 threads."""
    model = attach_lora(load_model(ref), TuningConfig())
    parts = model_parts(model)
    batch = collate(examples[:BATCH], 2)
    seconds = {}
    for threads in (1, 2, 1, 2):
        torch.set_num_threads(threads)
        score_batch(parts, batch).loss_sum.backward()  # warm-up at this thread count
        start = time.perf_counter()
        score_batch(parts, batch).loss_sum.backward()
        seconds[threads] = min(seconds.get(threads, float("inf")), time.perf_counter() - start)
    return min(seconds, key=seconds.get), seconds


def eval_loss(model, examples) -> float:
    """Mean float32 cross-entropy over the output tokens, from the model's ordinary forward."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for indices in plan_eval_batches([ex.length for ex in examples], 16):
            batch = collate([examples[i] for i in indices], 2)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            targets = batch.labels[:, 1:]
            total += float(F.cross_entropy(logits[:, :-1].float().flatten(0, 1), targets.flatten(),
                                           ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((targets != IGNORE_INDEX).sum())
    return total / count


def run_recipe(ref: ModelRef, tokenizer, examples, epochs: int, out: Path) -> tuple[float, float, object]:
    """The walkthrough's recipe; returns (seconds, real tokens, trained model)."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    torch.manual_seed(SEED)
    model = load_model(ref, dtype="float32")
    model.enable_input_require_grads()  # the walkthrough: needed with gradient checkpointing
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, target_modules=list(ALL_PROJECTIONS),
                        inference_mode=False, r=8, lora_alpha=32, lora_dropout=0.1)
    model = get_peft_model(model, config)
    rows = [{"input_ids": list(ex.input_ids), "attention_mask": [1] * ex.length,
             "labels": list(ex.labels)} for ex in examples]
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=RECIPE_MICRO_BATCH,
        gradient_accumulation_steps=RECIPE_ACCUMULATION, logging_steps=10, num_train_epochs=epochs,
        save_strategy="no", learning_rate=1e-4, gradient_checkpointing=True, use_cpu=True,
        report_to=[], disable_tqdm=True, seed=SEED, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorForSeq2Seq(tokenizer=tokenizer, padding=True))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return seconds, sum(ex.length for ex in examples) * epochs, model


class TimingSink(NullSink):
    def __init__(self, called_at: float):
        self.called_at, self.started_at, self.first_step_at, self.last_step_at = called_at, None, None, None
        self.tokens, self.step_seconds, self.losses = 0, 0.0, []

    def on_start(self, total_steps, steps_per_epoch, first_step):
        self.started_at = time.perf_counter()

    def on_step(self, metrics):
        now = time.perf_counter()
        self.first_step_at = self.first_step_at or now
        self.last_step_at = now
        self.tokens += metrics.tokens
        self.step_seconds += metrics.step_time_s
        self.losses.append(metrics.loss)


def worker_startup_s() -> float:
    """Seconds for the runner's launch of a job's worker group up to where training begins."""
    import subprocess

    from training.jobs.workers import REPO, worker_env

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
               "--nproc-per-node=1", "-m", "training.jobs.worker", "--probe"]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=worker_env(), check=True, capture_output=True)
    return time.perf_counter() - started


def process_rates(data_dir: Path, train_set, config: TuningConfig, threads: int) -> dict[int, float]:
    """Real tokens per second of the same job run by the job runner with 1 and 2 worker
    processes (torchrun), from the steps' own timings: start-up is not counted."""
    from storage.db import Store
    from training.jobs.runner import JobRequest, JobRunner

    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder) / "data"
        shutil.copytree(Path(data_dir) / "models", scratch / "models", copy_function=os.link)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the budget the workers share
        with Store(scratch) as store:
            version = store.save_dataset("throughput", train_set)
            runner = JobRunner(store, scratch)
            runner.start()
            try:
                for processes in (1, 2):
                    job = runner.submit(JobRequest(
                        f"Throughput {processes}", "", "SmolLM2-135M-Instruct", version.id,
                        replace(config, epochs=1, processes=processes)))
                    job = runner.wait(job.id, timeout_s=3600)
                    assert job.state == "succeeded", job.error
                    steps = store.metrics_after(job.id)
                    rates[processes] = sum(s.tokens for s in steps) / sum(s.step_time_s for s in steps)
            finally:
                runner.stop()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    ref = ModelRef("SmolLM2-135M-Instruct", str(prepare_bundled_model(args.data_dir)), "bundled")
    tokenizer = load_tokenizer(ref)
    train_set, eval_set = split_eval(load_tickets(), EVAL_ROWS, SEED)
    config = TuningConfig(epochs=args.epochs, batch_size=BATCH, seed=SEED)
    train_examples = tokenize_examples(train_set, tokenizer, config)
    eval_examples = tokenize_examples(eval_set, tokenizer, config)
    lengths = [ex.length for ex in train_examples]
    print(f"data: {len(train_examples)} training rows (mean {sum(lengths) / len(lengths):.1f} tokens, "
          f"{min(lengths)}-{max(lengths)}), {len(eval_examples)} held out; {args.epochs} epochs, "
          f"{BATCH} examples per optimizer step")

    threads, seconds = pick_threads(ref, train_examples)
    torch.set_num_threads(threads)
    print(f"threads: {threads} (one LoRA forward+backward of {BATCH} rows: "
          + ", ".join(f"{n} thread{'s' * (n > 1)} {s:.2f} s" for n, s in sorted(seconds.items())) + ")")
    bf16_rate, fp32_rate = matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)
    print(f"matmul 2048x2048: bf16 {bf16_rate:.0f} GFLOP/s, fp32 {fp32_rate:.0f} GFLOP/s")
    base = load_model(ref)
    parameters = sum(p.numel() for p in base.parameters())
    print(f"base model eval loss: {eval_loss(base, eval_examples):.4f} ({parameters / 1e6:.1f} M parameters)")
    del base

    with tempfile.TemporaryDirectory() as folder:
        seconds_r, tokens_r, recipe_model = run_recipe(ref, tokenizer, train_examples, args.epochs,
                                                       Path(folder) / "recipe")
        recipe_rate = tokens_r / seconds_r
        recipe_loss = eval_loss(recipe_model, eval_examples)
        del recipe_model
        print(f"recipe: {recipe_rate:.1f} real tokens/s ({tokens_r} tokens in {seconds_r:.1f} s), "
              f"final eval loss {recipe_loss:.4f}")

        start = time.perf_counter()
        guess = estimate(base_model=ref, train_set=train_set, config=config)
        estimate_s = time.perf_counter() - start

        called_at = time.perf_counter()
        sink = TimingSink(called_at)
        result = train(base_model=ref, train_set=train_set, eval_set=None, config=config,
                       output_dir=Path(folder) / "studio", sink=sink)
        train_wall_s = time.perf_counter() - called_at
        loop_s = sink.last_step_at - sink.started_at
        studio_rate = sink.tokens / loop_s
        from peft import PeftModel

        studio_model = PeftModel.from_pretrained(load_model(ref), result.adapter_dir)
        studio_loss = eval_loss(studio_model, eval_examples)
        precision = json.loads((Path(folder) / "studio" / "metrics.json").read_text())["precision"]

    achieved = FLOPS_PER_PARAMETER_TOKEN * parameters * studio_rate / 1e9
    print(f"studio: {studio_rate:.1f} real tokens/s ({sink.tokens} tokens in {loop_s:.1f} s of "
          f"training loop, checkpoints included; {sink.tokens / sink.step_seconds:.1f} counting "
          f"step compute only), precision {precision}, final eval loss {studio_loss:.4f}")
    print(f"studio: train() took {train_wall_s:.1f} s in all; first step reported "
          f"{sink.first_step_at - called_at:.1f} s after the call (target < 10 s)")
    print(f"studio: achieved {achieved:.0f} GFLOP/s (4.1 x {parameters / 1e6:.1f} M x tokens/s) = "
          f"{100 * achieved / bf16_rate:.0f} % of the bf16 matmul rate, "
          f"{100 * achieved / fp32_rate:.0f} % of the fp32 rate")
    print(f"estimate: {estimate_s:.1f} s to compute; predicted {guess.total_seconds:.0f} s "
          f"({guess.seconds_per_step:.2f} s/step x {guess.total_steps}), measured {loop_s:.0f} s")
    print(f"eval loss: studio {studio_loss:.4f} vs recipe {recipe_loss:.4f} "
          f"({'no worse' if studio_loss <= recipe_loss else 'WORSE'})")
    print(f"worker start-up (torchrun and the worker's imports, before its first step; not in "
          f"the timed steps): {worker_startup_s():.1f} s per job")
    rates = process_rates(args.data_dir, train_set, config, threads)
    print(f"studio through the job runner on the CPU, {threads} threads in all: 1 process "
          f"{rates[1]:.1f} real tokens/s, 2 processes (gloo) {rates[2]:.1f} real tokens/s "
          f"({rates[2] / rates[1]:.2f}x)")
    print(f"ratio={studio_rate / recipe_rate:.2f}")


if __name__ == "__main__":
    main()
