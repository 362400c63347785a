"""Write a dataset out as CSV, XLSX or JSONL, in shapes the studio's own reader imports again.

CSV and XLSX hold the grid: a header of ``template.columns`` and one row per example. Because a
person opens them in a spreadsheet program, any cell that starts with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return is neutralised by a leading single quote (OWASP CSV injection), and
XLSX cells are always written as text, never as formulas. The prompt template (preamble and
labels) is not part of the grid: XLSX keeps it in a second sheet, ``template``, as key/value
rows; CSV has no place for it, so a CSV export carries the examples only.

JSONL is data for programs, not a spreadsheet, so it is written as it is: structured datasets as
one object per example with each input key and ``output`` (``{"text_input", "output"}`` Gemini
pairs when the only input is ``text_input``, ``{"input_text", "output_text"}`` Vertex text when it
is ``input_text``), chat datasets as OpenAI-style ``{"messages": [...]}``. JSONL keeps neither the
preamble nor the labels. Input keys that name another format's keys (``messages``, or
``instruction`` beside keys other than ``input``) are read back as that format.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Literal

from training.core.atomic import write_file_atomic
from training.core.dataset import Dataset, chat_messages
from training.core.errors import DatasetError

ExportFormat = Literal["csv", "xlsx", "jsonl"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""A cell starting with one of these could run as a formula in a spreadsheet program (OWASP)."""

XLSX_MAX_CELL_CHARS = 32_767
"""Most characters an Excel cell holds; openpyxl would cut longer text off silently."""

MAX_NAME_CHARS = 100
"""Longest file name stem written by ``export_file``."""

_ILLEGAL_XLSX_RE = re.compile(r"[\000-\010\013\014\016-\037]")  # control characters XML 1.0 forbids
_UNSAFE_NAME_RE = re.compile(r"[^\w .-]+")
_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                   *(f"lpt{i}" for i in range(1, 10))}


def neutralise(cell: str) -> str:
    """The cell prefixed with ``'`` when a spreadsheet could read it as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def export_csv(dataset: Dataset) -> bytes:
    """UTF-8 with a byte-order mark (so Excel reads accents right), comma-separated, CRLF."""
    stream = io.StringIO(newline="")
    writer = csv.writer(stream)
    writer.writerow([neutralise(c) for c in dataset.template.columns])
    writer.writerows([neutralise(c) for c in row] for row in dataset.rows())
    return stream.getvalue().encode("utf-8-sig")


def export_xlsx(dataset: Dataset) -> bytes:
    """Sheet ``examples``: the grid; sheet ``template``: the prompt template as key/value rows.
    Every cell is a text cell. Control characters that XLSX cannot hold (U+0000-U+001F except
    tab, newline and carriage return) are dropped. Raises DatasetError for a cell longer than an
    Excel cell holds."""
    import openpyxl  # imported here: only XLSX exports pay for it

    for number, row in enumerate(dataset.rows(), start=1):
        _check_cell_lengths(row, dataset.template.columns, number)
    workbook = openpyxl.Workbook(write_only=True)
    grid = workbook.create_sheet("examples")
    grid.append(_text_cells(grid, dataset.template.columns))
    for row in dataset.rows():
        grid.append(_text_cells(grid, row))
    settings = workbook.create_sheet("template")
    for pair in _template_rows(dataset):
        settings.append(_text_cells(settings, pair))
    stream = io.BytesIO()
    workbook.save(stream)
    return stream.getvalue()


def export_jsonl(dataset: Dataset) -> bytes:
    """One JSON object per line, UTF-8, not neutralised."""
    lines = [json.dumps(record, ensure_ascii=False) for record in jsonl_records(dataset)]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def jsonl_records(dataset: Dataset) -> list[dict]:
    """The objects ``export_jsonl`` writes, one per example."""
    if dataset.template.kind == "chat":
        return [
            {"messages": [{"role": m.role, "content": m.content} for m in chat_messages(example)]}
            for example in dataset.examples
        ]
    keys = dataset.template.input_keys
    output = "output_text" if keys == ("input_text",) else "output"  # Vertex text keeps its shape
    return [
        {**{key: example.fields.get(key, "") for key in keys}, output: example.output}
        for example in dataset.examples
    ]


_WRITERS = {"csv": export_csv, "xlsx": export_xlsx, "jsonl": export_jsonl}


def export_file(dataset: Dataset, fmt: ExportFormat, directory: Path, name: str) -> Path:
    """Write ``<safe name>.<fmt>`` into ``directory`` (created if missing) through a temporary
    file and a rename, so a crash leaves either the old file or the whole new one."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise DatasetError.of("export.format_unknown", fmt=fmt)
    data = writer(dataset)
    directory = Path(directory)
    target = directory / f"{safe_name(name, fmt)}.{fmt}"
    write_file_atomic(target, data)
    return target


def safe_name(name: str, fmt: str = "") -> str:
    """A file name stem safe on every system: letters, digits, spaces, ``.``, ``-`` and ``_``
    (other characters become ``_``), no leading dot, at most MAX_NAME_CHARS; ``dataset`` when
    nothing is left. A trailing ``.<fmt>`` is dropped so it is not doubled."""
    stem = unicodedata.normalize("NFKC", name).strip()
    if fmt and stem.lower().endswith(f".{fmt}"):
        stem = stem[: -len(fmt) - 1]
    stem = _UNSAFE_NAME_RE.sub("_", stem)
    stem = re.sub(r"\s+", " ", stem).strip(" ._")[:MAX_NAME_CHARS].rstrip(" .")
    if not stem:
        return "dataset"
    if stem.split(".")[0].lower() in _RESERVED_NAMES:
        stem = "_" + stem
    return stem


def _template_rows(dataset: Dataset) -> list[tuple[str, str]]:
    template = dataset.template
    rows = [("key", "value"), ("kind", template.kind)]
    if template.kind == "structured":
        rows += [("preamble", template.preamble), ("output_label", template.output_label)]
        rows += [(f"label:{item.key}", item.label) for item in template.inputs]
    return rows


def _text_cells(sheet, values) -> list:
    from openpyxl.cell import WriteOnlyCell

    cells = []
    for value in values:
        cell = WriteOnlyCell(sheet, _ILLEGAL_XLSX_RE.sub("", neutralise(value)))
        cell.data_type = "s"  # text even when it looks like a number, an error code or a formula
        cells.append(cell)
    return cells


def _check_cell_lengths(row: list[str], columns: tuple[str, ...], number: int) -> None:
    for column, value in zip(columns, row):
        if len(neutralise(value)) > XLSX_MAX_CELL_CHARS:
            raise DatasetError.of("export.cell_too_long", row=number, column=column,
                                  chars=len(value), most=XLSX_MAX_CELL_CHARS)
