"""Exports: grid shape, formula neutralising, JSONL shapes, safe file writing, round trips."""

import csv
import io
import json

import openpyxl
import pytest

from training.core.dataset import CHAT_TEMPLATE, Dataset, InputField, PromptTemplate
from training.core.errors import DatasetError
from training.data.export import (
    export_csv, export_file, export_jsonl, export_xlsx, neutralise, safe_name,
)
from training.data.formats import guess_mapping, map_columns, read_file

PAIRS = PromptTemplate(preamble="Answer briefly.", inputs=(InputField("text_input", "input:"),))
QA = PromptTemplate(inputs=(InputField("question", "Q:"), InputField("context", "C:")))


def sheet_values(data: bytes, title: str = "examples") -> list[list]:
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    return [[c.value for c in row] for row in workbook[title].iter_rows()]


@pytest.mark.parametrize("cell, expected", [
    ("=1+1", "'=1+1"), ("+33 6 12", "'+33 6 12"), ("-5", "'-5"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=cmd", "'\t=cmd"), ("\r=cmd", "'\r=cmd"), ("a=b", "a=b"), ("", ""), (" =x", " =x"),
])
def test_cells_that_could_run_as_formulas_are_quoted(cell, expected):
    assert neutralise(cell) == expected


def test_csv_has_the_header_and_one_row_per_example():
    dataset = Dataset.from_rows(QA, [["Why?", "Sky", "=BAD()"], ["é", "", "ok, fine"]])
    data = export_csv(dataset)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows == [["question", "context", "output"], ["Why?", "Sky", "'=BAD()"],
                    ["é", "", "ok, fine"]]


def test_xlsx_cells_are_all_text_and_neutralised():
    dataset = Dataset.from_rows(PAIRS, [["=1+1", "#N/A"], ["007", "-5"]])
    workbook = openpyxl.load_workbook(io.BytesIO(export_xlsx(dataset)))
    cells = [c for row in workbook["examples"].iter_rows() for c in row]
    assert {c.data_type for c in cells} == {"s"}
    assert [c.value for c in cells] == ["text_input", "output", "'=1+1", "#N/A", "007", "'-5"]


def test_xlsx_keeps_the_template_in_a_second_sheet():
    dataset = Dataset.from_rows(PAIRS, [["a", "b"]])
    assert sheet_values(export_xlsx(dataset), "template") == [
        ["key", "value"], ["kind", "structured"], ["preamble", "Answer briefly."],
        ["output_label", "output:"], ["label:text_input", "input:"]]


def test_xlsx_drops_control_characters_it_cannot_hold():
    dataset = Dataset.from_rows(PAIRS, [["a\x00b\x1fc", "line 1\nline 2\tx"]])
    assert sheet_values(export_xlsx(dataset))[1] == ["abc", "line 1\nline 2\tx"]


def test_xlsx_refuses_a_cell_longer_than_excel_holds():
    dataset = Dataset.from_rows(QA, [["a", "b", "c"], ["q", "x" * 32_768, "c"]])
    with pytest.raises(DatasetError) as error:
        export_xlsx(dataset)
    assert str(error.value) == ("Row 2: context is 32,768 characters; an Excel cell holds at most "
                                "32,767. Shorten it, or export as CSV or JSONL instead.")


@pytest.mark.parametrize("template, row, expected", [
    (PAIRS, ["Hi", "Hello"], {"text_input": "Hi", "output": "Hello"}),
    (QA, ["Why?", "Sky", "Blue"], {"question": "Why?", "context": "Sky", "output": "Blue"}),
    (CHAT_TEMPLATE, ["Be brief.", "user: hi\nassistant: hello", "Sky?", "Blue"], {"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "Sky?"},
        {"role": "assistant", "content": "Blue"}]}),
])
def test_jsonl_shapes(template, row, expected):
    data = export_jsonl(Dataset.from_rows(template, [row]))
    assert data.endswith(b"\n") and [json.loads(line) for line in data.splitlines()] == [expected]


