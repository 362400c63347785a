"""Hostile and broken files are refused with a clear message, before they are expanded."""

import csv
import random
import zipfile

import openpyxl
import pytest

from tests.fixtures_formats import (
    BILLION_LAUGHS, SMALL_WORKBOOK, member_infos, sheet_xml, with_members,
)
from training.core.errors import UnreadableFileError
from training.core.limits import DatasetLimits
from training.data.formats import read_bytes, read_file
from training.data.spreadsheet import MAX_COLUMNS, size_text

SHEET = "xl/worksheets/sheet1.xml"


def refusal(data: bytes, filename: str, limits: DatasetLimits = DatasetLimits()) -> str:
    with pytest.raises(UnreadableFileError) as error:
        read_bytes(data, filename, limits)
    return str(error.value)


def test_a_zip_bomb_member_is_refused_by_its_compression_ratio():
    bomb = with_members(SMALL_WORKBOOK, {"xl/media/zeros.bin": bytes(3 << 20)})
    info = member_infos(bomb)["xl/media/zeros.bin"]
    ratio = info.file_size / info.compress_size
    assert refusal(bomb, "bomb.xlsx") == (
        f"'bomb.xlsx' expands to 3.0 MB from {size_text(info.compress_size)} in "
        f"'xl/media/zeros.bin', {ratio:,.0f} times smaller when packed; the studio allows at "
        "most 200 times (max_compression_ratio), so it is treated as a zip bomb. Save the data as CSV."
    )


def test_a_workbook_that_unpacks_past_the_limit_is_refused():
    padded = with_members(SMALL_WORKBOOK, {"xl/media/noise.bin": random.Random(0).randbytes(50_000)})
    total = sum(i.file_size for i in member_infos(padded).values())
    message = refusal(padded, "big.xlsx", DatasetLimits(max_unpacked_bytes=40_000))
    assert message == (
        f"'big.xlsx' expands to {size_text(total)} when unpacked; the studio unpacks at most "
        "39.1 KB (max_unpacked_bytes). Remove unused sheets and images, or save the data as CSV."
    )


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, BILLION_LAUGHS.decode().encode("utf-16")])
def test_xml_entity_expansion_is_refused_before_parsing(xml):
    hostile = with_members(SMALL_WORKBOOK, {SHEET: xml})
    assert refusal(hostile, "laughs.xlsx") == (
        "'laughs.xlsx' declares an XML document type or entity in 'xl/worksheets/sheet1.xml', "
        "which spreadsheets never need and which can be used for XML entity expansion attacks; "
        "open the file in your spreadsheet program and save it as .xlsx again."
    )


def test_openpyxl_parses_with_defusedxml():
    assert openpyxl.DEFUSEDXML is True  # requirements.txt: defusedxml


@pytest.mark.parametrize("data, message", [
    (b"question,answer\n", "'x.xlsx' is not an XLSX workbook (it is not a valid zip archive); "
     "open it in your spreadsheet program and save it as .xlsx again."),
    (SMALL_WORKBOOK[: len(SMALL_WORKBOOK) // 2], "'x.xlsx' is not an XLSX workbook (it is not a "
     "valid zip archive); open it in your spreadsheet program and save it as .xlsx again."),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "'x.xlsx' is an old Excel .xls workbook (or "
     "a password-protected one); open it in your spreadsheet program and save it as .xlsx "
     "without a password."),
    (with_members(SMALL_WORKBOOK, {SHEET: b"<worksheet"}), "'x.xlsx' could not be read as an XLSX "
     "workbook (unclosed token: line 1, column 0); open it in your spreadsheet program and save "
     "it as .xlsx again."),
])
def test_broken_workbooks_are_refused(data, message):
    assert refusal(data, "x.xlsx") == message


def test_a_hostile_sheet_size_is_not_trusted():
    huge = with_members(SMALL_WORKBOOK, {SHEET: sheet_xml(
        '<row r="1"><c r="A1" t="inlineStr"><is><t>q</t></is></c><c r="B1" t="inlineStr"><is><t>a'
        '</t></is></c></row><row r="2"><c r="A2"><v>1</v></c><c r="B2"><v>2</v></c></row>',
        dimension="A1:XFD1048576")})
    result = read_bytes(huge, "huge.xlsx")  # a trusted A1:XFD1048576 would pad 17 billion cells
    assert (result.table.header, result.table.rows) == (("q", "a"), (("1", "2"),))


