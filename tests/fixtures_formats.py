"""Helpers that build dataset files in memory for the format and hostile-file tests."""

from __future__ import annotations

import io
import json
import zipfile

import openpyxl


def jsonl(*objects) -> bytes:
    """One JSON value per line; a str is written as the raw line (for invalid JSON)."""
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects).encode()


def xlsx(sheets: dict[str, list[list]]) -> bytes:
    """A workbook written by openpyxl, one sheet per entry, in order."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def with_members(archive: bytes, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    """A copy of a zip archive with some members replaced or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename not in members:
                target.writestr(info, source.read(info.filename))
        for name, data in members.items():
            target.writestr(name, data, compress_type=compression)
    return out.getvalue()


def member_infos(archive: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        return {info.filename: info for info in source.infolist()}


SMALL_WORKBOOK = xlsx({"Data": [["question", "answer"], ["2+2", 4]]})

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
<row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row>
</sheetData></worksheet>"""
"""The classic XML entity expansion: about 3 GB of 'lol' from under 1 KB."""


def sheet_xml(rows_xml: str, dimension: str = "A1") -> bytes:
    """A minimal worksheet part with the given <row> elements."""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="{dimension}"/><sheetData>{rows_xml}</sheetData></worksheet>'
    ).encode()
