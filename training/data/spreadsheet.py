"""Spreadsheet sources: CSV, TSV and pasted rows read into a ``Table``, and column mapping.

A table needs a column mapping before it is a dataset: ``guess_mapping`` proposes one from the
header and ``map_columns`` applies the one the user chose. Hostile files are refused with an
``UnreadableFileError`` before they can cost much: every reader has row, column and cell-length
bounds (XLSX workbooks: see ``training.data.workbook``).
"""

from __future__ import annotations

import csv
import io
import re
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

from training.core.dataset import _KEY_RE as FIELD_KEY_RE  # the rule PromptTemplate.check applies
from training.core.dataset import OUTPUT_COLUMN, Dataset, Example, InputField, PromptTemplate
from training.core.errors import DatasetError, UnreadableFileError
from training.core.limits import DatasetLimits
from training.core.messages import say
from training.data.report import Problem

DELIMITERS = (",", ";", "\t", "|")
"""Candidates when a .csv file's delimiter is sniffed, preferred in this order on a tie
(French Excel writes ';')."""

SNIFF_CHARS = 64 * 1024
"""Characters of the file's start that the delimiter sniffer looks at."""

SNIFF_ROWS = 20
"""Rows of that sample compared for a consistent cell count."""

ROW_CAP_FACTOR = 5
"""Rows beyond ``max_examples`` are still read (and reported as a problem) up to this many times
the limit; a file with more rows than that is refused outright."""

MAX_COLUMNS = 1_000
"""Most columns a table may have; data beyond this makes the file unreadable."""

_CSV_LIMIT_LOCK = threading.Lock()
_OUTPUT_NAMES = (
    "output", "outputs", "output_text", "answer", "answers", "response", "responses", "target",
    "completion", "label", "expected", "expected_output", "reply", "assistant",
    "réponse", "reponse", "sortie", "输出", "回答", "答案",
)  # in order of preference when several columns match


@dataclass(frozen=True)
class Table:
    """A spreadsheet-like source that needs a column mapping."""

    header: tuple[str, ...]
    """Column names; blank headers become ``column 3``, duplicates get `` (2)``."""

    rows: tuple[tuple[str, ...], ...]
    """Every non-empty data row as text cells, padded to the header's width."""

    sheet: str | None = None
    """The XLSX sheet read."""

    sheet_names: tuple[str, ...] = ()
    """All sheets of an XLSX workbook."""


def size_text(n_bytes: int) -> str:
    """A byte count for messages: ``512 bytes``, ``3.5 KB``, ``20.0 MB``."""
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    if n_bytes < 1 << 20:
        return f"{n_bytes / 1024:.1f} KB"
    return f"{n_bytes / (1 << 20):,.1f} MB"


def count_text(n: int, unit: str) -> str:
    """'1 row', '1,200 rows' (``unit``: row, line, column or example), in the reader's
    language."""
    return say(f"count.{unit}_{'one' if n == 1 else 'many'}", n=n)


