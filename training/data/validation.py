"""Check a dataset before it is saved for training, and say every problem at once.

``validate`` is a pure function of a dataset, the limits and (optionally) the model's tokenizer.
It returns one ``Report``: dataset-level problems first (template, number of examples), then the
problems of each example in row order, each naming its row (``Line 7`` for JSONL, ``Row 7`` for
spreadsheets and the grid, taken from ``Example.source``) and its field. So that the UI stays
responsive on a 10,000-row file, at most ``MAX_LISTED_PER_CODE`` problems of one code are listed
one by one; the rest are folded into one summary problem of the same code.

Token counts use ``render_example`` + ``token_counts``: the same rendering the trainer uses.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from training.core.dataset import Dataset, Example, PromptTemplate, chat_messages
from training.core.errors import DatasetError
from training.core.limits import DEFAULT_LIMITS, DatasetLimits
from training.core.messages import say
from training.core.template import render_example, token_counts
from training.data.report import Problem, Report
from training.data.spreadsheet import count_text

if TYPE_CHECKING:
    from training.data.formats import ImportResult

MAX_LISTED_PER_CODE = 200
"""Problems of one code listed individually; the rest become one summary problem."""

RECOMMENDED_UPPER_EXAMPLES = 500
"""Upper end of the recommended dataset size stated in the guidance (Gemini: 100-500)."""

_NUMBER_RE = re.compile(r"(\d+)\s*$")


def validate(
    dataset: Dataset,
    limits: DatasetLimits = DEFAULT_LIMITS,
    tokenizer=None,
    file_problems: Sequence[Problem] = (),
) -> Report:
    """Every problem of ``dataset``; ``file_problems`` (from reading the file) come first."""
    template_problems = _template_problems(dataset.template)
    problems = list(file_problems) + template_problems + _count_problems(len(dataset.examples), limits)
    places = [_Place.of(example, index) for index, example in enumerate(dataset.examples)]
    row_problems = _row_problems(dataset, places, limits)
    counts: list[tuple[int, int]] = []
    truncated: list[int] = []
    if tokenizer is not None and dataset.examples and not template_problems:
        counts = _token_counts(dataset, tokenizer)
        truncated_problems = _truncation_problems(counts, places, limits)
        truncated = [p.row for _, p in truncated_problems]
        row_problems += truncated_problems
    row_problems.sort(key=lambda item: item[0])  # example order; stable, so check order within
    unit = places[0].unit if places else "row"
    problems += _bounded([p for _, p in row_problems], limits, unit)
    return Report(
        problems=tuple(problems),
        examples=len(dataset.examples),
        truncated_rows=tuple(truncated),
        token_counts=tuple(counts),
    )


def validate_file(path: Path | str, limits: DatasetLimits = DEFAULT_LIMITS, tokenizer=None,
                  sheet: str | None = None) -> tuple["ImportResult", Dataset, Report]:
    """Read ``path``, map a spreadsheet's columns by their names, and validate the result.
    Returns ``(ImportResult, Dataset, Report)``; the report lists the reading problems first.
    Raises ``UnreadableFileError`` when the file cannot be read at all."""
    from training.data import formats  # imported here: formats is the heavier, optional layer

    result = formats.read_file(path, limits=limits, sheet=sheet)
    dataset, problems = result.dataset, list(result.problems)
    if dataset is None and result.table is not None:
        inputs, output = formats.guess_mapping(result.table.header)
        try:
            dataset = formats.map_columns(result.table, inputs, output)
        except DatasetError as error:  # e.g. a one-column sheet: the user must map it by hand
            problems.append(Problem("error", "mapping", str(error)))
    if dataset is None:
        dataset = Dataset(PromptTemplate(), ())
    return result, dataset, validate(dataset, limits, tokenizer, file_problems=problems)


class _Place:
    """Where an example is, for messages: ``Row 7`` / ``line 7`` and the number 7."""

    __slots__ = ("index", "number", "unit", "name")

    def __init__(self, index: int, number: int, unit: str, name: str):
        self.index, self.number, self.unit, self.name = index, number, unit, name

    @classmethod
    def of(cls, example: Example, index: int) -> "_Place":
        source = example.source.strip()
        match = _NUMBER_RE.search(source)
        if not match:
            return cls(index, index + 1, "example", f"example {index + 1}")
        unit = source[: match.start()].strip().split(" ")[-1].lower() or "row"
        return cls(index, int(match.group(1)), unit, source)

    @property
    def said(self) -> str:
        """``row 7`` in the reader's language (a source of another kind as it is)."""
        if self.unit in UNITS:
            return say(f"place.{self.unit}", n=self.number)
        return self.name

    @property
    def title(self) -> str:
        said = self.said
        return said[:1].upper() + said[1:]

    @property
    def remove(self) -> str:
        """``remove the row``, in the reader's language."""
        return say(f"remove.{self.unit if self.unit in UNITS else 'example'}")


