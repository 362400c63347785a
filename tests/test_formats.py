"""Dataset import: every format, every reading problem with its exact message, the spreadsheet
readers, pasted rows, guess_mapping and map_columns."""

import codecs
import csv
import datetime as dt

import pytest

from tests.fixtures_formats import jsonl, xlsx
from training.core.dataset import CHAT_TEMPLATE, InputField, PromptTemplate
from training.core.errors import DatasetError, UnreadableFileError
from training.core.limits import DatasetLimits
from training.data.formats import (
    FORMAT_LABELS, guess_mapping, map_columns, read_bytes, read_file, read_pasted,
)
from training.data.spreadsheet import Table

PAIRS = PromptTemplate(inputs=(InputField("text_input", "input:"),))
VERTEX = PromptTemplate(inputs=(InputField("input_text", "input:"),))
ALPACA = PromptTemplate(
    inputs=(InputField("instruction", "Instruction:"), InputField("input", "Input:")),
    output_label="Response:",
)
QA = PromptTemplate(inputs=(InputField("question", "question:"), InputField("context", "context:")))


def examples(result):
    return [(dict(e.fields), e.output, e.source) for e in result.dataset.examples]


def problems(result):
    return [(p.severity, p.code, p.message) for p in result.problems]


def chat(system="", history="", user=""):
    return {"system": system, "history": history, "user": user}


GEMINI = {"text_input": "2+2", "output": "4"}
CHAT_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
]


@pytest.mark.parametrize("filename, data, fmt, label, template, expected", [
    ("d.jsonl", jsonl(GEMINI), "gemini_pairs", "Gemini pairs JSONL", PAIRS,
     [({"text_input": "2+2"}, "4", "line 1")]),
    ("d.json", jsonl([GEMINI]), "gemini_pairs", "Gemini pairs JSON", PAIRS,
     [({"text_input": "2+2"}, "4", "item 1")]),
    ("d.json", jsonl({"examples": [GEMINI]}), "gemini_pairs", "Gemini pairs JSON", PAIRS,
     [({"text_input": "2+2"}, "4", "item 1")]),
    ("d.json", jsonl({"examples": {"examples": [{"textInput": "2+2", "output": "4"}]}}),
     "gemini_pairs", "Gemini pairs JSON", PAIRS, [({"text_input": "2+2"}, "4", "item 1")]),
    ("d.json", jsonl({"tuningTask": {"trainingData": {"examples": {"examples": [
        {"textInput": "a", "output": "b"}]}}}}), "gemini_pairs", "Gemini pairs JSON", PAIRS,
     [({"text_input": "a"}, "b", "item 1")]),
    ("d.jsonl", jsonl({"textInput": "2+2", "output": "4"}), "gemini_pairs", "Gemini pairs JSONL",
     PAIRS, [({"text_input": "2+2"}, "4", "line 1")]),
    ("d.jsonl", jsonl({"input_text": "hi", "output_text": "hello"}), "vertex_text",
     "Vertex text JSONL", VERTEX, [({"input_text": "hi"}, "hello", "line 1")]),
    ("d.json", jsonl([{"instruction": "Add", "input": "2 2", "output": "4"},
                      {"instruction": "Say hi", "output": "hi"}]),
     "alpaca", "Alpaca JSON", ALPACA,
     [({"instruction": "Add", "input": "2 2"}, "4", "item 1"),
      ({"instruction": "Say hi", "input": ""}, "hi", "item 2")]),
    ("d.jsonl", jsonl({"context": "Be brief.", "messages": [
        {"author": "user", "content": "Hi"}, {"author": "assistant", "content": "Hello"},
        {"author": "user", "content": "2+2?"}, {"author": "assistant", "content": "4"}]}),
     "vertex_chat", "Vertex chat JSONL", CHAT_TEMPLATE,
     [(chat("Be brief.", "user: Hi\nassistant: Hello", "2+2?"), "4", "line 1")]),
    ("d.jsonl", jsonl({"messages": [{"author": "user", "content": "Hi"},
                                    {"author": "model", "content": "Hello"}]}),
     "vertex_chat", "Vertex chat JSONL", CHAT_TEMPLATE, [(chat(user="Hi"), "Hello", "line 1")]),
    ("d.jsonl", jsonl({"messages": CHAT_TURNS}), "openai_chat", "OpenAI chat JSONL", CHAT_TEMPLATE,
     [(chat("Be brief.", "user: Hi\nassistant: Hello", "2+2?"), "4", "line 1")]),
    ("d.jsonl", jsonl({"messages": CHAT_TURNS[1:3] + CHAT_TURNS[4:]}), "openai_chat",
     "OpenAI chat JSONL", CHAT_TEMPLATE,
     [(chat(history="user: Hi\nassistant: Hello"), "4", "line 1")]),
    ("d.jsonl", jsonl({"question": "q", "context": "c", "output": "o"}, {"question": "q2", "output": 7}),
     "structured_jsonl", "Structured JSONL", QA,
     [({"question": "q", "context": "c"}, "o", "line 1"), ({"question": "q2", "context": ""}, "7", "line 2")]),
    ("d.txt", jsonl(GEMINI), "gemini_pairs", "Gemini pairs JSONL", PAIRS,
     [({"text_input": "2+2"}, "4", "line 1")]),
    ("d.json", jsonl(GEMINI, GEMINI), "gemini_pairs", "Gemini pairs JSONL", PAIRS,
     [({"text_input": "2+2"}, "4", "line 1"), ({"text_input": "2+2"}, "4", "line 2")]),
    ("d.jsonl", b'[{"text_input": "a",\n "output": "b"}]', "gemini_pairs", "Gemini pairs JSON",
     PAIRS, [({"text_input": "a"}, "b", "item 1")]),
])
def test_json_formats_map_to_a_dataset(filename, data, fmt, label, template, expected):
    result = read_bytes(data, filename)
    assert (result.format, result.label, result.table) == (fmt, label, None)
    assert result.dataset.template == template
    assert examples(result) == expected