def quoted(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


# ---- building a table from rows of text cells ---------------------------------------------


def build_table(
    raw_rows: Iterable[list[str]],
    name: str,
    limits: DatasetLimits,
    sheet: str | None = None,
    sheet_names: tuple[str, ...] = (),
) -> tuple[Table, list[Problem]]:
    """The first non-empty row is the header; empty rows are skipped; trailing empty cells are
    dropped; rows are padded to the widest row."""
    cap = limits.max_examples * ROW_CAP_FACTOR
    header: list[str] | None = None
    rows: list[list[str]] = []
    for raw in raw_rows:
        raw = list(raw)
        while raw and not raw[-1].strip():
            raw.pop()
        if not raw:
            continue
        if len(raw) > MAX_COLUMNS:
            where = say("file.header_row") if header is None else say("place.row", n=len(rows) + 1)
            raise UnreadableFileError(say("file.too_many_cells", name=name, cells=len(raw),
                                          where=where, most=MAX_COLUMNS))
        if header is None:
            header = raw
            continue
        rows.append(raw)
        if len(rows) > cap:
            raise UnreadableFileError(say("file.rows_over_cap", name=name, cap=cap,
                                          most=limits.max_examples))
    if header is None:
        raise UnreadableFileError(say("file.empty", name=name))
    width = max([len(header)] + [len(r) for r in rows])
    problems = []
    if width > len(header):
        first = next(i for i, r in enumerate(rows, start=1) if len(r) > len(header))
        problems.append(Problem(
            "warning", "extra_cells",
            say("file.extra_cells", row=first, column=len(header) + 1),
            row=first,
        ))
    if len(rows) > limits.max_examples:
        problems.append(Problem(
            "error", "too_many_rows",
            say("file.too_many_rows", rows=len(rows), most=limits.max_examples),
        ))
    padded = tuple(tuple(r) + ("",) * (width - len(r)) for r in rows)
    return Table(_column_names(header, width), padded, sheet, sheet_names), problems


def _column_names(header: list[str], width: int) -> tuple[str, ...]:
    names: list[str] = []
    for position in range(1, width + 1):
        cell = header[position - 1] if position <= len(header) else ""
        base = " ".join(cell.split()) or f"column {position}"
        name, copy = base, 2
        while name in names:
            name, copy = f"{base} ({copy})", copy + 1
        names.append(name)
    return tuple(names)


# ---- CSV, TSV and pasted text -------------------------------------------------------------


def sniff_delimiter(text: str) -> str:
    """The candidate that splits the header into most columns while keeping the first rows the
    same width; ',' when none splits the header."""
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
        try:
            rows = [r for r in reader if any(c.strip() for c in r)][:SNIFF_ROWS]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(len(r) == width for r in rows) / len(rows), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


@contextmanager
def _field_size_limit(max_chars: int) -> Iterator[None]:
    """csv's field limit is process-global: set it for one read and put the old value back.
    The lock serialises our own reads; other csv users only ever see a larger limit."""
    with _CSV_LIMIT_LOCK:
        previous = csv.field_size_limit(max_chars)
        try:
            yield
        finally:
            csv.field_size_limit(previous)


def read_delimited(
    text: str, name: str, limits: DatasetLimits, delimiter: str | None = None
) -> tuple[Table, str, list[Problem]]:
    """Read CSV/TSV text (the delimiter sniffed when not given): the table, the delimiter used
    and the problems found."""
    delimiter = delimiter or sniff_delimiter(text)
    with _field_size_limit(limits.max_field_chars):
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        table, problems = build_table(_records(reader, name, limits), name, limits)
    if table.rows and text.count('"') % 2 and any("\n" in c for c in table.rows[-1]):
        problems.append(Problem(
            "warning", "unmatched_quote",
            say("file.unmatched_quote", row=len(table.rows)),
            row=len(table.rows),
        ))
    return table, delimiter, problems


def _records(reader, name: str, limits: DatasetLimits) -> Iterator[list[str]]:
    count = 0
    try:
        for record in reader:
            count += 1
            yield record
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise UnreadableFileError(say("file.cell_too_long", name=name, row=count + 1,
                                          most=limits.max_field_chars)) from exc
        raise UnreadableFileError(say("file.bad_csv", name=name, row=count + 1,
                                      error=str(exc))) from exc


# ---- column mapping -----------------------------------------------------------------------


def guess_mapping(header: Sequence[str]) -> tuple[list[str], str | None]:
    """(input columns, output column): the output is a column named like an answer (output,
    answer, response, target, completion, label, ...), else the last column."""
    columns = list(header)
    if not columns:
        return [], None
    normal = [re.sub(r"[\s-]+", "_", c.strip().rstrip(":").strip().lower()) for c in columns]
    output = columns[-1]
    for wanted in _OUTPUT_NAMES:
        if wanted in normal:
            output = columns[normal.index(wanted)]
            break
    return [c for c in columns if c != output], output


def field_key(column: str, position: int, taken: set[str]) -> str:
    """A template field key for a column: the name itself when it is a valid key, else a
    cleaned-up one (accents dropped, other characters as '_'); never 'output' or a key in
    ``taken`` (lower-cased keys)."""
    key = column.strip()
    if not FIELD_KEY_RE.match(key):
        ascii_name = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode()
        key = re.sub(r"\s+", " ", re.sub(r"[^A-Za-z0-9_ -]+", "_", ascii_name)).strip(" _-")
        if not key.strip("_"):
            key = f"field {position}"
        elif not (key[0].isalpha() or key[0] == "_"):
            key = f"field {key}"
        key = key[:58].rstrip()
    base, copy = key, 2
    while key.lower() in taken or key.lower() == OUTPUT_COLUMN:
        key, copy = f"{base[:60].rstrip()} {copy}", copy + 1
    return key


def map_columns(
    table: Table,
    inputs: Sequence[str],
    output: str,
    labels: Mapping[str, str] | None = None,
    preamble: str = "",
) -> Dataset:
    """A structured dataset: one input field per chosen column (key = the column name, made
    valid by ``field_key`` if needed; label ``<column>:`` unless given), output label
    ``output:``. Rows empty in every chosen column are skipped; ``source`` is ``row N``."""
    inputs = list(inputs)
    if not inputs:
        raise DatasetError(say("map.no_input"))
    if not output:
        raise DatasetError(say("map.no_output"))
    for column in [*inputs, output]:
        if column not in table.header:
            raise DatasetError(say("map.unknown", column=column, choices=quoted(table.header)))
    if output in inputs:
        raise DatasetError(say("map.both", column=output))
    for column in inputs:
        if inputs.count(column) > 1:
            raise DatasetError(say("map.twice", column=column))
    labels = labels or {}
    fields: list[InputField] = []
    taken: set[str] = set()
    for position, column in enumerate(inputs, start=1):
        key = field_key(column, position, taken)
        taken.add(key.lower())
        default_label = column if column.endswith(":") else f"{column}:"
        fields.append(InputField(key, labels.get(column, default_label)))
    template = PromptTemplate("structured", preamble, tuple(fields), "output:")
    template.check()
    keys = [f.key for f in fields]
    indexes = [table.header.index(c) for c in inputs]
    out_index = table.header.index(output)
    examples = []
    for number, row in enumerate(table.rows, start=1):
        values = [row[i] for i in indexes]
        answer = row[out_index]
        if answer.strip() or any(v.strip() for v in values):
            examples.append(Example(dict(zip(keys, values)), answer, source=f"row {number}"))
    return Dataset(template, tuple(examples))
