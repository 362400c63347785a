"""The streaming XLSX reader on workbooks written part by part, as Excel writes them: shared
strings, rich text, number formats, both date systems, row and cell references, strict OOXML."""

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from training.core.errors import DatasetError, UnreadableFileError
from training.core.limits import DatasetLimits
from training.data.formats import read_bytes
from training.data.xlsx_dates import is_date_format

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
STRICT_MAIN = "http://purl.oclc.org/ooxml/spreadsheetml/main"
STRICT_RELS = "http://purl.oclc.org/ooxml/officeDocument/relationships"
SST_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
BOOK_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
STYLES = (  # cell formats 0-6: General, 14 (m/d/yy), yyyy-mm-dd, 0.00, [Red]0, [h]:mm:ss, h:mm
    '<numFmts><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/><numFmt numFmtId="165" '
    'formatCode="[Red]0"/></numFmts><cellXfs>'
    + "".join(f'<xf numFmtId="{n}"/>' for n in (0, 14, 164, 2, 165, 46, 20)) + "</cellXfs>"
)


def package(sheets: dict, shared: str = "", styles: str = STYLES, book_pr: str = "",
            main: str = MAIN, rels: str = RELS, absolute: bool = False) -> bytes:
    """A workbook from its parts: ``sheets`` maps a name to its <row> elements (None: a chart);
    relationship targets are relative to xl/ unless ``absolute``."""
    parts = {"xl/styles.xml": f'<styleSheet xmlns="{main}">{styles}</styleSheet>'}
    types = f'<Override PartName="/xl/workbook.xml" ContentType="{BOOK_TYPE}"/>'
    if shared:
        parts["xl/sharedStrings.xml"] = f'<sst xmlns="{main}">{shared}</sst>'
        types += f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SST_TYPE}"/>'
    entries, links = "", ""
    for number, (name, rows) in enumerate(sheets.items(), start=1):
        kind = "worksheet" if rows is not None else "chartsheet"
        parts[f"xl/{kind}s/sheet{number}.xml"] = (
            f'<worksheet xmlns="{main}"><sheetData>{rows}</sheetData></worksheet>'
            if rows is not None else f'<chartsheet xmlns="{main}"/>')
        entries += f'<sheet name="{name}" sheetId="{number}" r:id="rId{number}"/>'
        target = f"{'/xl/' if absolute else ''}{kind}s/sheet{number}.xml"
        links += f'<Relationship Id="rId{number}" Type="{rels}/{kind}" Target="{target}"/>'
    parts["xl/workbook.xml"] = (f'<workbook xmlns="{main}" xmlns:r="{rels}">{book_pr}'
                                f"<sheets>{entries}</sheets></workbook>")
    parts["xl/_rels/workbook.xml.rels"] = (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f"{links}</Relationships>")
    parts["[Content_Types].xml"] = (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        f"{types}</Types>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, xml in parts.items():
            archive.writestr(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + xml)
    return out.getvalue()


def cells(*values: str, row: int | None = None) -> str:
    """One <row> of cell elements (given as XML), numbered ``row`` or else not numbered."""
    number = f' r="{row}"' if row else ""
    return f"<row{number}>{''.join(values)}</row>"


def rows_of(data: bytes, sheet: str | None = None) -> list[tuple[str, ...]]:
    table = read_bytes(data, "book.xlsx", sheet=sheet).table
    return [table.header, *table.rows]


def values_of(row: str, **parts) -> tuple[str, ...]:
    """The cells of one data row (the given cell elements) under a one-cell header row."""
    return rows_of(package({"Data": cells(text("h")) + cells(row)}, **parts))[1]


def text(value: str) -> str:
    return f'<c t="inlineStr"><is><t>{value}</t></is></c>'


def number(value: str, style: int = 0) -> str:
    return f'<c s="{style}"><v>{value}</v></c>'


def test_shared_strings_join_rich_text_runs_and_leave_out_phonetic_runs():
    shared = ('<si><t>plain</t></si><si><r><t>rich </t></r><r><rPr><b/></rPr><t>text</t></r></si>'
              '<si><t>漢字</t><rPh sb="0" eb="2"><t>かんじ</t></rPh></si>'
              '<si><t xml:space="preserve"> a &amp; b </t></si>')
    row = "".join(f'<c t="s"><v>{i}</v></c>' for i in range(4))
    assert rows_of(package({"Data": cells(row)}, shared)) == [
        ("plain", "rich text", "漢字", "a & b")]


def test_inline_strings_join_their_runs():
    inline = '<c t="inlineStr"><is><r><t>in</t></r><r><rPr><i/></rPr><t>line</t></r></is></c>'
    assert rows_of(package({"Data": cells(text("q"), inline)})) == [("q", "inline")]


def test_error_booleans_and_formula_cells_read_as_a_person_sees_them():
    row = ('<c t="e"><v>#N/A</v></c><c t="e"><v>#DIV/0!</v></c><c t="b"><v>1</v></c>'
           '<c t="b"><v>0</v></c><c t="str"><f>A1&amp;"!"</f><v>hi!</v></c><c><f>1+1</f></c>'
           + text("end"))
    assert values_of(row) == ("#N/A", "#DIV/0!", "TRUE", "FALSE", "hi!", "", "end")


def test_numbers_read_without_a_needless_decimal_part():
    row = "".join(number(v) for v in ("4", "4.0", "0.5", "1E3", "-3", "2.5e-3", "0.1"))
    assert values_of(row) == ("4", "4", "0.5", "1000", "-3", "0.0025", "0.1")


def test_number_formats_decide_which_numbers_are_dates():
    row = (number("45352", 1) + number("45352", 2) + number("45352.4375", 2)
           + number("0.3784722222222222", 6) + number("45352", 3) + number("45352", 4)
           + number("1.5", 5))
    assert values_of(row) == ("2024-03-01", "2024-03-01", "2024-03-01T10:30:00", "09:05:00",
                              "45352", "45352", "1 day, 12:00:00")


def test_the_1900_date_system_keeps_excels_leap_year_day_on_28_february():
    row = "".join(number(v, 2) for v in ("1", "59", "60", "61"))
    assert values_of(row) == ("1900-01-01", "1900-02-28", "1900-02-28", "1900-03-01")


@pytest.mark.parametrize("flag, dates", [
    ("1", ("1904-01-02", "2024-03-01")),
    ("true", ("1904-01-02", "2024-03-01")),
    ("0", ("1900-01-01", "2020-02-29")),
    ("false", ("1900-01-01", "2020-02-29")),
])
def test_date1904_counts_serials_from_1904(flag, dates):
    row = number("1", 2) + number("43890", 2)
    assert values_of(row, book_pr=f'<workbookPr date1904="{flag}"/>') == dates


@pytest.mark.parametrize("code, is_date", [
    ("yyyy-mm-dd", True), ("d-mmm-yy", True), ("h:mm AM/PM", True), ("[h]:mm:ss", True),
    ("[$-409]mmmm d, yyyy", True), ("0.00", False), ("[Red]0", False), ("General", False),
    ('"days "0', False), ("0.00;[Red]dd", False), (r"0\d", False), ("_(* #,##0_)", False),
])
def test_date_formats_are_told_from_number_formats(code, is_date):
    assert is_date_format(code) is is_date


def test_iso_date_cells_read_as_dates_times_and_durations():
    row = "".join(f'<c t="d"><v>{v}</v></c>' for v in
                  ("2024-03-01", "2024-03-01T10:30:00", "10:30:00", "PT1H30M"))
    assert values_of(row) == ("2024-03-01", "2024-03-01T10:30:00", "10:30:00", "1:30:00")


def test_a_gap_in_row_numbers_keeps_sheet_row_numbers_in_messages():
    sheet = cells(text("q"), row=1) + cells(text("a"), row=2) + cells(text("x" * 11), row=5)
    with pytest.raises(UnreadableFileError) as error:
        read_bytes(package({"Data": sheet}), "gap.xlsx", DatasetLimits(max_field_chars=10))
    assert str(error.value) == (
        "'gap.xlsx' has a cell longer than 10 characters (max_field_chars) in sheet row 5; "
        "shorten that cell or remove the row.")


def test_blank_rows_in_a_gap_are_not_examples():
    sheet = cells(text("q"), row=1) + cells(text("a"), row=2) + cells(text("b"), row=9)
    assert rows_of(package({"Data": sheet})) == [("q",), ("a",), ("b",)]


def test_cells_and_rows_without_references_follow_the_previous_ones():
    sheet = (f'<row r="1"><c r="B1" t="inlineStr"><is><t>b</t></is></c>{text("c")}</row>'
             + cells(number("1"), '<c r="C2"><v>3</v></c>', number("4")))
    assert rows_of(package({"Data": sheet})) == [("column 1", "b", "c", "column 4"),
                                                 ("1", "", "3", "4")]


def test_a_row_numbered_below_an_earlier_one_is_skipped():
    sheet = cells(text("q"), row=1) + cells(text("late"), row=3) + cells(text("early"), row=2)
    assert rows_of(package({"Data": sheet})) == [("q",), ("late",)]


def test_strict_ooxml_workbooks_are_read():
    data = package({"Data": cells(text("q")) + cells(number("7"))}, main=STRICT_MAIN,
                   rels=STRICT_RELS)
    assert rows_of(data) == [("q",), ("7",)]


def test_absolute_and_relative_sheet_targets_both_read():
    sheets = {"Data": cells(text("q")) + cells(text("a"))}
    assert rows_of(package(sheets, absolute=True)) == rows_of(package(sheets)) == [("q",), ("a",)]


def test_a_chartsheet_is_passed_over_by_default_and_refused_by_name():
    data = package({"Chart": None, "Data": cells(text("q")) + cells(text("a"))})
    assert rows_of(data) == [("q",), ("a",)]
    with pytest.raises(DatasetError) as error:
        read_bytes(data, "book.xlsx", sheet="Chart")
    assert str(error.value) == ("Sheet 'Chart' is a chart, not a table; choose one of: 'Chart', "
                                "'Data'.")


def test_a_shared_string_that_does_not_exist_makes_the_workbook_unreadable():
    data = package({"Data": cells('<c t="s"><v>3</v></c>')}, shared="<si><t>only</t></si>")
    with pytest.raises(UnreadableFileError) as error:
        read_bytes(data, "bad.xlsx")
    assert str(error.value) == (
        "'bad.xlsx' could not be read as an XLSX workbook (tuple index out of range); open it "
        "in your spreadsheet program and save it as .xlsx again.")


def test_an_invalid_cell_reference_makes_the_workbook_unreadable():
    data = package({"Data": cells('<c r="$A$1"><v>1</v></c>')})
    with pytest.raises(UnreadableFileError) as error:
        read_bytes(data, "bad.xlsx")
    assert str(error.value) == (
        "'bad.xlsx' could not be read as an XLSX workbook ('$A$1' is not a valid cell "
        "reference); open it in your spreadsheet program and save it as .xlsx again.")


def test_reading_a_workbook_does_not_import_openpyxl():
    data = package({"Data": cells(text("q")) + cells(number("45352", 1))})
    code = ("import sys; from training.data.formats import read_bytes; "
            "table = read_bytes(sys.stdin.buffer.read(), 'b.xlsx').table; "
            "print(table.rows, 'openpyxl' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                            check=True, cwd=Path(__file__).resolve().parent.parent)
    assert result.stdout.decode().strip() == "(('2024-03-01',),) False"
