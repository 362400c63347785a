"""Stream an XLSX worksheet's rows with the standard library's expat parser.

``sheet_rows`` yields what openpyxl's ``load_workbook(read_only=True, data_only=True)`` gave
from ``iter_rows(values_only=True)`` after ``reset_dimensions()``, about three times faster:
cached formula values; numbers as int or float; dates, times and durations as ``datetime``,
``date``, ``time`` or ``timedelta`` where the cell's number format shows one (1900 or 1904
date system, see ``training.data.xlsx_dates``); booleans; error texts such as ``#N/A``; and strings
(shared or inline, rich text runs joined, phonetic runs left out). Rows are placed by their
``r`` attribute: a gap yields empty rows, a row numbered below one already read is skipped, and
a row is as wide as its last cell's column. Cells and rows without ``r`` follow the previous
one. Transitional and strict OOXML namespaces are both read.

Where it parts from openpyxl, it is more lenient: a chartsheet is listed without being parsed
(openpyxl failed on chartsheets without drawings), strict OOXML sheets are found (openpyxl saw
none), an ``extLst`` inside a row is not a cell, and only the parts a sheet needs are read, so
damage in document properties, the theme, fonts or another sheet no longer refuses the workbook.
"""

from __future__ import annotations

import re
from typing import Iterator
from xml.parsers import expat

from training.data.xlsx_dates import excel_date, iso_date, number_value
from training.data.xlsx_package import (
    CELL, INLINE, KINDS, PHONETIC, ROW, RUN, TEXT, VALUE, SheetEntry, XlsxBook, new_parser,
    parse_part,
)

_CELL_REF = re.compile(r"([A-Za-z]{1,3})[0-9]+")
_COLUMN_CACHE: dict[str, int] = {}


def sheet_rows(book: XlsxBook, sheet: SheetEntry) -> Iterator[tuple]:
    """The sheet's rows of cell values from row 1 on, as openpyxl's read-only
    ``iter_rows(values_only=True)`` gives them after ``reset_dimensions()``."""
    done: list[tuple] = []
    parser = _sheet_parser(book, done)
    expected = 1
    for _ in parse_part(book.archive, sheet.path, parser):
        for number, values, scattered, last in done:
            while expected < number:  # rows missing from the part are empty
                expected += 1
                yield ()
            if expected == number:  # a row numbered below one already read is skipped
                expected += 1
                yield tuple(values) if scattered is None else _spread(values, scattered, last)
        done.clear()


def _spread(values: list, scattered: list[tuple[int, object]], last: int) -> tuple:
    """A row as wide as its last cell's column: its in-order cells, then the others placed
    (a later cell replaces an earlier one in the same column)."""
    row = values[:last] + [None] * (last - len(values))
    for column, value in scattered:
        if column <= last:
            row[column - 1] = value
    return tuple(row)


def _sheet_parser(book: XlsxBook, done: list[tuple]) -> expat.XMLParserType:
    """An expat parser that appends (row number, values, scattered cells, last cell's column)
    to ``done`` at each row's end.

    Every text run goes to ``chunks`` (a C-level append); an element whose text counts notes
    where its text starts (``mark``) and joins the chunks from there at its end."""
    parser = new_parser()
    kinds, strings, epoch, columns = KINDS, book.shared_strings, book.epoch, _COLUMN_CACHE
    dates, durations = book.date_styles, book.duration_styles
    chunks: list[str] = []
    parser.CharacterDataHandler = chunks.append
    row: list | None = None  # the row's values while its cells come in column order
    scattered: list | None = None  # its later cells as (column, value), once one is not
    number = column = last = style = phonetic = 0
    mark = -1
    cell_type = "n"
    value = inline = plain = run_text = None
    runs: list = []
    in_cell = in_inline = in_run = False

    def start(name, attrs):
        nonlocal row, scattered, number, column, last, style, phonetic, mark, cell_type, value
        nonlocal inline, plain, run_text, runs, in_cell, in_inline, in_run
        kind = kinds.get(name)
        if kind is None:
            return
        if kind == CELL:
            if row is not None:
                ref = attrs.get("r")
                if ref:
                    letters = ref.rstrip("0123456789")
                    column = columns.get(letters, 0)
                    if not column or len(letters) == len(ref):
                        column = column_number(ref)
                else:
                    column += 1
                cell_type = attrs.get("t", "n")
                s = attrs.get("s")
                style = int(s) if s else 0
                in_cell, value, inline = True, None, None
        elif kind == TEXT:
            if in_inline and not phonetic:
                mark = len(chunks)
        elif kind == INLINE:
            if in_cell and inline is None:
                in_inline, plain, runs = True, None, []
        elif kind == VALUE:
            if in_cell and value is None:  # the first <v> is the value
                mark = len(chunks)
        elif kind == ROW:
            ref = attrs.get("r")
            number = row_number(ref) if ref else number + 1
            row, scattered, column, last = [], None, 0, 0
            chunks.clear()
        elif kind == RUN:
            in_run, run_text = in_inline, None
        elif kind == PHONETIC:
            phonetic += 1

    def end(name):
        nonlocal row, scattered, last, phonetic, mark, value, inline, plain, run_text, in_cell
        nonlocal in_inline, in_run
        kind = kinds.get(name)
        if kind is None:
            return
        if kind == TEXT or kind == VALUE:
            if mark < 0:
                return
            text = "".join(chunks[mark:])
            mark = -1
            if kind == VALUE:
                value = text
            elif in_run:
                run_text = text
            else:
                plain = text
        elif kind == INLINE:
            if in_inline:
                in_inline = False
                inline = (plain or "") + "".join(filter(None, runs)) if runs else plain or ""
        elif kind == CELL:
            if not in_cell:
                return
            in_cell = False
            if cell_type == "inlineStr":
                cell = inline
            elif not value:
                cell = None
            elif cell_type == "s":
                cell = strings[int(value)]
            elif cell_type == "n":
                cell = number_value(value)
                if style in dates:
                    cell = excel_date(cell, epoch, style in durations)
            elif cell_type == "b":
                cell = bool(int(value))
            elif cell_type == "d":  # an ISO 8601 date (strict OOXML)
                cell = iso_date(value)
            else:  # str (a formula's text), e (an error such as #N/A) and unknown types
                cell = value
            if scattered is None and column == len(row) + 1:
                row.append(cell)
            elif scattered is None:  # from here on (column, value): a wide row stays small
                scattered = [(column, cell)]
            else:
                scattered.append((column, cell))
            last = column
        elif kind == ROW:
            if row is not None:
                done.append((number, row, scattered, last))
                row = None
        elif kind == RUN:
            if in_run:
                runs.append(run_text)
                in_run = False
        elif kind == PHONETIC:
            phonetic -= 1

    parser.StartElementHandler, parser.EndElementHandler = start, end
    return parser


def column_number(ref: str) -> int:
    """The column of a cell reference: 1 for ``A7``, 28 for ``AB3``."""
    letters = ref.rstrip("0123456789")
    column = _COLUMN_CACHE.get(letters)
    if column is None or len(letters) == len(ref):
        if not _CELL_REF.fullmatch(ref):
            raise ValueError(f"'{ref}' is not a valid cell reference")
        column = 0
        for letter in letters.upper():
            column = column * 26 + ord(letter) - 64
        _COLUMN_CACHE[letters] = column
    return column


def row_number(ref: str) -> int:
    """A row's ``r`` attribute as a number (``3`` or ``3.0``)."""
    try:
        return int(ref)
    except ValueError:
        number = float(ref)
        if not number.is_integer():
            raise ValueError(f"{ref} is not a valid row number") from None
        return int(number)


