"""Batch test: run a model over a dataset's rows and compare each answer with the expected output.

A row matches when the answer and the expected output are equal after trimming whitespace at
both ends (the exact-match rate of ``bench/task_accuracy.py``). A base model is prompted with
the dataset's own template, so it sees what the tuned model sees. The table downloads as CSV,
neutralised for spreadsheets like the dataset export (``training.data.export.neutralise``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from training.core.dataset import Dataset, Example
from training.core.errors import DatasetError
from training.core.generation import GenerationParams
from training.core.messages import say
from training.data.export import neutralise
from training.inference.engine import stream
from training.inference.model_cache import ModelCache
from training.inference.targets import Target, with_template


@dataclass(frozen=True)
class BatchRow:
    source: str
    """Where the example came from: ``row 7``, ``line 12``."""
    inputs: Mapping[str, str]
    expected: str
    produced: str
    exact: bool


@dataclass(frozen=True)
class BatchResult:
    model: str
    """The target's label."""
    input_keys: tuple[str, ...]
    rows: tuple[BatchRow, ...]

    @property
    def matches(self) -> int:
        return sum(row.exact for row in self.rows)

    @property
    def exact_match_rate(self) -> float:
        """Matching rows / tested rows (0 when no row was tested)."""
        return self.matches / len(self.rows) if self.rows else 0.0

    def summary(self) -> str:
        """``7 of 10 answers match the expected output exactly (70%).``"""
        return (f"{self.matches} of {len(self.rows)} answers match the expected output exactly "
                f"({self.exact_match_rate:.0%}).")


def same_answer(expected: str, produced: str) -> bool:
    return expected.strip() == produced.strip()


def run_batch(target: Target, dataset: Dataset, params: GenerationParams | None = None,
              limit: int | None = None, *, cache: ModelCache | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> Iterator[BatchRow]:
    """Yield one row per example (every example, or the first ``limit``), as each answer is
    finished (the UI fills its table as they come); ``should_stop`` is asked before each."""
    target, dataset, _ = fit_dataset(target, dataset)
    examples = dataset.examples if limit is None else dataset.examples[:max(0, limit)]
    for example in examples:
        if should_stop():
            return
        produced = "".join(stream(target, dict(example.fields), params, cache=cache))
        yield BatchRow(example.source, dict(example.fields), example.output, produced,
                       same_answer(example.output, produced))


def batch_test(target: Target, dataset: Dataset, params: GenerationParams | None = None,
               limit: int | None = None, *, cache: ModelCache | None = None) -> BatchResult:
    """Every row of ``run_batch`` and the exact-match rate."""
    target, dataset, _ = fit_dataset(target, dataset)
    rows = tuple(run_batch(target, dataset, params, limit, cache=cache))
    return BatchResult(target.label, dataset.template.input_keys, rows)


def batch_csv(result: BatchResult) -> bytes:
    """The table as CSV (UTF-8 with a byte-order mark, CRLF): the input columns, ``expected``,
    ``produced``, ``exact`` (yes/no); cells a spreadsheet could run as formulas are neutralised."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([neutralise(c) for c in (*result.input_keys, "expected", "produced", "exact")])
    for row in result.rows:
        cells = [row.inputs.get(key, "") for key in result.input_keys]
        cells += [row.expected, row.produced, "yes" if row.exact else "no"]
        writer.writerow([neutralise(c) for c in cells])
    return out.getvalue().encode("utf-8-sig")


def fit_dataset(target: Target, dataset: Dataset) -> tuple[Target, Dataset, str]:
    """The model and the dataset made to fit each other, and a sentence saying how when it is
    not obvious. A base model takes the dataset's template. A tuned model needs the dataset's
    input fields; when both have a single field under different names, the dataset's field is
    used as the model's (a file whose column is ``question`` tests a model tuned on ``text``).
    DatasetError naming both sets of fields otherwise."""
    if target.template is None:
        return with_template(target, dataset.template), dataset, ""
    wanted, given = target.template.input_keys, dataset.template.input_keys
    kinds = (target.template.kind, dataset.template.kind)
    if kinds[0] == kinds[1] and set(wanted) == set(given):
        return target, dataset, ""
    if kinds == ("structured", "structured") and len(wanted) == len(given) == 1:
        (key,), (column,) = wanted, given
        examples = tuple(Example({key: example.fields.get(column, "")}, example.output,
                                 example.source) for example in dataset.examples)
        return target, Dataset(target.template, examples), say(
            "batch.fields_mapped", column=column, key=key)
    raise DatasetError.of("batch.fields_differ", given=", ".join(given), model=target.name,
                          wanted=", ".join(wanted))
