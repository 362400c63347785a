"""Do the default settings give a model that does the task? Tunes the bundled model with
TuningConfig() defaults on a task it cannot do (support-ticket triage: 'category: X; urgency: Y'),
then compares exact-match answers of the base and the tuned model on held-out rows.

    python bench/task_accuracy.py [--data-dir data] [--held-out 30]

Prints the training time, the eval loss and, last, `exact_match base=<rate> tuned=<rate>`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data import formats  # noqa: E402

from training import models
from training.core.config import TuningConfig  # noqa: E402
from training.core.dataset import Dataset  # noqa: E402
from training.inference.engine import answer, load_for_inference  # noqa: E402
from training.core.progress import NullSink  # noqa: E402
from training.tuning.runtime import configure_threads  # noqa: E402
from training.tuning.trainer import split_eval, train  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "statics" / "samples" / "support_tickets.csv"


def exact_match(model, tokenizer, held_out: Dataset) -> float:
    hits = sum(answer(model, tokenizer, held_out.template, ex.fields, 24) == ex.output.strip()
               for ex in held_out.examples)
    return hits / len(held_out.examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--held-out", type=int, default=30)
    args = parser.parse_args()
    configure_threads()
    result = formats.read_file(SAMPLE)
    inputs, output = formats.guess_mapping(result.table.header)
    dataset = formats.map_columns(result.table, inputs, output)
    train_set, held_out = split_eval(dataset, args.held_out, seed=0)
    base = models.resolve_model(models.BUNDLED_MODEL, args.data_dir)
    config = TuningConfig()
    print(f"task: {len(train_set.examples)} training rows, {len(held_out.examples)} held out; "
          f"defaults: epochs {config.epochs}, batch {config.batch_size}, "
          f"learning rate {config.learning_rate}, LoRA rank {config.lora_rank}")

    model, tokenizer = load_for_inference(base)
    base_rate = exact_match(model, tokenizer, held_out)
    del model
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        trained = train(base_model=base, train_set=train_set, eval_set=None, config=config,
                        output_dir=Path(out), sink=NullSink())
        seconds = time.perf_counter() - started
        print(f"trained {trained.last_step} steps in {seconds:.1f} s, final epoch mean loss "
              f"{trained.final_loss:.4f}")
        model, tokenizer = load_for_inference(base, trained.adapter_dir)
        example = held_out.examples[0]
        print(f"example: {example.fields} -> {answer(model, tokenizer, held_out.template, example.fields, 24)!r}")
        tuned_rate = exact_match(model, tokenizer, held_out)
    print(f"exact_match base={base_rate:.2f} tuned={tuned_rate:.2f}")


if __name__ == "__main__":
    main()
