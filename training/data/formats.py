"""Dataset import: read a file or pasted rows, detect the format, and map it to a ``Dataset``
(JSON and JSONL formats) or a ``Table`` (CSV, TSV, XLSX, pasted rows; see ``map_columns``).

Detection never guesses silently: JSON objects are classified by their keys, the format of
the majority wins, objects that do not fit it become row problems, and a file that fits no
format is refused with the keys found and the shapes accepted. Problems that do not stop the
file from loading come back in ``ImportResult.problems``; a file that cannot be read at all
raises ``UnreadableFileError``. Rows over ``max_examples`` are still read (up to
``ROW_CAP_FACTOR`` times the limit) and reported as a ``too_many_rows`` error, so the user
sees the data and validation blocks training.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from training.core.dataset import Dataset
from training.core.errors import DatasetError, UnreadableFileError
from training.core.limits import DEFAULT_LIMITS, DatasetLimits
from training.core.messages import say
from training.data.json_formats import JSON_LABELS, read_json
from training.data.report import Problem
from training.data.spreadsheet import (
    Table, count_text, guess_mapping, map_columns, read_delimited, size_text, sniff_delimiter,
)
from training.data.workbook import read_xlsx

__all__ = [
    "FORMAT_LABELS", "ImportResult", "Table", "guess_mapping", "map_columns", "read_bytes",
    "read_file", "read_pasted", "decode_text",
]

FORMAT_LABELS: dict[str, str] = {
    **JSON_LABELS,
    "csv": "CSV",
    "tsv": "TSV",
    "xlsx": "XLSX",
    "pasted": "Pasted rows",  # said in the reader's language: see ``label``
}
"""Format id -> name. JSON formats read from one JSON document (not lines) get the label with
'JSON' instead of 'JSONL', e.g. 'Gemini pairs JSON'."""

EXTENSIONS = (".csv", ".tsv", ".tab", ".txt", ".json", ".jsonl", ".ndjson", ".xlsx", ".xlsm", "")
"""Extensions imported; .txt and no extension are read by their content."""

BINARY_SHARE = 0.1
"""A text with more than this share of control characters or undecodable bytes is binary."""

_BINARY_RE = re.compile("[\x00-\x08\x0e-\x1f\ufffd]")


@dataclass(frozen=True)
class ImportResult:
    format: str
    """A ``FORMAT_LABELS`` id."""

    label: str
    """Human name of what was read, e.g. ``Vertex chat JSONL``."""

    dataset: Dataset | None
    """JSON and JSONL formats: mapped straight to a dataset."""

    table: Table | None
    """CSV, TSV, XLSX and pasted rows: needs ``map_columns``."""

    problems: tuple[Problem, ...] = ()
    """Problems found while reading, in file order."""

    @property
    def summary(self) -> str:
        """``CSV, 3 columns, 150 rows``, in the reader's language."""
        label = say("import.pasted") if self.format == "pasted" else self.label
        if self.dataset is not None:
            return f"{label}, {count_text(len(self.dataset.examples), 'example')}"
        table = self.table or Table((), ())
        sheet = say("import.sheet", sheet=table.sheet) if table.sheet else ""
        columns, rows = count_text(len(table.header), "column"), count_text(len(table.rows), "row")
        return f"{label}{sheet}, {columns}, {rows}"


# ---- entry points -------------------------------------------------------------------------


def read_file(
    path, limits: DatasetLimits = DEFAULT_LIMITS, sheet: str | None = None
) -> ImportResult:
    """Read a dataset file; the size is checked before anything is read."""
    name = Path(path).name
    try:
        _check_size(os.path.getsize(path), name, limits)
        with open(path, "rb") as stream:
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as exc:
        raise UnreadableFileError(say("file.cannot_open", name=name,
                                      error=str(exc.strerror or exc))) from exc
    return read_bytes(data, name, limits, sheet)