def _template_problems(template: PromptTemplate) -> list[Problem]:
    try:
        template.check()
    except DatasetError as error:
        return [Problem("error", "template", str(error))]
    return []


def _count_problems(count: int, limits: DatasetLimits) -> list[Problem]:
    have = count_text(count, "example")
    if count < limits.min_examples:
        return [Problem("error", "too_few_examples", say(
            "validation.too_few", have=have, least=limits.min_examples,
            missing=limits.min_examples - count))]
    if count > limits.max_examples:
        return [Problem("error", "too_many_examples", say(
            "validation.too_many", have=have, limit=limits.max_examples,
            extra=count - limits.max_examples))]
    if count < limits.recommended_examples:
        upper = max(RECOMMENDED_UPPER_EXAMPLES, limits.recommended_examples)
        return [Problem("info", "few_examples", say(
            "validation.few", have=have, low=limits.recommended_examples, high=upper))]
    return []


def _row_problems(dataset: Dataset, places: list[_Place],
                  limits: DatasetLimits) -> list[tuple[int, Problem]]:
    """(example index, problem) for every check that needs no tokenizer, in example order."""
    template = dataset.template
    keys = template.input_keys
    first_by_row: dict[tuple, _Place] = {}
    first_by_input: dict[tuple, tuple[str, _Place]] = {}
    found: list[tuple[int, Problem]] = []
    for example, place in zip(dataset.examples, places):
        values = tuple(str(example.fields.get(k, "") or "") for k in keys)
        output = example.output or ""
        has_input = _has_input(template, example, values)
        problems = _content_problems(template, values, output, has_input, place, limits)
        if has_input:
            problems += _repeat_problems(values, output, place, first_by_row, first_by_input)
        found += [(place.index, p) for p in problems]
    return found


def _content_problems(template: PromptTemplate, values: tuple[str, ...], output: str,
                      has_input: bool, place: _Place, limits: DatasetLimits) -> list[Problem]:
    problems = []
    if not has_input:
        problems.append(_empty_input(template, place))
    if not output.strip():
        problems.append(Problem(
            "error", "empty_output",
            say("validation.empty_output", place=place.title, remove=place.remove),
            place.number, "output"))
    input_chars = sum(len(v) for v in values)
    if input_chars > limits.max_input_chars:
        problems.append(_input_too_long(template, values, input_chars, place, limits))
    if len(output) > limits.max_output_chars:
        problems.append(Problem(
            "error", "output_too_long",
            say("validation.output_too_long", place=place.title, chars=len(output),
                limit=limits.max_output_chars), place.number, "output"))
    return problems


def _has_input(template: PromptTemplate, example: Example, values: tuple[str, ...]) -> bool:
    if template.kind == "chat":
        return any(m.role == "user" and m.content.strip() for m in chat_messages(example)[:-1])
    return any(v.strip() for v in values)


def _empty_input(template: PromptTemplate, place: _Place) -> Problem:
    keys = template.input_keys
    if template.kind == "chat":
        kind, field = "chat", "user"
    elif len(keys) == 1:
        kind, field = "one", keys[0]
    else:
        kind, field = "all", keys[0] if keys else None
    text = say(f"validation.empty_input_{kind}", place=place.title, remove=place.remove,
               field=field, fields=", ".join(keys))
    return Problem("error", "empty_input", text, place.number, field)


def _input_too_long(template: PromptTemplate, values: tuple[str, ...], chars: int,
                    place: _Place, limits: DatasetLimits) -> Problem:
    keys = template.input_keys
    longest = keys[max(range(len(values)), key=lambda i: len(values[i]))]
    kind = "chat" if template.kind == "chat" else "one" if len(keys) == 1 else "all"
    return Problem(
        "error", "input_too_long",
        say(f"validation.input_too_long_{kind}", place=place.title, field=keys[0], chars=chars,
            limit=limits.max_input_chars), place.number, longest)


