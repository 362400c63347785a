"""A streaming XLSX (SpreadsheetML) reader on the standard library: zipfile and expat.

``sheet_rows`` yields what openpyxl's ``load_workbook(read_only=True, data_only=True)`` gave
from ``iter_rows(values_only=True)`` after ``reset_dimensions()``, about three times faster:
cached formula values; numbers as int or float; dates, times and durations as ``datetime``,
``date``, ``time`` or ``timedelta`` where the cell's number format shows one (1900 or 1904
date system, see ``training.xlsx_dates``); booleans; error texts such as ``#N/A``; and strings
(shared or inline, rich text runs joined, phonetic runs left out). Rows are placed by their
``r`` attribute: a gap yields empty rows, a row numbered below one already read is skipped, and
a row is as wide as its last cell's column. Cells and rows without ``r`` follow the previous
one. Transitional and strict OOXML namespaces are both read.

Where it parts from openpyxl, it is more lenient: a chartsheet is listed without being parsed
(openpyxl failed on chartsheets without drawings), strict OOXML sheets are found (openpyxl saw
none), an ``extLst`` inside a row is not a cell, and parts it does not need (document
properties, theme, fonts, fills) are not read, so damage there no longer refuses the workbook.

Parse only archives that ``training.workbook.check_archive`` has accepted: it refuses XML with
a DOCTYPE or entity declaration, which is what makes plain expat safe here.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import zipfile
from dataclasses import dataclass
from typing import Iterator
from xml.etree import ElementTree
from xml.parsers import expat

from training.xlsx_dates import MAC_EPOCH, WINDOWS_EPOCH, children, date_styles, excel_date
from training.xlsx_dates import iso_date, local_name, number_value

MAIN_NAMESPACES = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",  # strict OOXML
)
RELATIONSHIP_NAMESPACES = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "http://purl.oclc.org/ooxml/officeDocument/relationships",
)
WORKBOOK_TYPES = tuple(  # in the order openpyxl looks for them
    f"application/vnd.{kind}.main+xml" for kind in (
        "ms-excel.template.macroEnabled", "openxmlformats-officedocument.spreadsheetml.template",
        "ms-excel.sheet.macroEnabled", "openxmlformats-officedocument.spreadsheetml.sheet",
    )
)
SHARED_STRINGS_TYPE = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml")
FEED_BYTES = 1 << 16
"""Bytes of a sheet part inflated and parsed at a time; rows are yielded after each feed."""

_CELL_REF = re.compile(r"([A-Za-z]{1,3})[0-9]+")
_COLUMN_CACHE: dict[str, int] = {}

# element kinds, looked up by expat's "namespace}local" names
_ROW, _CELL, _VALUE, _INLINE, _TEXT, _RUN, _PHONETIC, _ITEM = range(8)
_KINDS = {
    f"{ns}}}{local}": kind
    for ns in MAIN_NAMESPACES
    for local, kind in (("row", _ROW), ("c", _CELL), ("v", _VALUE), ("is", _INLINE), ("t", _TEXT),
                        ("r", _RUN), ("rPh", _PHONETIC), ("si", _ITEM))
}


@dataclass(frozen=True)
class SheetEntry:
    name: str
    """The sheet's tab name."""

    path: str
    """Its part inside the archive, such as ``xl/worksheets/sheet1.xml``."""

    is_chart: bool = False
    """A chartsheet: a chart on its own tab, not a table."""


@dataclass(frozen=True)
class XlsxBook:
    """A workbook opened for reading: what every sheet needs, read once."""

    archive: zipfile.ZipFile
    """Open while sheets are read; their parts are inflated as they are parsed."""

    sheets: tuple[SheetEntry, ...]
    """In tab order; a sheet whose part is missing is left out, as openpyxl did."""

    shared_strings: tuple[str, ...]
    """``xl/sharedStrings.xml``: what a ``t="s"`` cell's value indexes."""

    date_styles: frozenset[int]
    """Indexes of cell formats (``c/@s``) whose number format shows a date or time."""

    duration_styles: frozenset[int]
    """Those that show an elapsed time such as ``[h]:mm:ss`` (read as ``timedelta``)."""

    epoch: dt.datetime
    """Day 0 of the workbook's date system."""


def open_book(archive: zipfile.ZipFile) -> XlsxBook:
    """The workbook's sheets (in tab order), shared strings, date formats and date system."""
    overrides, defaults = _content_types(archive)
    workbook_part = next((overrides[t] for t in WORKBOOK_TYPES if t in overrides), None)
    if workbook_part is None:
        if not defaults & set(WORKBOOK_TYPES):
            raise ValueError("the archive holds no workbook part")
        workbook_part = "xl/workbook.xml"
    root = ElementTree.fromstring(archive.read(workbook_part))
    rels = _relationships(archive, workbook_part)
    members = set(archive.namelist())
    epoch = WINDOWS_EPOCH
    for properties in children(root, "workbookPr"):
        flag = properties.get("date1904")
        if flag and flag not in ("false", "f", "0"):  # openpyxl's reading of the flag
            epoch = MAC_EPOCH
    sheets = []
    for sheet in children(root, "sheets", "*"):  # openpyxl took every child as a sheet
        ids = [sheet.get(f"{{{ns}}}id") for ns in RELATIONSHIP_NAMESPACES] + [sheet.get("id")]
        rel_id = next(filter(None, ids), None)
        if not rel_id:
            continue  # no part to read: openpyxl drops such a sheet too
        target, rel_type = rels[rel_id]
        if target in members:
            name = sheet.get("name")
            if name is None:
                raise ValueError(f"a sheet in '{workbook_part}' has no name")
            sheets.append(SheetEntry(name, target, "chartsheet" in rel_type))
    strings_part = overrides.get(SHARED_STRINGS_TYPE)
    strings = _shared_strings(archive, strings_part) if strings_part else ()
    dates, durations = date_styles(archive)
    return XlsxBook(archive, tuple(sheets), strings, dates, durations, epoch)