def test_summary_names_the_format_and_the_count():
    assert read_bytes(jsonl(GEMINI, GEMINI), "d.jsonl").summary == "Gemini pairs JSONL, 2 examples"
    assert read_bytes(jsonl([GEMINI]), "d.json").summary == "Gemini pairs JSON, 1 example"


def test_format_labels_cover_every_format_id():
    assert set(FORMAT_LABELS) == {"gemini_pairs", "vertex_text", "vertex_chat", "openai_chat",
                                  "alpaca", "structured_jsonl", "csv", "tsv", "xlsx", "pasted"}


def test_numbers_become_text_in_json_fields():
    result = read_bytes(jsonl({"text_input": 3.0, "output": 0.5}, {"text_input": True, "output": None}), "n.jsonl")
    assert examples(result) == [({"text_input": "3"}, "0.5", "line 1"), ({"text_input": "true"}, "", "line 2")]


def test_the_majority_format_wins_and_the_rest_are_row_problems():
    result = read_bytes(jsonl(GEMINI, GEMINI, {"input_text": "a", "output_text": "b"}), "m.jsonl")
    assert result.format == "gemini_pairs" and len(result.dataset.examples) == 2
    assert problems(result) == [
        ("error", "missing_key", "Line 3: missing key 'text_input'; add it or remove the line."),
        ("error", "missing_key", "Line 3: missing key 'output'; add it or remove the line."),
        ("warning", "unknown_key", "Line 3: key 'input_text' is not part of Gemini pairs JSONL "
         "and is ignored (found on 1 line)."),
        ("warning", "unknown_key", "Line 3: key 'output_text' is not part of Gemini pairs JSONL "
         "and is ignored (found on 1 line)."),
    ]


M = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


@pytest.mark.parametrize("line, expected", [
    ({"text_input": "a"}, ("error", "missing_key",
     "Line 3: missing key 'output'; add it or remove the line.")),
    ({"text_input": "a", "output": "b", "id": 7}, ("warning", "unknown_key",
     "Line 3: key 'id' is not part of Gemini pairs JSONL and is ignored (found on 1 line).")),
    ('{"text_input": "a" "output": "b"}', ("error", "invalid_json",
     "Line 3: invalid JSON (Expecting ',' delimiter at column 20); fix or remove that line.")),
    ("[" * 100_000, ("error", "invalid_json",
     "Line 3: invalid JSON (nested too deeply); fix or remove that line.")),
    ('{"text_input": ' + "1" * 5000 + ', "output": "b"}', ("error", "invalid_json",
     "Line 3: invalid JSON (a number has too many digits); fix or remove that line.")),
    ([1, 2], ("error", "not_object",
     "Line 3: expected a JSON object {...} but found a list; fix or remove that line.")),
    ('"text"', ("error", "not_object",
     "Line 3: expected a JSON object {...} but found a string; fix or remove that line.")),
    ({"text_input": ["a"], "output": "b"}, ("error", "not_text",
     "Line 3: 'text_input' is a list, not text; put the text itself there.")),
    ({"text_input": "a", "output": {"x": 1}}, ("error", "not_text",
     "Line 3: 'output' is an object, not text; put the text itself there.")),
])
def test_jsonl_row_problems(line, expected):
    result = read_bytes(jsonl(GEMINI, GEMINI, line), "p.jsonl")
    assert problems(result) == [expected]
    assert result.problems[0].row == 3