def test_jsonl_is_not_neutralised():
    data = export_jsonl(Dataset.from_rows(PAIRS, [["=1+1", "-5 é"]]))
    assert data.decode("utf-8") == '{"text_input": "=1+1", "output": "-5 é"}\n'


def test_export_file_writes_a_safe_name_and_no_temporary(tmp_path):
    dataset = Dataset.from_rows(PAIRS, [["a", "b"]])
    (tmp_path / "my_set_ v2.jsonl").write_text("old")
    path = export_file(dataset, "jsonl", tmp_path, "../my/set: v2.jsonl")
    assert path == tmp_path / "my_set_ v2.jsonl"
    assert path.read_bytes() == export_jsonl(dataset)
    assert [p.name for p in tmp_path.iterdir()] == ["my_set_ v2.jsonl"]


@pytest.mark.parametrize("name, expected", [
    ("Support tickets", "Support tickets"), ("a/b\\c", "a_b_c"), ("...", "dataset"),
    ("", "dataset"), ("CON", "_CON"), ("x" * 150, "x" * 100), ("résumé ✓ 2", "résumé _ 2"),
])
def test_safe_names(name, expected):
    assert safe_name(name) == expected


def test_export_file_refuses_an_unknown_format(tmp_path):
    with pytest.raises(DatasetError) as error:
        export_file(Dataset(PAIRS), "pdf", tmp_path, "x")
    assert str(error.value) == "Export format 'pdf' is unknown: use csv, xlsx or jsonl."


TRICKY = ["Ünïcode ✓", "comma, \"quote\"", "line 1\nline 2", "007", "3.0", "#N/A", "TRUE", " pad "]


def read_back(path) -> list[tuple[dict, str]]:
    result = read_file(path)
    dataset = result.dataset
    if dataset is None:
        dataset = map_columns(result.table, *guess_mapping(result.table.header))
    assert [p for p in result.problems if p.severity != "info"] == []
    return [(dict(e.fields), e.output) for e in dataset.examples]


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "jsonl"])
def test_structured_round_trip(tmp_path, fmt):
    rows = [[a, b, c] for a, b, c in zip(TRICKY, reversed(TRICKY), TRICKY[1:] + TRICKY[:1])]
    dataset = Dataset.from_rows(QA, rows)
    expected = [(dict(e.fields), e.output) for e in dataset.examples]
    assert read_back(export_file(dataset, fmt, tmp_path, "qa")) == expected


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_spreadsheet_round_trip_keeps_the_quote_of_neutralised_cells(tmp_path, fmt):
    dataset = Dataset.from_rows(PAIRS, [["=1+1", "-5"], ["@me", "ok"]])
    assert read_back(export_file(dataset, fmt, tmp_path, "pairs")) == [
        ({"text_input": "'=1+1"}, "'-5"), ({"text_input": "'@me"}, "ok")]


@pytest.mark.parametrize("template, rows", [
    (PAIRS, [["=1+1", "-5"], ["Hi", "Hello"]]),
    (PromptTemplate(inputs=(InputField("input_text", "input:"),)), [["Hi", "Hello"]]),
    (PromptTemplate(inputs=(InputField("instruction", "I:"), InputField("input", "In:"))),
     [["Translate", "chat"], ["Sum up", ""]]),
    (CHAT_TEMPLATE, [["Be brief.", "user: hi\nassistant: hello", "Sky?", "Blue"],
                     ["", "", "Only a question", "=answer"]]),
])
def test_jsonl_round_trip_keeps_every_shape(tmp_path, template, rows):
    dataset = Dataset.from_rows(template, rows)
    expected = [(dict(e.fields), e.output) for e in dataset.examples]
    assert read_back(export_file(dataset, "jsonl", tmp_path, "data")) == expected