def _repeat_problems(values: tuple[str, ...], output: str, place: _Place,
                     first_by_row: dict, first_by_input: dict) -> list[Problem]:
    inputs = tuple(v.strip() for v in values)
    answer = output.strip()
    earlier = first_by_row.setdefault(inputs + (answer,), place)
    if earlier is not place:
        return [Problem("warning", "duplicate",
                        say("validation.duplicate", place=place.title, earlier=earlier.said),
                        place.number)]
    first_answer, first_place = first_by_input.setdefault(inputs, (answer, place))
    if first_answer != answer:
        return [Problem("warning", "conflicting_outputs",
                        say("validation.conflicting", place=place.title, first=first_place.said),
                        place.number, "output")]
    return []


def _token_counts(dataset: Dataset, tokenizer) -> list[tuple[int, int]]:
    renderings = [render_example(dataset.template, ex, tokenizer) for ex in dataset.examples]
    return token_counts(renderings, _length_tokenizer(tokenizer))


class _BackendLengths:
    """Tokenizes a batch with the Rust backend's ``encode_batch_fast`` (no offsets computed): the
    same token ids as the tokenizer's own call, about 1.8x faster on 10,000 rows."""

    def __init__(self, backend):
        self.backend = backend

    def __call__(self, texts, add_special_tokens=False, return_attention_mask=False):
        return {"input_ids": self.backend.encode_batch_fast(texts, add_special_tokens=add_special_tokens)}


def _length_tokenizer(tokenizer):
    """The backend shortcut where it gives the same counts (no truncation or padding configured
    on the backend, special tokens handled alike), else the tokenizer itself."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        backend is not None
        and hasattr(backend, "encode_batch_fast")
        and backend.truncation is None
        and backend.padding is None
        and bool(getattr(backend, "encode_special_tokens", False))
        == bool(getattr(tokenizer, "split_special_tokens", False))
    ):
        return _BackendLengths(backend)
    return tokenizer


def _truncation_problems(counts: list[tuple[int, int]], places: list[_Place],
                         limits: DatasetLimits) -> list[tuple[int, Problem]]:
    problems = []
    max_in, max_out = limits.max_input_tokens, limits.max_output_tokens
    for (input_tokens, output_tokens), place in zip(counts, places):
        over_in, over_out = input_tokens > max_in, output_tokens > max_out
        if not over_in and not over_out:
            continue
        which = "both" if over_in and over_out else "input" if over_in else "output"
        text = say(f"validation.truncate_{which}", place=place.title, input=input_tokens,
                   output=output_tokens, max_in=max_in, max_out=max_out)
        field = "output" if over_out else None
        problems.append((place.index, Problem("warning", "will_truncate", text, place.number,
                                              field)))
    return problems


def _bounded(problems: list[Problem], limits: DatasetLimits, unit: str) -> list[Problem]:
    """At most MAX_LISTED_PER_CODE problems per code, then one summary per code."""
    listed, hidden = [], Counter()
    seen = Counter()
    for problem in problems:
        seen[problem.code] += 1
        if seen[problem.code] <= MAX_LISTED_PER_CODE:
            listed.append(problem)
        else:
            hidden[problem.code] += 1
    severities = {p.code: p.severity for p in problems}
    unit = unit if unit in UNITS else "example"
    for code, count in hidden.items():
        phrase = say(f"validation.more.{code}" if code in SUMMARISED else "validation.more.other",
                     unit=say(f"unit.{unit}"), max_in=limits.max_input_chars,
                     max_out=limits.max_output_chars)
        text = say(f"validation.more_{unit}", count=count, phrase=phrase)
        listed.append(Problem(severities[code], code, text))
    return listed


UNITS = ("row", "line", "item", "example")
"""Where an example comes from, as the messages can say it."""

SUMMARISED = ("empty_input", "empty_output", "input_too_long", "output_too_long", "duplicate",
              "conflicting_outputs", "will_truncate")
"""Problem codes with their own phrase in a '...and 12 more rows ...' summary."""