@pytest.mark.parametrize("line, expected", [
    ({"messages": M[:1]}, ("error", "no_answer", "Line 2: the conversation does not end with an "
     "assistant message; add the answer the model should learn, or remove the line.")),
    ({"messages": [{"role": "bot", "content": "x"}] + M}, ("error", "unknown_role",
     "Line 2: message 1 has role 'bot'; use 'system', 'user' or 'assistant'.")),
    ({"messages": [{"content": "x"}] + M}, ("error", "unknown_role",
     "Line 2: message 1 has no 'role'; use 'system', 'user' or 'assistant'.")),
    ({"messages": M[:1] + [{"role": "assistant", "content": ["x"]}]}, ("error", "not_text",
     "Line 2: the content of message 2 is a list, not text; put the text itself there.")),
    ({"messages": M[:1] + [{"role": "assistant"}]}, ("error", "missing_key",
     "Line 2: message 2 has no 'content'; add the message text.")),
    ({"messages": M + [{"role": "system", "content": "x"}]}, ("error", "late_system",
     "Line 2: message 3 is a system message after the conversation started; move it to the start.")),
    ({"messages": ["hi"] + M}, ("error", "bad_messages",
     'Line 2: message 1 is a string, not an object like {"role": ..., "content": ...}; fix it.')),
    ({"messages": "hi"}, ("error", "bad_messages",
     "Line 2: 'messages' is a string, not a list of messages; fix or remove the line.")),
])
def test_chat_row_problems(line, expected):
    result = read_bytes(jsonl({"messages": M}, line), "c.jsonl")
    assert problems(result) == [expected] and len(result.dataset.examples) == 1


def test_vertex_chat_names_authors_in_its_message():
    line = {"messages": [{"author": "bot", "content": "x"}, {"author": "assistant", "content": "y"}]}
    result = read_bytes(jsonl(line), "v.jsonl")
    assert problems(result) == [("error", "unknown_role",
                                 "Line 1: message 1 has author 'bot'; use 'user' or 'assistant'.")]


def test_vertex_text_reports_ignored_keys_once_as_info():
    line = {"context": "c", "input_text": "a", "output_text": "b"}
    result = read_bytes(jsonl(line, line), "v.jsonl")
    assert problems(result) == [("info", "unknown_key", "Line 1: key 'context' is not part of "
                                 "Vertex text JSONL and is ignored (found on 2 lines).")]


def test_structured_objects_missing_a_field_leave_it_empty_with_a_warning():
    result = read_bytes(jsonl({"q": "a", "c": "b", "output": "o"}, {"q": "a", "output": "o"}), "s.jsonl")
    assert problems(result) == [("warning", "missing_key", "Line 2: missing key 'c'; that field is left empty.")]


def test_json_document_problems_name_items():
    result = read_bytes(jsonl([GEMINI, {"text_input": "a"}, 5]), "d.json")
    assert problems(result) == [
        ("error", "missing_key", "Item 2: missing key 'output'; add it or remove the item."),
        ("error", "not_object", "Item 3: expected a JSON object {...} but found a number; fix or remove that item."),
    ]


def test_blank_lines_are_skipped_and_line_numbers_kept():
    result = read_bytes(b"\n" + jsonl(GEMINI) + b"\n\n  \n" + jsonl(GEMINI), "b.jsonl")
    assert [e.source for e in result.dataset.examples] == ["line 2", "line 5"]


def test_lines_that_are_not_utf8_are_reported_and_still_load():
    data = jsonl(GEMINI) + b'\n{"text_input": "caf\xe9", "output": "x"}'
    result = read_bytes(data, "latin.jsonl")
    assert problems(result) == [("error", "not_utf8",
                                 "Line 2: contains bytes that are not UTF-8; re-save the file as UTF-8.")]
    assert result.dataset.examples[1].fields["text_input"] == "caf\ufffd"


