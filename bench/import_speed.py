"""How long importing, mapping and validating 10,000 rows takes, per file format.

Generates 10,000 seeded rows (question, context, answer; 20-60 words each) as XLSX, CSV and JSONL
in a temporary folder, then times ``validate_file`` (read + map columns + validate with the
bundled model's tokenizer) on each: the median of 3 runs. Loading the tokenizer is not timed as
part of a run; its time is reported on its own line.

    OMP_NUM_THREADS=1 python bench/import_speed.py --data-dir ./data

The last line is ``max_seconds=<slowest format's median, 3 decimals>``; the target is under 2 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data.validation import validate_file  # noqa: E402

ROWS = 10_000
SEED = 1234
RUNS = 3
WORDS_PER_FIELD = (20, 60)
HEADER = ("question", "context", "answer")
JSONL_KEYS = ("question", "context", "output")
"""JSONL rows are the studio's structured JSONL: each input key and ``output``."""

_VOCABULARY = """
time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number
night point home water room mother area money story fact month lot right study book eye job word
business issue side kind head house service friend father power hour game line end member law car
city community name president team minute idea kid body information back parent face others level
office door health person art war history party result change morning reason research girl guy
moment air teacher force education river model data training answer context price order market
learn make take give find tell ask seem feel try leave call keep begin show hear play run move
like live believe hold bring happen write provide sit stand lose pay meet include continue set
good new first last long great little own other old right big high different small large next
early young important few public bad same able late hard major better economic strong possible
""".split()


def sentence(rng: random.Random, words: int) -> str:
    """A sentence-like run of words with capitals, commas and a full stop."""
    picked = [rng.choice(_VOCABULARY) for _ in range(words)]
    for index in range(5, words - 3, rng.randint(6, 11)):
        picked[index] += ","
    text = " ".join(picked)
    return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "?", "!"))


def generate_rows(rows: int = ROWS, seed: int = SEED) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    return [
        tuple(sentence(rng, rng.randint(*WORDS_PER_FIELD)) for _ in HEADER)
        for _ in range(rows)
    ]


def write_files(rows: list[tuple[str, str, str]], folder: Path) -> dict[str, Path]:
    import openpyxl

    paths = {fmt: folder / f"examples.{fmt}" for fmt in ("xlsx", "csv", "jsonl")}
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("examples")
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    workbook.save(paths["xlsx"])
    with paths["csv"].open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        writer.writerows(rows)
    with paths["jsonl"].open("w", encoding="utf-8") as stream:
        for row in rows:
            stream.write(json.dumps(dict(zip(JSONL_KEYS, row)), ensure_ascii=False) + "\n")
    return paths


def load_tokenizer(data_dir: Path):
    """(tokenizer, seconds to prepare the bundled folder, seconds to load the tokenizer)."""
    from transformers import AutoTokenizer

    from training.models import prepare_bundled_model

    started = time.perf_counter()
    folder = prepare_bundled_model(data_dir)
    prepared = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return tokenizer, prepared - started, time.perf_counter() - prepared


def time_format(path: Path, tokenizer, runs: int = RUNS):
    """(median wall seconds, mean CPU seconds of this process and its threads, last report,
    examples) of ``validate_file`` on ``path``. CPU above wall means the tokenizer ran on
    several cores; wall far above CPU means other programs took the cores."""
    seconds, cpu_seconds = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        _, dataset, report = validate_file(path, tokenizer=tokenizer)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu_started)
    return statistics.median(seconds), statistics.mean(cpu_seconds), report, len(dataset.examples)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="studio data folder holding the prepared bundled model (default ./data)")
    parser.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)

    tokenizer, prepare_s, load_s = load_tokenizer(args.data_dir)
    print(f"tokenizer: prepared in {prepare_s:.3f} s, loaded in {load_s:.3f} s (not timed below)")
    slowest = 0.0
    with tempfile.TemporaryDirectory(prefix="import-speed-") as folder:
        paths = write_files(generate_rows(args.rows), Path(folder))
        for fmt, path in paths.items():
            seconds, cpu_s, report, examples = time_format(path, tokenizer)
            slowest = max(slowest, seconds)
            input_tokens = sum(a for a, _ in report.token_counts)
            output_tokens = sum(b for _, b in report.token_counts)
            print(
                f"{fmt}: {seconds:.3f} s median of {RUNS} (CPU {cpu_s:.3f} s), "
                f"{examples / seconds:,.0f} rows/s, "
                f"{examples:,} examples, {path.stat().st_size / 1e6:.1f} MB, "
                f"{input_tokens:,} input + {output_tokens:,} output tokens, "
                f"{len(report.errors)} errors, {len(report.warnings)} warnings"
            )
    print(f"max_seconds={slowest:.3f}")
    return slowest


if __name__ == "__main__":
    main()