def test_sheet_data_beyond_the_column_limit_is_refused():
    wide = with_members(SMALL_WORKBOOK, {SHEET: sheet_xml('<row r="1"><c r="XFD1"><v>1</v></c></row>')})
    assert refusal(wide, "wide.xlsx") == (
        f"'wide.xlsx' has data beyond column {MAX_COLUMNS:,} in sheet row 1; the studio reads at "
        f"most {MAX_COLUMNS:,} columns. Remove the unused columns."
    )


def test_a_gigantic_csv_field_is_refused_and_the_csv_limit_restored():
    before = csv.field_size_limit()
    limits = DatasetLimits(max_field_chars=1000)
    data = b"q,a\n1,2\n3," + b"x" * 1001 + b"\n"
    assert refusal(data, "big.csv", limits) == (
        "'big.csv' has a cell longer than 1,000 characters (max_field_chars) in row 3, counting "
        "the header as row 1; shorten that cell or remove the row."
    )
    assert csv.field_size_limit() == before
    assert read_bytes(b"q,a\n1," + b"x" * 1000, "ok.csv", limits).table.rows[0][1] == "x" * 1000


def test_a_gigantic_json_string_is_refused():
    data = b'{"text_input": "' + b"x" * 1001 + b'", "output": "y"}'
    assert refusal(data, "big.jsonl", DatasetLimits(max_field_chars=1000)) == (
        "'big.jsonl' has a text longer than 1,000 characters (max_field_chars) in line 1; "
        "shorten it or remove the line."
    )


NOT_TEXT = ("is not a text file: it holds binary data or text in an unknown encoding. Save it "
            "as CSV UTF-8, TSV, JSON, JSONL or XLSX and import that.")


@pytest.mark.parametrize("filename, data", [
    ("noise.csv", random.Random(1).randbytes(4096)),
    ("noise.jsonl", random.Random(2).randbytes(4096)),
    ("nul.csv", b"q,a\n1,\x002\n"),
    ("control.tsv", b"\x01\x02\x03\x04q\ta\n"),
])
def test_binary_garbage_is_not_a_text_file(filename, data):
    assert refusal(data, filename) == f"'{filename}' {NOT_TEXT}"


def test_an_oversize_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"q,a\n" + b"1,2\n" * 30)
    limits = DatasetLimits(max_file_bytes=100)
    with pytest.raises(UnreadableFileError) as error:
        read_file(path, limits)
    assert str(error.value) == ("'big.csv' is 124 bytes, over the limit of 100 bytes "
                                "(max_file_bytes); split it into smaller files and import them "
                                "one at a time.")
    assert refusal(path.read_bytes(), "big.csv", limits) == str(error.value)


def test_a_missing_file_says_it_cannot_be_opened(tmp_path):
    with pytest.raises(UnreadableFileError) as error:
        read_file(tmp_path / "gone.csv")
    assert str(error.value) == "'gone.csv' cannot be opened (No such file or directory); check the file and try again."


@pytest.mark.parametrize("filename, data, message", [
    ("rows.csv", b"q,a\n" + b"1,2\n" * 11, "'rows.csv' has more than 10 rows; a dataset holds at most "
     "2 examples (max_examples). Split the file and import the parts one at a time."),
    ("rows.jsonl", b'{"text_input": "a", "output": "b"}\n' * 11, "'rows.jsonl' has more than 10 "
     "lines; a dataset holds at most 2 examples (max_examples). Split the file."),
    ("items.json", b"[" + b'{"text_input": "a", "output": "b"},' * 10 + b"{}]", "'items.json' has "
     "more than 10 items; a dataset holds at most 2 examples (max_examples). Split the file."),
])
def test_files_far_over_the_row_limit_are_refused(filename, data, message):
    assert refusal(data, filename, DatasetLimits(max_examples=2)) == message


def test_too_many_columns_are_refused():
    assert refusal(b"," * MAX_COLUMNS + b"x\n", "wide.csv") == (
        f"'wide.csv' has {MAX_COLUMNS + 1:,} cells in the header row; the studio reads at most "
        f"{MAX_COLUMNS:,} columns. Remove the unused columns and import it again."
    )


def test_deeply_nested_json_is_refused():
    assert refusal(b"[" * 100_000, "deep.json") == (
        "'deep.json' is not valid JSON (nested too deeply); fix it, or save it as JSONL with one "
        "example per line."
    )


def test_a_zip_with_thousands_of_members_is_refused():
    members = {f"x/{i}.txt": b"" for i in range(10_001)}
    crowded = with_members(SMALL_WORKBOOK, members, compression=zipfile.ZIP_STORED)
    count = len(member_infos(crowded))
    assert refusal(crowded, "many.xlsx") == (
        f"'many.xlsx' holds {count:,} files; an XLSX workbook has far fewer, so this one is "
        "refused. Save the data as CSV instead."
    )
