"""The parts of an XLSX workbook that every sheet needs, read with the standard library.

``open_book`` follows the package the way openpyxl did: ``[Content_Types].xml`` names the
workbook and shared-strings parts, ``xl/workbook.xml`` lists the sheets (and the 1904 date
system) and its relationships name each sheet's part; ``xl/styles.xml`` says which cell formats
show dates. Sheets themselves are streamed by ``training.data.xlsx_reader``.

Every part is parsed by expat with document types refused. ``training.data.workbook.check_archive``
refuses DOCTYPE and ENTITY declarations before any of this runs; refusing them again in the
parser also covers a part whose encoding could hide one from that byte scan.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import zipfile
from dataclasses import dataclass
from typing import Iterator
from xml.etree import ElementTree
from xml.parsers import expat

from training.data.xlsx_dates import MAC_EPOCH, WINDOWS_EPOCH, date_styles

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
STYLES_PART = "xl/styles.xml"
SHARED_STRINGS_TYPE = (
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml")
FEED_BYTES = 1 << 16
"""Bytes of a sheet part inflated and parsed at a time; rows are yielded after each feed."""

# element kinds, looked up by expat's "namespace}local" names
ROW, CELL, VALUE, INLINE, TEXT, RUN, PHONETIC, ITEM = range(8)
KINDS = {
    f"{ns}}}{local}": kind
    for ns in MAIN_NAMESPACES
    for local, kind in (("row", ROW), ("c", CELL), ("v", VALUE), ("is", INLINE), ("t", TEXT),
                        ("r", RUN), ("rPh", PHONETIC), ("si", ITEM))
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
    root = _element_tree(archive.read(workbook_part))
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
    dates, durations = _date_styles(archive)
    return XlsxBook(archive, tuple(sheets), strings, dates, durations, epoch)


def _content_types(archive: zipfile.ZipFile) -> tuple[dict[str, str], set[str]]:
    """({content type: first part name, without its leading '/'}, default content types)."""
    root = _element_tree(archive.read("[Content_Types].xml"))
    overrides: dict[str, str] = {}
    for override in children(root, "Override"):
        overrides.setdefault(override.get("ContentType"), (override.get("PartName") or "")[1:])
    return overrides, {default.get("ContentType") for default in children(root, "Default")}


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """{relationship id: (target part, relationship type)} of one part."""
    folder, filename = posixpath.split(part)
    root = _element_tree(archive.read(posixpath.join(folder, "_rels", f"{filename}.rels")))
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


def _date_styles(archive: zipfile.ZipFile) -> tuple[frozenset[int], frozenset[int]]:
    if STYLES_PART not in archive.NameToInfo:
        return frozenset(), frozenset()
    root = _element_tree(archive.read(STYLES_PART))
    custom = {int(f.get("numFmtId")): f.get("formatCode")
              for f in children(root, "numFmts", "numFmt")}
    cell_formats = [int(xf.get("numFmtId", 0)) for xf in children(root, "cellXfs", "xf")]
    return date_styles(custom, cell_formats)


def children(element: ElementTree.Element, *path: str) -> list[ElementTree.Element]:
    """Elements reached by following local names (``*``: any), in any namespace."""
    found = [element]
    for local in path:
        found = [child for parent in found for child in parent
                 if local in ("*", child.tag.rpartition("}")[2])]
    return found


def _element_tree(xml: bytes) -> ElementTree.Element:
    """A small part (workbook, relationships, styles) as elements, parsed like the others."""
    builder = ElementTree.TreeBuilder()
    parser = new_parser()
    parser.StartElementHandler = lambda name, attrs: builder.start(
        _clark(name), {_clark(key): value for key, value in attrs.items()})
    parser.EndElementHandler = lambda name: builder.end(_clark(name))
    parser.Parse(xml, True)
    return builder.close()


def _clark(name: str) -> str:
    """expat's ``namespace}local`` as ElementTree's ``{namespace}local``."""
    return f"{{{name}" if "}" in name else name


def new_parser() -> expat.XMLParserType:
    """expat, refusing any document type: ``check_archive`` has refused them already, and
    this keeps entity declarations out even of a part whose encoding hid one from it."""
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True  # one call per text run, not per line or entity
    parser.buffer_size = FEED_BYTES
    parser.StartDoctypeDeclHandler = _refuse_document_type
    return parser


def _refuse_document_type(*declaration) -> None:
    raise ValueError("an XML part declares a document type, which spreadsheets never need")


def parse_part(
    archive: zipfile.ZipFile, part: str, parser: expat.XMLParserType
) -> Iterator[None]:
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
    parser = new_parser()
    kinds, chunks = KINDS, []
    parser.CharacterDataHandler = chunks.append
    mark, phonetic, in_run = -1, 0, False
    plain = run_text = None
    runs: list = []

    def start(name, attrs):
        nonlocal mark, phonetic, in_run, plain, run_text, runs
        kind = kinds.get(name)
        if kind == TEXT:
            if not phonetic:
                mark = len(chunks)
        elif kind == ITEM:
            plain, runs = None, []
            chunks.clear()
        elif kind == RUN:
            in_run, run_text = True, None
        elif kind == PHONETIC:
            phonetic += 1

    def end(name):
        nonlocal mark, phonetic, in_run, plain, run_text
        kind = kinds.get(name)
        if kind == TEXT:
            if mark >= 0:
                if in_run:
                    run_text = "".join(chunks[mark:])
                else:
                    plain = "".join(chunks[mark:])
                mark = -1
        elif kind == ITEM:
            text = (plain or "") + "".join(filter(None, runs))
            strings.append(text.replace("x005F_", ""))  # as openpyxl reads shared strings
        elif kind == RUN:
            runs.append(run_text)
            in_run = False
        elif kind == PHONETIC:
            phonetic -= 1

    parser.StartElementHandler, parser.EndElementHandler = start, end
    for _ in parse_part(archive, part, parser):
        pass
    return tuple(strings)