@pytest.mark.parametrize("data", [codecs.BOM_UTF8 + jsonl(GEMINI), jsonl(GEMINI).decode().encode("utf-16")])
def test_utf8_bom_and_utf16_files_are_read(data):
    assert examples(read_bytes(data, "bom.jsonl")) == [({"text_input": "2+2"}, "4", "line 1")]


def test_more_examples_than_the_limit_load_with_an_error():
    result = read_bytes(jsonl(GEMINI, GEMINI, GEMINI), "big.jsonl", DatasetLimits(max_examples=2))
    assert len(result.dataset.examples) == 3
    assert problems(result) == [("error", "too_many_rows", "The file has 3 examples; a dataset holds "
                                 "at most 2 (max_examples). Remove examples or split the file.")]


SHAPES = ('Accepted shapes: {"text_input", "output"} (Gemini pairs), {"input_text", "output_text"} '
          '(Vertex text), {"context"?, "messages": [{"author", "content"}]} (Vertex chat), '
          '{"messages": [{"role", "content"}]} (OpenAI chat), {"instruction", "input"?, "output"} '
          '(Alpaca), or text keys of your own plus "output" (structured). Rename the keys to one of these.')


@pytest.mark.parametrize("filename, data, message", [
    ("p.jsonl", jsonl({"prompt": "a", "completion": "b"}, {"prompt": "c"}),
     "'p.jsonl' matches no dataset format: its objects have the keys 'prompt', 'completion'. " + SHAPES),
    ("e.jsonl", b"\n \n", "'e.jsonl' is empty; add examples and import it again."),
    ("x.jsonl", b"{bad\n[1]", "'x.jsonl' contains no JSON object to import. Line 1: invalid JSON "
     "(Expecting property name enclosed in double quotes at column 2); fix or remove that line."),
    ("x.json", b"[]", "'x.json' contains no JSON object to import. Add examples and import it again."),
    ("x.json", b"[1, 2", "'x.json' is not valid JSON (Expecting ',' delimiter at line 1, column 6); "
     "fix it, or save it as JSONL with one example per line."),
    ("x.json", b'"hello"', "'x.json' holds a string where a list of examples was expected; a JSON "
     'dataset is a list of example objects, {"examples": [...]} or {"examples": {"examples": [...]}}.'),
    ("x.pdf", b"%PDF", "'x.pdf' is not a file type the studio imports; use CSV, TSV, XLSX, JSON, "
     "JSONL or TXT."),
    ("old.xls", b"\xd0\xcf\x11\xe0", "'old.xls' is an old Excel .xls workbook; open it in your "
     "spreadsheet program and save it as .xlsx."),
])
def test_unreadable_files_say_why(filename, data, message):
    with pytest.raises(UnreadableFileError) as error:
        read_bytes(data, filename)
    assert str(error.value) == message


# ---- CSV, TSV, XLSX and pasted rows -------------------------------------------------------


def table_of(result):
    return result.table.header, [list(r) for r in result.table.rows]


@pytest.mark.parametrize("filename, text, fmt, header, rows", [
    ("d.csv", "question,answer\n2+2,4\n", "csv", ("question", "answer"), [["2+2", "4"]]),
    ("fr.csv", "question;réponse\nDeux, plus deux;4,0\n", "csv", ("question", "réponse"),
     [["Deux, plus deux", "4,0"]]),
    ("p.csv", "a|b\n1|2\n", "csv", ("a", "b"), [["1", "2"]]),
    ("d.tsv", "q\ta\nx, y\t1\n", "tsv", ("q", "a"), [["x, y", "1"]]),
    ("d.txt", "q\ta\nx\t1\n", "tsv", ("q", "a"), [["x", "1"]]),
    ("m.csv", 'q,a\n"line 1\nline 2","say ""hi"""\n', "csv", ("q", "a"),
     [["line 1\nline 2", 'say "hi"']]),
    ("h.csv", "a,,a, a \n1,2,3,4\n", "csv", ("a", "column 2", "a (2)", "a (3)"), [["1", "2", "3", "4"]]),
    ("e.csv", "q,a\n\n,\n1,2\n\r\n3,\n", "csv", ("q", "a"), [["1", "2"], ["3", ""]]),
    ("t.csv", "q,a,,\n1,2,,\n", "csv", ("q", "a"), [["1", "2"]]),
    ("crlf.csv", "q,a\r\n1,2\r\n", "csv", ("q", "a"), [["1", "2"]]),
    ("h.csv", "q,a\n", "csv", ("q", "a"), []),
])
def test_delimited_text_becomes_a_table(filename, text, fmt, header, rows):
    result = read_bytes(text.encode(), filename)
    assert (result.format, result.dataset, result.problems) == (fmt, None, ())
    assert table_of(result) == (header, rows)


