"""XLSX workbooks: refuse hostile archives before any XML is parsed, then read one sheet.

Checks, in order: an old .xls (OLE) file, a damaged zip, too many members, the total unpacked
size (``max_unpacked_bytes``), each large member's compression ratio (``max_compression_ratio``)
and any XML document type or entity declaration (entity expansion, "billion laughs"). Only
then do ``training.data.xlsx_package`` and ``training.data.xlsx_reader`` read the workbook with the
standard library's expat parser, streaming the sheet (cached formula values, as openpyxl's
``data_only=True`` read them); without a document type there is no entity for expat to expand.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from typing import Iterable, Iterator

from training.core.dataset import cell_text
from training.core.errors import DatasetError, StudioError, UnreadableFileError
from training.core.limits import DatasetLimits
from training.core.messages import say
from training.data.report import Problem
from training.data.spreadsheet import MAX_COLUMNS, Table, build_table, quoted, size_text
from training.data.xlsx_package import SheetEntry, XlsxBook, open_book
from training.data.xlsx_reader import sheet_rows

MAX_CELLS = 5_000_000
"""Most cells (empty ones included) read from one sheet, so a hostile sheet cannot make us
build millions of empty cells."""

MAX_ZIP_MEMBERS = 10_000
"""Most files inside an XLSX archive."""

RATIO_CHECK_MIN_BYTES = 1 << 20
"""Archive members smaller than this (1 MiB unpacked) are not checked for their compression
ratio: small repetitive XML compresses very well and cannot be a bomb."""

_SCAN_CHUNK_BYTES = 1 << 20
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls and password-protected workbooks
_DTD_WORDS = ("<!DOCTYPE", "<!ENTITY")
_DTD_RE = re.compile(
    b"|".join(
        re.escape(word.encode(encoding))
        for word in _DTD_WORDS
        for encoding in ("utf-8", "utf-16-le", "utf-16-be")
    ),
    re.IGNORECASE,
)


def check_archive(data: bytes, name: str, limits: DatasetLimits) -> None:
    """Refuse what the XML parser must not see: not a zip, a zip bomb, or XML with a DOCTYPE."""
    if data.startswith(_OLE_MAGIC):
        raise UnreadableFileError(say("xlsx.old_or_locked", name=name))
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except Exception as exc:  # zipfile raises many types on damaged archives
        raise UnreadableFileError(say("xlsx.not_zip", name=name)) from exc
    if len(members) > MAX_ZIP_MEMBERS:
        raise UnreadableFileError(say("xlsx.too_many_members", name=name, count=len(members)))
    total = sum(m.file_size for m in members)
    if total > limits.max_unpacked_bytes:
        raise UnreadableFileError(say("xlsx.too_big_unpacked", name=name, size=size_text(total),
                                      limit=size_text(limits.max_unpacked_bytes)))
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size >= RATIO_CHECK_MIN_BYTES and ratio > limits.max_compression_ratio:
            raise UnreadableFileError(say(
                "xlsx.zip_bomb", name=name, size=size_text(member.file_size),
                packed=size_text(member.compress_size), member=member.filename, ratio=ratio,
                most=limits.max_compression_ratio))
    for member in members:
        _refuse_doctype(archive, member, name)


def _refuse_doctype(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str) -> None:
    tail = b""
    try:
        with archive.open(member) as stream:
            while chunk := stream.read(_SCAN_CHUNK_BYTES):
                window = tail + chunk
                if _might_declare(window) and _DTD_RE.search(window):
                    raise UnreadableFileError(say("xlsx.doctype", name=name,
                                                  member=member.filename))
                tail = chunk[-32:]
    except StudioError:
        raise
    except Exception as exc:  # damaged member: bad CRC, unsupported compression, encryption
        raise _unreadable_workbook(name, exc) from exc


def _might_declare(window: bytes) -> bool:
    """A quick test that the slower regular expression can only confirm: every declaration
    starts with '<!' (UTF-8) or '<\\0!' (UTF-16, either byte order)."""
    return b"<!" in window or b"<\x00!" in window


def _unreadable_workbook(name: str, exc: Exception) -> UnreadableFileError:
    detail = " ".join(str(exc).split())[:160] or type(exc).__name__
    return UnreadableFileError(say("xlsx.unreadable", name=name, detail=detail))


def read_xlsx(
    data: bytes, name: str, limits: DatasetLimits, sheet: str | None = None
) -> tuple[Table, list[Problem]]:
    """Read one sheet (the named one, else the first that has data rows) of an XLSX workbook with cached formula values."""
    check_archive(data, name, limits)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _read_book(open_book(archive), name, limits, sheet)
    except StudioError:
        raise
    except Exception as exc:  # a malformed part: sheets are parsed while their rows are read
        raise _unreadable_workbook(name, exc) from exc


def _read_book(
    book: XlsxBook, name: str, limits: DatasetLimits, sheet: str | None
) -> tuple[Table, list[Problem]]:
    names = tuple(s.name for s in book.sheets)
    if not names:
        raise UnreadableFileError(say("xlsx.no_sheets", name=name))
    if sheet is None:  # the first sheet holding data rows, else the first sheet
        first = None
        for candidate in book.sheets:
            if candidate.is_chart:
                continue
            result = _read_sheet(book, candidate, name, limits, names)
            if result[0].rows:
                return result
            first = first or result
        if first is None:
            raise DatasetError(say("xlsx.only_charts", name=name))
        return first
    if sheet not in names:
        raise DatasetError(say("xlsx.no_such_sheet", sheet=sheet, names=quoted(names)))
    chosen = book.sheets[names.index(sheet)]
    if chosen.is_chart:
        raise DatasetError(say("xlsx.chart_sheet", sheet=sheet, names=quoted(names)))
    return _read_sheet(book, chosen, name, limits, names)


def _read_sheet(
    book: XlsxBook, sheet: SheetEntry, name: str, limits: DatasetLimits, names: tuple[str, ...]
) -> tuple[Table, list[Problem]]:
    rows = _sheet_rows(sheet_rows(book, sheet), name, limits)
    return build_table(rows, name, limits, sheet.name, names)


def _sheet_rows(
    value_rows: Iterable[tuple], name: str, limits: DatasetLimits
) -> Iterator[list[str]]:
    cells = 0
    for number, values in enumerate(value_rows, start=1):
        cells += len(values)
        if cells > MAX_CELLS:
            raise UnreadableFileError(say("xlsx.too_many_cells", name=name, most=MAX_CELLS))
        if len(values) > MAX_COLUMNS and any(v is not None for v in values[MAX_COLUMNS:]):
            raise UnreadableFileError(say("xlsx.too_wide", name=name, most=MAX_COLUMNS, row=number))
        row = [v if type(v) is str else _xlsx_text(v) for v in values[:MAX_COLUMNS]]
        if any(len(c) > limits.max_field_chars for c in row):
            raise UnreadableFileError(say("xlsx.cell_too_long", name=name, row=number,
                                          most=limits.max_field_chars))
        yield row


def _xlsx_text(value) -> str:
    """A cell as the text a person sees: 3 not 3.0, dates in ISO form, TRUE/FALSE."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return cell_text(value)
