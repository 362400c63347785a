"""validate(): every problem code with its exact message, ordering, bounding and token counts."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from training.core.dataset import CHAT_TEMPLATE, Dataset, Example, InputField, PromptTemplate
from training.core.errors import UnreadableFileError
from training.core.limits import DatasetLimits
from training.core.template import render_example, token_counts
from training.data.report import Problem
from training.data.validation import MAX_LISTED_PER_CODE, validate, validate_file

ONE = PromptTemplate(inputs=(InputField("text_input", "input:"),))
TWO = PromptTemplate(inputs=(InputField("question", "question:"), InputField("context", "context:")))
ROWS_ONLY = DatasetLimits(min_examples=1, recommended_examples=1)
"""Limits under which a small dataset has no dataset-level problems."""


@pytest.fixture(scope="module")
def word_tokenizer():
    """One token per word or punctuation run, plus '</s>' as a single EOS token."""
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "</s>": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="[UNK]")


def problems(template, rows, limits=ROWS_ONLY, **kwargs):
    report = validate(Dataset.from_rows(template, rows), limits, **kwargs)
    return [(p.severity, p.code, p.message, p.row, p.field) for p in report.problems]


@pytest.mark.parametrize("template, rows, limits, expected", [
    (ONE, [["", "yes"]], ROWS_ONLY, ("error", "empty_input",
     "Row 1: text_input is empty; fill it in or remove the row.", 1, "text_input")),
    (TWO, [[" ", "", "yes"]], ROWS_ONLY, ("error", "empty_input",
     "Row 1: all input fields (question, context) are empty; fill in at least one or remove the "
     "row.", 1, "question")),
    (CHAT_TEMPLATE, [["Be brief.", "assistant: hi", "", "ok"]], ROWS_ONLY, ("error", "empty_input",
     "Row 1: there is no user message; write one in user or remove the row.", 1, "user")),
    (ONE, [["hi", "  "]], ROWS_ONLY, ("error", "empty_output",
     "Row 1: output is empty; write the answer the model should give or remove the row.", 1,
     "output")),
    (ONE, [["abcdef", "x"]], DatasetLimits(1, 1, max_input_chars=5), ("error", "input_too_long",
     "Row 1: text_input is 6 characters; the limit is 5. Shorten it.", 1, "text_input")),
    (TWO, [["abc", "defg", "x"]], DatasetLimits(1, 1, max_input_chars=5), ("error",
     "input_too_long", "Row 1: the input fields together are 7 characters; the limit is 5. "
     "Shorten them.", 1, "context")),
    (CHAT_TEMPLATE, [["sys", "", "hello", "x"]], DatasetLimits(1, 1, max_input_chars=7), ("error",
     "input_too_long", "Row 1: system, history and user together are 8 characters; the limit "
     "is 7. Shorten them.", 1, "user")),
    (ONE, [["a", "abcd"]], DatasetLimits(1, 1, max_output_chars=3), ("error", "output_too_long",
     "Row 1: output is 4 characters; the limit is 3. Shorten it.", 1, "output")),
])
def test_each_row_problem_has_its_exact_message(template, rows, limits, expected):
    assert problems(template, rows, limits) == [expected]


def test_duplicate_row_names_both_rows():
    rows = [["a", "b"], ["c", "d"], ["a ", "b"]]
    assert problems(ONE, rows) == [
        ("warning", "duplicate", "Row 3 repeats row 1; remove one of them.", 3, None)]


def test_same_input_with_another_output_is_a_conflict():
    assert problems(ONE, [["a", "b"], ["a", "c"]]) == [
        ("warning", "conflicting_outputs", "Row 2 has the same input as row 1 but a different "
         "output; keep the one the model should learn.", 2, "output")]


def test_jsonl_sources_say_line():
    dataset = Dataset(ONE, (Example({"text_input": "hi"}, "", source="line 7"),))
    report = validate(dataset, ROWS_ONLY)
    assert report.problems == (Problem("error", "empty_output", "Line 7: output is empty; write "
                                       "the answer the model should give or remove the line.",
                                       7, "output"),)


@pytest.mark.parametrize("count, limits, expected", [
    (12, DatasetLimits(), ("error", "too_few_examples",
     "The dataset has 12 examples; tuning needs at least 20. Add 8 more.")),
    (1, DatasetLimits(), ("error", "too_few_examples",
     "The dataset has 1 example; tuning needs at least 20. Add 19 more.")),
    (0, DatasetLimits(), ("error", "too_few_examples",
     "The dataset has 0 examples; tuning needs at least 20. Add 20 more.")),
    (45, DatasetLimits(), ("info", "few_examples",
     "The dataset has 45 examples; 100-500 are recommended for good results. Add more if you can.")),
    (31, DatasetLimits(min_examples=2, recommended_examples=2, max_examples=30), ("error",
     "too_many_examples", "The dataset has 31 examples; the limit is 30. Remove 1 or split the "
     "dataset.")),
])
def test_example_count_problems(count, limits, expected):
    rows = [[f"q{i}", f"a{i}"] for i in range(count)]
    assert problems(ONE, rows, limits) == [expected + (None, None)]


def test_enough_examples_give_no_count_problem():
    assert problems(ONE, [[f"q{i}", f"a{i}"] for i in range(100)], DatasetLimits()) == []


def test_broken_template_is_one_error():
    template = PromptTemplate(inputs=(InputField("output", "x:"),))
    assert problems(template, [["a", "b"]]) == [("error", "template", "Input field 1 is named "
                                                 "'output', which is already taken: give each "
                                                 "field its own name.", None, None)]


def test_file_problems_then_dataset_problems_then_rows_in_order():
    read = Problem("warning", "skipped_line", "Line 2: skipped.", 2)
    report = validate(Dataset.from_rows(ONE, [["a", ""], ["", "b"]]), file_problems=[read])
    codes = [(p.code, p.row) for p in report.problems]
    assert codes == [("skipped_line", 2), ("too_few_examples", None), ("empty_output", 1),
                     ("empty_input", 2)]


@pytest.mark.parametrize("source, unit", [("row", "rows"), ("line", "lines")])
def test_many_problems_of_one_code_are_summarised(source, unit):
    examples = tuple(Example({"text_input": "q"}, "", f"{source} {i}") for i in range(1, 251))
    report = validate(Dataset(ONE, examples), ROWS_ONLY)
    empty = [p for p in report.problems if p.code == "empty_output"]
    assert len(empty) == MAX_LISTED_PER_CODE + 1
    assert empty[-1] == Problem("error", "empty_output",
                                f"...and 50 more {unit} with an empty output.")


def test_token_counts_use_the_training_rendering(word_tokenizer):
    report = validate(Dataset.from_rows(ONE, [["a b", "c d e"]]), ROWS_ONLY, word_tokenizer)
    # "input: a b\noutput:" -> input : a b output : ; " c d e</s>" -> c d e </s>
    assert report.token_counts == ((6, 4),)
    assert report.truncated_rows == ()


@pytest.mark.parametrize("limits, expected", [
    (DatasetLimits(1, 1, max_output_tokens=3), ("Row 1: output is 4 tokens; tokens after 3 will "
     "be cut off in training. Shorten it or raise the limit.", "output")),
    (DatasetLimits(1, 1, max_input_tokens=5), ("Row 1: the prompt is 6 tokens; only its last 5 "
     "will be kept in training (the start is cut off). Shorten the input or raise the limit.",
     None)),
    (DatasetLimits(1, 1, max_input_tokens=5, max_output_tokens=3), ("Row 1: the prompt is 6 "
     "tokens and output is 4 tokens; only the prompt's last 5 and the output's first 3 will be "
     "kept in training. Shorten them or raise the limits.", "output")),
])
def test_rows_over_the_token_limits_will_truncate(word_tokenizer, limits, expected):
    report = validate(Dataset.from_rows(ONE, [["a b", "c d e"]]), limits, word_tokenizer)
    assert [(p.code, p.message, p.field) for p in report.problems] == [("will_truncate",) + expected]
    assert report.truncated_rows == (1,)


def test_fast_counts_equal_the_tokenizer_call(word_tokenizer):
    dataset = Dataset.from_rows(TWO, [["What is it?", "A b, c.", "It is </s> x"], ["q", "", "y"]])
    renderings = [render_example(TWO, ex, word_tokenizer) for ex in dataset.examples]
    expected = tuple(token_counts(renderings, word_tokenizer))
    assert validate(dataset, ROWS_ONLY, word_tokenizer).token_counts == expected


def test_chat_rows_are_counted_with_history(word_tokenizer):
    rows = [["Be brief.", "user: hi\nassistant: hello", "how are you", "fine"]]
    report = validate(Dataset.from_rows(CHAT_TEMPLATE, rows), ROWS_ONLY, word_tokenizer)
    assert report.problems == ()
    # context "system: Be brief.\nuser: hi\nassistant:" + "user: how are you\nassistant:" = 10 + 7;
    # trained " hello\n" + " fine</s>" = 1 + 2
    assert report.token_counts == ((17, 3),)


@pytest.mark.parametrize("name, content, expected", [
    ("pairs.jsonl", '{"text_input": "a", "output": "b"}\n{"text_input": "c", "output": ""}\n{bad\n'
     '{"text_input": "a", "output": "b"}\n', [
         ("invalid_json", "Line 3: invalid JSON (Expecting property name enclosed in double quotes "
          "at column 2); fix or remove that line."),
         ("empty_output", "Line 2: output is empty; write the answer the model should give or "
          "remove the line."),
         ("duplicate", "Line 4 repeats line 1; remove one of them.")]),
    ("qa.csv", "question,context,answer\nq1,c1,a1\nq2,c2,\nq1,c1,a1\n", [
        ("empty_output", "Row 2: output is empty; write the answer the model should give or "
         "remove the row."),
        ("duplicate", "Row 3 repeats row 1; remove one of them.")]),
    ("one.csv", "only\nx\n", [("mapping", "Choose at least one input column."), (
        "too_few_examples", "The dataset has 0 examples; tuning needs at least 1. Add 1 more.")]),
])
def test_validate_file_reports_reading_problems_first(tmp_path, name, content, expected):
    (tmp_path / name).write_text(content, encoding="utf-8")
    _, _, report = validate_file(tmp_path / name, ROWS_ONLY)
    assert [(p.code, p.message) for p in report.problems] == expected


def test_validate_file_maps_spreadsheet_columns_by_name(tmp_path):
    (tmp_path / "qa.csv").write_text("answer,question\nBlue,Sky?\n", encoding="utf-8")
    result, dataset, report = validate_file(tmp_path / "qa.csv", ROWS_ONLY)
    assert (result.format, dataset.template.input_keys, report.ok) == ("csv", ("question",), True)
    assert dataset.examples[0].fields == {"question": "Sky?"} and dataset.examples[0].output == "Blue"


def test_validate_file_raises_for_an_unreadable_file(tmp_path):
    (tmp_path / "x.xlsx").write_bytes(b"not a zip")
    with pytest.raises(UnreadableFileError):
        validate_file(tmp_path / "x.xlsx")