def _content_types(archive: zipfile.ZipFile) -> tuple[dict[str, str], set[str]]:
    """({content type: first part name, without its leading '/'}, default content types)."""
    root = ElementTree.fromstring(archive.read("[Content_Types].xml"))
    overrides: dict[str, str] = {}
    for override in children(root, "Override"):
        overrides.setdefault(override.get("ContentType"), (override.get("PartName") or "")[1:])
    return overrides, {default.get("ContentType") for default in children(root, "Default")}


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """{relationship id: (target part, relationship type)} of one part."""
    folder, filename = posixpath.split(part)
    root = ElementTree.fromstring(archive.read(posixpath.join(folder, "_rels", f"{filename}.rels")))
    rels = {}
    for rel in root:  # whatever the element is called, as openpyxl read it
        target, rel_type = rel.get("Target"), rel.get("Type")
        if target is None or rel_type is None:
            continue
        if rel.get("TargetMode") != "External":
            target = target[1:] if target.startswith("/") else posixpath.normpath(
                posixpath.join(folder, target))
        rels[rel.get("Id")] = (target, rel_type)
    return rels


def _new_parser() -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True  # one call per text run, not per line or entity
    parser.buffer_size = FEED_BYTES
    return parser


def _parse_part(archive: zipfile.ZipFile, part: str, parser: expat.XMLParserType) -> Iterator[None]:
    """Feed a part to ``parser`` a piece at a time, yielding after each piece."""
    with archive.open(part) as stream:
        while chunk := stream.read(FEED_BYTES):
            parser.Parse(chunk, False)
            yield
    parser.Parse(b"", True)
    yield


def _shared_strings(archive: zipfile.ZipFile, part: str) -> tuple[str, ...]:
    """Each ``si``'s text: its ``t``, then its rich text runs' ``t``; phonetic runs left out."""
    strings: list[str] = []
    parser = _new_parser()
    kinds, chunks = _KINDS, []
    parser.CharacterDataHandler = chunks.append
    mark, phonetic, in_run = -1, 0, False
    plain = run_text = None
    runs: list = []

    def start(name, attrs):
        nonlocal mark, phonetic, in_run, plain, run_text, runs
        kind = kinds.get(name)
        if kind == _TEXT:
            if not phonetic:
                mark = len(chunks)
        elif kind == _ITEM:
            plain, runs = None, []
            chunks.clear()
        elif kind == _RUN:
            in_run, run_text = True, None
        elif kind == _PHONETIC:
            phonetic += 1

    def end(name):
        nonlocal mark, phonetic, in_run, plain, run_text
        kind = kinds.get(name)
        if kind == _TEXT:
            if mark >= 0:
                if in_run:
                    run_text = "".join(chunks[mark:])
                else:
                    plain = "".join(chunks[mark:])
                mark = -1
        elif kind == _ITEM:
            text = (plain or "") + "".join(filter(None, runs))
            strings.append(text.replace("x005F_", ""))  # as openpyxl reads shared strings
        elif kind == _RUN:
            runs.append(run_text)
            in_run = False
        elif kind == _PHONETIC:
            phonetic -= 1

    parser.StartElementHandler, parser.EndElementHandler = start, end
    for _ in _parse_part(archive, part, parser):
        pass
    return tuple(strings)


def sheet_rows(book: XlsxBook, sheet: SheetEntry) -> Iterator[tuple]:
    """The sheet's rows of cell values from row 1 on, as openpyxl's read-only
    ``iter_rows(values_only=True)`` gives them after ``reset_dimensions()``."""
    done: list[tuple] = []
    parser = _sheet_parser(book, done)
    expected = 1
    for _ in _parse_part(book.archive, sheet.path, parser):
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
    parser = _new_parser()
    kinds, strings, epoch, columns = _KINDS, book.shared_strings, book.epoch, _COLUMN_CACHE
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
        if kind == _CELL:
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
        elif kind == _TEXT:
            if in_inline and not phonetic:
                mark = len(chunks)
        elif kind == _INLINE:
            if in_cell and inline is None:
                in_inline, plain, runs = True, None, []
        elif kind == _VALUE:
            if in_cell and value is None:  # the first <v> is the value
                mark = len(chunks)
        elif kind == _ROW:
            ref = attrs.get("r")
            number = row_number(ref) if ref else number + 1
            row, scattered, column, last = [], None, 0, 0
            chunks.clear()
        elif kind == _RUN:
            in_run, run_text = in_inline, None
        elif kind == _PHONETIC:
            phonetic += 1

    def end(name):
        nonlocal row, scattered, last, phonetic, mark, value, inline, plain, run_text, in_cell
        nonlocal in_inline, in_run
        kind = kinds.get(name)
        if kind is None:
            return
        if kind == _TEXT or kind == _VALUE:
            if mark < 0:
                return
            text = "".join(chunks[mark:])
            mark = -1
            if kind == _VALUE:
                value = text
            elif in_run:
                run_text = text
            else:
                plain = text
        elif kind == _INLINE:
            if in_inline:
                in_inline = False
                inline = (plain or "") + "".join(filter(None, runs)) if runs else plain or ""
        elif kind == _CELL:
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
        elif kind == _ROW:
            if row is not None:
                done.append((number, row, scattered, last))
                row = None
        elif kind == _RUN:
            if in_run:
                runs.append(run_text)
                in_run = False
        elif kind == _PHONETIC:
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