def test_csv_with_a_bom_or_in_utf16_keeps_the_first_header_clean():
    for data in (codecs.BOM_UTF8 + b"q,a\n1,2\n", "q\ta\n1\t2\n".encode("utf-16")):
        assert read_bytes(data, "x.csv").table.header == ("q", "a")


def test_rows_wider_than_the_header_get_new_columns_and_a_warning():
    result = read_bytes(b"q,a\n1,2\n3,4,5\n", "w.csv")
    assert table_of(result) == (("q", "a", "column 3"), [["1", "2", ""], ["3", "4", "5"]])
    assert problems(result) == [("warning", "extra_cells", "Row 2: has more cells than the header row, "
                                 "so the table gets extra columns from 'column 3' on; name them in the "
                                 "header or remove the cells.")]


def test_an_unclosed_quote_is_reported_on_the_row_that_swallowed_the_rest():
    result = read_bytes(b'q,a\n1,"2\n3,4\n', "u.csv")
    assert table_of(result) == (("q", "a"), [["1", "2\n3,4\n"]])
    assert problems(result) == [("warning", "unmatched_quote", 'Row 1: a cell opens a double quote (") '
                                 "that is never closed, so the rest of the file was read into that "
                                 "cell; close the quote or remove it.")]


def test_csv_lines_that_are_not_utf8_are_reported():
    result = read_bytes(b"q,a\ncaf\xe9,1\n", "l.csv")
    assert problems(result) == [("error", "not_utf8",
                                 "Line 2: contains bytes that are not UTF-8; re-save the file as UTF-8.")]
    assert result.table.rows == (("caf\ufffd", "1"),)


def test_csv_rows_over_the_limit_load_with_an_error():
    result = read_bytes(b"q,a\n1,2\n3,4\n5,6\n", "r.csv", DatasetLimits(max_examples=2))
    assert len(result.table.rows) == 3
    assert problems(result) == [("error", "too_many_rows", "The file has 3 rows; a dataset holds at "
                                 "most 2 examples (max_examples). Remove rows or split the file.")]


def test_csv_summary_and_csv_field_limit_is_restored(tmp_path):
    before = csv.field_size_limit()
    path = tmp_path / "d.csv"
    path.write_bytes(b"q,a\n1,2\n")
    assert read_file(path).summary == "CSV, 2 columns, 1 row"
    assert csv.field_size_limit() == before


WORKBOOK = xlsx({
    "Notes": [["read me"]],
    "Data": [["question", "n", "when", "note"],
             ["2+2", 4, dt.date(2024, 3, 1), None],
             ["half", 0.5, dt.datetime(2024, 3, 1, 10, 30), True],
             [None, None, None, None],
             ["three", 3.0, dt.time(9, 5), "=1+1"]],
})


def test_xlsx_reads_the_first_sheet_with_data_by_default():
    result = read_bytes(WORKBOOK, "w.xlsx")
    assert (result.format, result.table.sheet, result.table.sheet_names) == ("xlsx", "Data", ("Notes", "Data"))


def test_xlsx_reads_a_named_sheet_even_without_rows():
    result = read_bytes(WORKBOOK, "w.xlsx", sheet="Notes")
    assert result.summary == "XLSX (sheet 'Notes'), 1 column, 0 rows"


def test_xlsx_cells_read_as_a_person_sees_them():
    result = read_bytes(WORKBOOK, "w.xlsx", sheet="Data")
    assert table_of(result) == (("question", "n", "when", "note"), [
        ["2+2", "4", "2024-03-01", ""],
        ["half", "0.5", "2024-03-01T10:30:00", "TRUE"],
        ["three", "3", "09:05:00", ""],  # a formula without a cached value is empty
    ])
    assert result.summary == "XLSX (sheet 'Data'), 4 columns, 3 rows"