def read_bytes(
    data: bytes, filename: str, limits: DatasetLimits = DEFAULT_LIMITS, sheet: str | None = None
) -> ImportResult:
    """Read a file's bytes; the format comes from the extension, then the content (``sheet``
    only matters for XLSX)."""
    name = Path(filename).name or "the file"
    extension = Path(name).suffix.lower()
    _check_size(len(data), name, limits)
    if extension == ".xls":
        raise UnreadableFileError(say("file.xls", name=name))
    if extension not in EXTENSIONS:
        raise UnreadableFileError(say("file.unknown_type", name=name))
    if extension in (".xlsx", ".xlsm") or (extension in (".txt", "") and data[:4] == b"PK\x03\x04"):
        table, problems = read_xlsx(data, name, limits, sheet)
        return ImportResult("xlsx", FORMAT_LABELS["xlsx"], None, table, tuple(problems))
    text, problems = decode_text(data, name)
    is_json = extension in (".json", ".jsonl", ".ndjson") or (
        extension in (".txt", "") and text.lstrip()[:1] in ("{", "[")
    )
    if is_json:
        fmt, label, dataset, problems = read_json(text, name, extension, limits, problems)
        return ImportResult(fmt, label, dataset, None, tuple(problems))
    delimiter = "\t" if extension in (".tsv", ".tab") else None
    table, delimiter, more = read_delimited(text, name, limits, delimiter)
    kind = "tsv" if delimiter == "\t" else "csv"
    return ImportResult(kind, FORMAT_LABELS[kind], None, table, tuple(problems + more))


def read_pasted(text: str, limits: DatasetLimits = DEFAULT_LIMITS) -> ImportResult:
    """Rows copied from a spreadsheet: tab-separated (else the CSV delimiter is sniffed), the
    first row being the header."""
    size = len(text.encode("utf-8", "replace"))
    if size > limits.max_file_bytes:
        raise DatasetError(say("paste.too_big", size=size_text(size),
                               limit=size_text(limits.max_file_bytes)))
    text = text.replace("\x00", "")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DatasetError(say("paste.nothing_with_header"))
    delimiter = "\t" if "\t" in lines[0] else sniff_delimiter(text)
    table, _, problems = read_delimited(text, "pasted rows", limits, delimiter)
    return ImportResult("pasted", FORMAT_LABELS["pasted"], None, table, tuple(problems))


def pasted_rows(text: str, columns: Sequence[str], limits: DatasetLimits = DEFAULT_LIMITS) -> list[list[str]]:
    """Rows copied from a spreadsheet to append to the grid: cells by position, no header row
    (a first row equal to the grid's column names is dropped)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        raise DatasetError(say("paste.nothing"))
    delimiter = "\t" if "\t" in lines[0] else sniff_delimiter(text)
    header = delimiter.join(f"column {i}" for i in range(1, len(columns) + 1))
    result = read_pasted(header + "\n" + text, limits)
    table = result.table
    if len(table.header) > len(columns):
        raise DatasetError(say("paste.width", cells=len(table.header), columns=len(columns),
                               names=", ".join(columns)))
    rows = [list(row) for row in table.rows]
    if rows and [c.strip().lower() for c in rows[0]] == [c.lower() for c in columns]:
        rows = rows[1:]
    return rows


def _check_size(n_bytes: int, name: str, limits: DatasetLimits) -> None:
    if n_bytes > limits.max_file_bytes:
        raise UnreadableFileError(say("file.too_big", name=name, size=size_text(n_bytes),
                                      limit=size_text(limits.max_file_bytes)))


# ---- text decoding ------------------------------------------------------------------------


def decode_text(data: bytes, name: str) -> tuple[str, list[Problem]]:
    """UTF-8 (BOM stripped) or UTF-16 with a BOM. Lines that are not UTF-8 are decoded with
    replacement characters and reported one problem per line; binary data is refused."""
    problems: list[Problem] = []
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise UnreadableFileError(say("file.bad_utf16", name=name)) from exc
    else:
        data = data[3:] if data.startswith(codecs.BOM_UTF8) else data
        if b"\x00" in data:
            raise _not_text(name)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            lines = []
            for number, raw in enumerate(data.split(b"\n"), start=1):
                try:
                    lines.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    lines.append(raw.decode("utf-8", "replace"))
                    problems.append(Problem(
                        "error", "not_utf8",
                        say("file.not_utf8", line=number),
                        row=number,
                    ))
            text = "\n".join(lines)
    if "\x00" in text or len(_BINARY_RE.findall(text)) > len(text) * BINARY_SHARE:
        raise _not_text(name)
    return text, problems


def _not_text(name: str) -> UnreadableFileError:
    return UnreadableFileError(say("file.not_text", name=name))
