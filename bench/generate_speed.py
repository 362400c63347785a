"""How fast does the playground answer with a tuned model, against plain transformers + peft?

Tunes the bundled model for 20 steps on the support-ticket sample (or reuses ``--adapter``), then
answers the same held-out prompts, rendered by the studio's template function, both ways in one
process with the same threads, interleaved prompt by prompt so a busy machine slows both alike:

- plain: ``AutoModelForCausalLM`` in float32 + ``PeftModel.from_pretrained`` (adapter unmerged),
  ``model.generate`` greedy with the default cache;
- studio: ``training.inference.engine.stream`` (adapter merged into a copy of the base weights, own
  decode loop drafting from the prompt and the training answers), the answer as text pieces;
- studio without prompt lookup, for the breakdown.

Every timed answer is exactly ``--tokens`` tokens (end-of-text is forbidden, as
``min_new_tokens`` does) so both do the same work. Past its real end the tuned model repeats
itself (``urgency: low; urgency: low; ...``), which prompt lookup drafts well, so the bench
also times the natural answers (stopping at end-of-text) for a typical short answer. Model
loading is not timed. Prints time to first token and tokens per second for each, whether the
answers are identical, and last ``ratio=<studio tokens/s / plain tokens/s>``.

    python bench/generate_speed.py [--data-dir data] [--adapter DIR] [--prompts 5] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data import formats  # noqa: E402

from training import models
from training.core.config import TuningConfig  # noqa: E402
from training.core.dataset import Dataset  # noqa: E402
from training.inference.decoding import decode  # noqa: E402
from training.core.generation import GenerationParams, TUNED_DEFAULTS  # noqa: E402
from training.inference.engine import build_prompt, eos_token_ids, load, stream  # noqa: E402
from training.inference.model_cache import ModelCache  # noqa: E402
from training.core.progress import NullSink  # noqa: E402
from training.tuning.runtime import configure_threads  # noqa: E402
from training.inference.targets import Target  # noqa: E402
from training.tuning.trainer import split_eval, train  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "statics" / "samples" / "support_tickets.csv"
TRAIN_ROWS = 80
"""With batch size 4 and one epoch: 20 steps."""
MAX_LOAD = 1.5
"""Wait for the 1-minute load average to fall below this before timing (other jobs skew it)."""
MAX_WAIT_S = 600


class FirstTokenClock:
    """A ``generate`` streamer that notes when the first new token arrives (the first ``put`` is
    the prompt)."""

    def __init__(self):
        self.calls, self.first_at = 0, None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            self.first_at = time.perf_counter()

    def end(self) -> None:
        pass


def wait_until_idle() -> float:
    deadline = time.monotonic() + MAX_WAIT_S
    while os.getloadavg()[0] > MAX_LOAD and time.monotonic() < deadline:
        time.sleep(15)
    return os.getloadavg()[0]


def tuned_adapter(base, dataset: Dataset, out_dir: Path) -> Path:
    config = TuningConfig(epochs=1, batch_size=4, learning_rate=0.003)
    started = time.perf_counter()
    result = train(base_model=base, train_set=dataset, eval_set=None, config=config,
                   output_dir=out_dir, sink=NullSink())
    print(f"tuned {result.last_step} steps in {time.perf_counter() - started:.1f} s")
    return result.adapter_dir


def time_plain(model, tokenizer, prompt: str, tokens: int, ignore_eos: bool = True) -> tuple[float, float, str]:
    import torch

    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    clock = FirstTokenClock()
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens if ignore_eos else None,
                             do_sample=False, pad_token_id=tokenizer.eos_token_id, streamer=clock)
    seconds = time.perf_counter() - started
    text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).lstrip()
    return clock.first_at - started, seconds, text


def time_studio(target: Target, fields, params, cache, ignore_eos: bool = True) -> tuple[float, float, str]:
    started = time.perf_counter()
    first, pieces = None, []
    for piece in stream(target, fields, params, cache=cache, ignore_eos=ignore_eos):
        first = first or time.perf_counter()
        pieces.append(piece)
    return first - started, time.perf_counter() - started, "".join(pieces)


def time_no_lookup(target: Target, prompt: str, params, cache) -> tuple[float, float]:
    loaded = load(target, cache)
    ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    started, first = time.perf_counter(), None
    for _ in decode(loaded.model, ids, params, eos_token_ids(loaded), ignore_eos=True, lookup=False):
        first = first or time.perf_counter()
    return first - started, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter of the bundled model to reuse")
    parser.add_argument("--prompts", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="times each prompt is answered")
    args = parser.parse_args()
    threads = configure_threads()
    warnings.filterwarnings("ignore", category=FutureWarning)
    from peft import PeftModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    table = formats.read_file(SAMPLE).table
    dataset = formats.map_columns(table, *formats.guess_mapping(table.header))
    train_set, held_out = split_eval(dataset, 30, seed=0)
    base = models.resolve_model(models.BUNDLED_MODEL, args.data_dir)
    with tempfile.TemporaryDirectory() as scratch:
        trained_on = Dataset(train_set.template, train_set.examples[:TRAIN_ROWS])
        adapter = args.adapter or tuned_adapter(base, trained_on, Path(scratch))
        target = Target("bench", base, adapter, dataset.template, TUNED_DEFAULTS,
                        training_set=trained_on, training_version=0)
        cache = ModelCache()
        params = GenerationParams(max_output_tokens=args.tokens)
        started = time.perf_counter()
        load(target, cache)
        print(f"studio model loaded and merged in {time.perf_counter() - started:.1f} s "
              f"({cache.dtype}, {threads} threads)")
        plain = PeftModel.from_pretrained(models.load_model(base, "float32"), str(adapter)).eval()
        tokenizer = models.load_tokenizer(base)
        examples = held_out.examples[:args.prompts]
        prompts = [build_prompt(target, ex.fields) for ex in examples]
        time_plain(plain, tokenizer, prompts[0], 8)  # warm-up: kernels, allocations
        time_studio(target, examples[0].fields, GenerationParams(max_output_tokens=8), cache)
        print(f"load average before timing: {wait_until_idle():.2f}")
        totals = {name: [0.0, 0.0] for name in ("plain", "studio", "no_lookup")}
        same = 0
        for _ in range(args.rounds):
            for example, prompt in zip(examples, prompts):
                runs = {"plain": time_plain(plain, tokenizer, prompt, args.tokens),
                        "studio": time_studio(target, example.fields, params, cache),
                        "no_lookup": time_no_lookup(target, prompt, params, cache)}
                same += runs["plain"][2] == runs["studio"][2]
                for name, (first_s, total_s, *_) in runs.items():
                    totals[name][0] += first_s
                    totals[name][1] += total_s
        answers = len(examples) * args.rounds
        print(f"example answer: {runs['studio'][2][:80]!r}")
        print(f"identical answers: {same}/{answers}")
        speed = {}
        for name, label in (("plain", "plain transformers + peft (unmerged, fp32)"),
                            ("no_lookup", "studio without prompt lookup"),
                            ("studio", "studio")):
            first_s, total_s = totals[name]
            speed[name] = answers * args.tokens / total_s
            print(f"{label}: time to first token {1000 * first_s / answers:.0f} ms, "
                  f"{speed[name]:.1f} tokens/s")
        print(f"ratio without prompt lookup={speed['no_lookup'] / speed['plain']:.2f}")
        natural = {"plain": 0.0, "studio": 0.0}
        for example, prompt in zip(examples, prompts):
            natural["plain"] += time_plain(plain, tokenizer, prompt, args.tokens, ignore_eos=False)[1]
            _, seconds, short = time_studio(target, example.fields, params, cache, ignore_eos=False)
            natural["studio"] += seconds
        print(f"natural answers (to end-of-text, e.g. {short!r}): plain "
              f"{1000 * natural['plain'] / len(examples):.0f} ms, studio "
              f"{1000 * natural['studio'] / len(examples):.0f} ms per answer "
              f"({natural['plain'] / natural['studio']:.2f}x)")
        print(f"load average after timing: {os.getloadavg()[0]:.2f}")
    print(f"ratio={speed['studio'] / speed['plain']:.2f}")


if __name__ == "__main__":
    main()