def test_an_unknown_sheet_lists_the_sheets():
    with pytest.raises(DatasetError) as error:
        read_bytes(WORKBOOK, "w.xlsx", sheet="Summary")
    assert str(error.value) == "The workbook has no sheet named 'Summary'; choose one of: 'Notes', 'Data'."


@pytest.mark.parametrize("text, header, rows", [
    ("question\tanswer\n2+2\t4\n", ("question", "answer"), [["2+2", "4"]]),
    ('q\ta\n"two\nlines"\t1\r\n', ("q", "a"), [["two\nlines", "1"]]),
    ("q,a\n1,2", ("q", "a"), [["1", "2"]]),
    ("q;a\n1,5;2", ("q", "a"), [["1,5", "2"]]),
])
def test_pasted_rows_become_a_table(text, header, rows):
    result = read_pasted(text)
    assert (result.format, result.label) == ("pasted", "Pasted rows")
    assert table_of(result) == (header, rows)


def test_pasting_nothing_says_what_to_do():
    with pytest.raises(DatasetError) as error:
        read_pasted(" \n\t\n")
    assert str(error.value) == ("Nothing was pasted; copy the rows from your spreadsheet, header "
                                "row first, and paste them here.")


# ---- column mapping -----------------------------------------------------------------------


@pytest.mark.parametrize("header, expected", [
    (["question", "answer"], (["question"], "answer")),
    (["Input", "Output:"], (["Input"], "Output:")),
    (["label", "text"], (["text"], "label")),
    (["Response", "Answer"], (["Response"], "Answer")),
    (["expected output", "prompt"], (["prompt"], "expected output")),
    (["Question", "Réponse", "Source"], (["Question", "Source"], "Réponse")),
    (["a", "b", "c"], (["a", "b"], "c")),
    (["only"], ([], "only")),
    ([], ([], None)),
])
def test_guess_mapping(header, expected):
    assert guess_mapping(header) == expected


TABLE = Table(("Question?", "context", "output", "answer"),
              (("2+2", "maths", "x", "4"), ("", "", "y", ""), ("3+3", "", "", "6")))


def test_map_columns_builds_a_structured_dataset():
    dataset = map_columns(TABLE, ["Question?", "context", "output"], "answer",
                          labels={"context": "Context:"}, preamble="Answer briefly.")
    assert dataset.template == PromptTemplate("structured", "Answer briefly.", (
        InputField("Question", "Question?:"), InputField("context", "Context:"),
        InputField("output 2", "output:")), "output:")
    assert [(dict(e.fields), e.output, e.source) for e in dataset.examples] == [
        ({"Question": "2+2", "context": "maths", "output 2": "x"}, "4", "row 1"),
        ({"Question": "", "context": "", "output 2": "y"}, "", "row 2"),
        ({"Question": "3+3", "context": "", "output 2": ""}, "6", "row 3"),
    ]


def test_map_columns_skips_rows_empty_in_every_chosen_column():
    dataset = map_columns(TABLE, ["context"], "answer")
    assert [e.source for e in dataset.examples] == ["row 1", "row 3"]


@pytest.mark.parametrize("column, key", [
    ("Frage (DE)", "Frage _DE"), ("réponse", "reponse"), ("问题", "field 1"), ("1st", "field 1st"),
    ("_id", "_id"), ("x" * 70, "x" * 58),
])
def test_column_names_become_valid_field_keys(column, key):
    dataset = map_columns(Table((column, "out"), (("a", "b"),)), [column], "out")
    assert dataset.template.inputs == (InputField(key, f"{column}:"),)


@pytest.mark.parametrize("inputs, output, message", [
    (["nope"], "answer", "Column 'nope' is not in the table; choose from 'Question?', 'context', "
     "'output', 'answer'."),
    (["context"], "nope", "Column 'nope' is not in the table; choose from 'Question?', 'context', "
     "'output', 'answer'."),
    (["context", "answer"], "answer", "Column 'answer' is chosen as both an input and the output; "
     "choose it for one only."),
    ([], "answer", "Choose at least one input column."),
    (["context"], "", "Choose the output column."),
    (["context", "context"], "answer", "Column 'context' is chosen twice as an input; choose it once."),
])
def test_map_columns_errors_name_the_column(inputs, output, message):
    with pytest.raises(DatasetError) as error:
        map_columns(TABLE, inputs, output)
    assert str(error.value) == message
