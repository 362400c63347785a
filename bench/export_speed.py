"""How long does it take to get the bundled 135M model, tuned, out of the studio, and how fast does
llama.cpp run the GGUF export against the playground?

Tunes the bundled model for 20 steps on the support-ticket sample with the real job runner (or
reuses the tuned model ``--job`` of ``--data-dir``), then times each export the user can ask for
(adapter, merged, GGUF f16, Q8_0, Q4_K_M: merge, llama.cpp's converter and quantizer, zip), one
after the other in this process. Then answers the same held-out prompts, rendered by the studio's
template function, with the playground's decoder (``training.inference.engine.stream``, in this
process) and with llama.cpp (``llama-cpp-python`` on the f16 and Q8_0 files, in a child process
each: see ``LLAMA``), greedy, exactly ``--tokens`` tokens each (end-of-text banned in both) with
the same thread count. Model loading is not timed. Prints seconds per export, decode tokens per second, and the share of
identical answers; its last line is ``gguf_seconds=<f16 GGUF export time>``.

    python bench/export_speed.py [--data-dir DIR] [--job ID] [--prompts 5] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.db import Store  # noqa: E402
from training import models  # noqa: E402
from training.core.config import TuningConfig  # noqa: E402
from training.core.generation import GenerationParams  # noqa: E402
from training.data import formats  # noqa: E402
from training.export.formats import export_model  # noqa: E402
from training.inference.engine import build_prompt, load, stream  # noqa: E402
from training.inference.model_cache import ModelCache  # noqa: E402
from training.inference.targets import resolve_target  # noqa: E402
from training.jobs.runner import JobRequest, JobRunner  # noqa: E402
from training.tuning.runtime import configure_threads  # noqa: E402
from training.tuning.trainer import split_eval  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "statics" / "samples" / "support_tickets.csv"
TRAIN_ROWS = 80
"""With batch size 4 and one epoch: 20 steps."""
EXPORTS = [("adapter", None), ("merged", None), ("gguf", "f16"), ("gguf", "q8_0"),
           ("gguf", "q4_k_m")]


def tune(data_dir: Path, dataset) -> str:
    with Store(data_dir) as store:
        version = store.save_dataset("bench tickets", dataset)
        runner = JobRunner(store, data_dir, poll_interval_s=0.2)
        runner.start()
        try:
            started = time.perf_counter()
            job = runner.submit(JobRequest("Export bench", "", models.BUNDLED_MODEL, version.id,
                                           TuningConfig(epochs=1, batch_size=4,
                                                        learning_rate=0.003)))
            job = runner.wait(job.id, timeout_s=3600)
        finally:
            runner.stop()
    assert job.state == "succeeded", job.error
    print(f"tuned {job.completed_steps} steps in {time.perf_counter() - started:.1f} s")
    return job.id


def gguf_in(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(into)
    (path,) = into.rglob("*.gguf")
    return path


def time_studio(target, fields, params, cache) -> tuple[float, str]:
    started, pieces = time.perf_counter(), []
    for piece in stream(target, fields, params, cache=cache, ignore_eos=True):
        pieces.append(piece)
    return time.perf_counter() - started, "".join(pieces)


LLAMA = """
import json, sys, time
from llama_cpp import Llama

path, threads, tokens, banned, prompts = json.loads(sys.argv[1])
llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, verbose=False, seed=0)
bias = {token: float("-inf") for token in banned}
llm.create_completion(prompts[0], max_tokens=8, temperature=0, logit_bias=bias)  # warm-up
results = []
for prompt in prompts:
    started = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=tokens, temperature=0, logit_bias=bias)
    results.append([time.perf_counter() - started, out["choices"][0]["text"],
                    out["usage"]["completion_tokens"]])
print(json.dumps(results))
"""
"""llama.cpp in a child process: its OpenMP threads must not inherit OMP_WAIT_POLICY=PASSIVE,
which the studio sets for torch and which makes llama.cpp's per-operation thread hand-offs sleep
(2 threads: 25 instead of 66 tokens/s on Q8_0, measured here)."""


def time_llama(path: Path, prompts: list[str], tokens: int, banned: list[int],
               threads: int) -> list[tuple[float, str, int]]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", LLAMA,
                           json.dumps([str(path), threads, tokens, banned, prompts])],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="a data folder holding --job (default: a new one, tuned here)")
    parser.add_argument("--job", default=None, help="a tuned model of the bundled model to reuse")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    threads = configure_threads()
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    table = formats.read_file(SAMPLE).table
    dataset = formats.map_columns(table, *formats.guess_mapping(table.header))
    train_set, held_out = split_eval(dataset, 30, seed=0)
    scratch = Path(tempfile.mkdtemp(prefix="export-bench-"))
    try:
        data_dir = args.data_dir or scratch / "data"
        models.prepare_bundled_model(data_dir)
        job_id = args.job or tune(data_dir, type(dataset)(train_set.template,
                                                          train_set.examples[:TRAIN_ROWS]))
        seconds, files = {}, {}
        with Store(data_dir) as store:
            for fmt, quantization in EXPORTS:
                name = f"{fmt} {quantization}" if quantization else fmt
                started = time.perf_counter()
                archive = export_model(store, data_dir, job_id, fmt, quantization=quantization)
                seconds[name] = time.perf_counter() - started
                size = archive.stat().st_size / 1e6
                print(f"export {name}: {seconds[name]:.1f} s ({size:.0f} MB zip)")
                if fmt == "gguf":
                    files[quantization] = gguf_in(archive, scratch / quantization)
            target = resolve_target(store, data_dir, job_id)
        decode_speeds(target, files, held_out.examples[:args.prompts], args.tokens, threads)
        print(f"gguf_seconds={seconds['gguf f16']:.1f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def decode_speeds(target, files: dict, examples, tokens: int, threads: int) -> None:
    cache = ModelCache()
    params = GenerationParams(max_output_tokens=tokens)
    loaded = load(target, cache)
    tokenizer = loaded.tokenizer
    banned = sorted({tokenizer.eos_token_id, *tokenizer.convert_tokens_to_ids(["<|im_end|>"])})
    llms = [q for q in ("f16", "q8_0") if q in files]
    prompts = [build_prompt(target, example.fields) for example in examples]
    time_studio(target, examples[0].fields, GenerationParams(max_output_tokens=8), cache)  # warm-up
    totals = {"playground": 0.0, **{q: 0.0 for q in llms}}
    same = {q: 0 for q in llms}
    studio_texts = []
    for example in examples:
        spent, text = time_studio(target, example.fields, params, cache)
        totals["playground"] += spent
        studio_texts.append(text)
    for q in llms:
        for (spent, text, count), studio_text in zip(
                time_llama(files[q], prompts, tokens, banned, threads), studio_texts):
            assert count == tokens, count
            totals[q] += spent
            same[q] += text.strip() == studio_text.strip()
    answers = len(examples) * tokens
    print(f"decode, {tokens} tokens per answer, {len(examples)} prompts, {threads} threads "
          f"({loaded.dtype} in the playground):")
    print(f"  playground: {answers / totals['playground']:.1f} tokens/s")
    for q in llms:
        print(f"  llama.cpp {q}: {answers / totals[q]:.1f} tokens/s "
              f"({totals['playground'] / totals[q]:.2f}x the playground), identical answers "
              f"{same[q]}/{len(examples)}")


if __name__ == "__main__":
    main()
