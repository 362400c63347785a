"""The one rendering function (training/core/template.py) and the dataset helpers it relies on."""

import math

import pytest

from training.core.dataset import (
    CHAT_TEMPLATE, Dataset, Example, InputField, Message, PromptTemplate, cell_text, format_history,
    parse_history,
)
from training.core.template import Segment, prompt_text, render_example, render_prompt, token_counts

QA = PromptTemplate(
    preamble="  Answer in one word.\n",
    inputs=(InputField("question", "question:"), InputField("context", "context:")),
    output_label="answer:",
)
QA_EXAMPLE = Example({"question": "Sky colour?", "context": "A clear day."}, "Blue")
UNLABELLED = PromptTemplate(inputs=(InputField("text", ""),), output_label="")


def chat(output="Hello!", system="", history="", user="Hi"):
    return Example({"system": system, "history": history, "user": user}, output)


def whole_conversation(example, tokenizer) -> str:
    from training.core.dataset import chat_messages

    messages = [{"role": m.role, "content": m.content} for m in chat_messages(example)]
    return tokenizer.apply_chat_template(messages, tokenize=False)


# --- structured prompts --------------------------------------------------------------------------


def test_structured_prompt_has_preamble_labelled_fields_and_output_label():
    assert render_example(QA, QA_EXAMPLE) == [
        Segment("Answer in one word.\n\nquestion: Sky colour?\ncontext: A clear day.\nanswer:", False),
        Segment(" Blue", True),
    ]


def test_structured_prompt_without_preamble_starts_with_the_first_field():
    template = PromptTemplate(preamble=" \n", inputs=QA.inputs, output_label="answer:")
    assert render_prompt(template, {"question": "Why?"}) == "question: Why?\ncontext: \nanswer:"


def test_empty_labels_put_values_alone_and_no_space_before_the_output():
    segments = render_example(UNLABELLED, Example({"text": "2+2"}, "4"))
    assert segments == [Segment("2+2\n", False), Segment("4", True)]


def test_a_tokenizer_appends_its_eos_token_to_the_output(tokenizer):
    segments = render_example(QA, QA_EXAMPLE, tokenizer)
    assert segments[-1] == Segment(" Blue<|im_end|>", True)
    assert segments[0].text == render_prompt(QA, QA_EXAMPLE.fields)


@pytest.mark.parametrize("template, example", [(QA, QA_EXAMPLE), (UNLABELLED, Example({"text": "x"}, "y"))])
@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_render_prompt_is_what_precedes_the_trained_output(tokenizer, template, example, with_tokenizer):
    tok = tokenizer if with_tokenizer else None
    assert render_prompt(template, example.fields, tok) == prompt_text(render_example(template, example, tok))


# --- chat prompts --------------------------------------------------------------------------------


def test_single_turn_chat_trains_only_the_answer(tokenizer):
    segments = render_example(CHAT_TEMPLATE, chat(system="Be kind."), tokenizer)
    assert segments == [
        Segment("<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                "<|im_start|>assistant\n", False),
        Segment("Hello!<|im_end|>\n", True),
    ]


@pytest.mark.parametrize(
    "example",
    [
        chat(),
        chat(system="Be brief.", history="user: 2+2?\nassistant: 4\nuser: 3+3?\nassistant: 6", user="4+4?",
             output="8"),
        chat(history="user: Name a colour.\nassistant: Red\nwith a second line", user="Another?", output="Blue"),
    ],
)
def test_chat_segments_join_to_the_whole_conversation(tokenizer, example):
    segments = render_example(CHAT_TEMPLATE, example, tokenizer)
    assert "".join(s.text for s in segments) == whole_conversation(example, tokenizer)


def test_every_assistant_turn_of_a_conversation_is_trained(tokenizer):
    example = chat(history="user: 2+2?\nassistant: 4\nuser: 3+3?\nassistant: 6", user="4+4?", output="8")
    trained = [s.text for s in render_example(CHAT_TEMPLATE, example, tokenizer) if s.trained]
    assert trained == ["4<|im_end|>\n", "6<|im_end|>\n", "8<|im_end|>\n"]


def test_an_opening_assistant_greeting_is_context(tokenizer):
    example = chat(history="assistant: Hi, how can I help?", user="Say hello.", output="Hello!")
    segments = render_example(CHAT_TEMPLATE, example, tokenizer)
    assert [s.text for s in segments if s.trained] == ["Hello!<|im_end|>\n"]
    assert "".join(s.text for s in segments) == whole_conversation(example, tokenizer)


def test_a_chat_with_only_an_output_renders_without_a_prompt(tokenizer):
    segments = render_example(CHAT_TEMPLATE, chat(user=""), tokenizer)
    assert segments[0] == Segment("", False)
    assert segments[1].text.endswith("<|im_start|>assistant\nHello!<|im_end|>\n")
    assert render_prompt(CHAT_TEMPLATE, {"user": ""}, tokenizer) == ""


def test_chat_without_a_chat_template_uses_plain_turns():
    example = chat(system="Be kind.", history="user: 2+2?\nassistant: 4", user="3+3?", output="6")
    assert render_example(CHAT_TEMPLATE, example) == [
        Segment("system: Be kind.\nuser: 2+2?\nassistant:", False),
        Segment(" 4\n", True),
        Segment("user: 3+3?\nassistant:", False),
        Segment(" 6", True),
    ]


@pytest.mark.parametrize("with_tokenizer", [False, True])
@pytest.mark.parametrize("history", ["", "user: 2+2?\nassistant: 4", "assistant: Hello"])
def test_chat_prompt_is_what_precedes_the_last_answer(tokenizer, with_tokenizer, history):
    tok = tokenizer if with_tokenizer else None
    example = chat(system="Be brief.", history=history, user="3+3?", output="6")
    assert render_prompt(CHAT_TEMPLATE, example.fields, tok) == prompt_text(render_example(CHAT_TEMPLATE, example, tok))


# --- token counts --------------------------------------------------------------------------------


def test_token_counts_sum_context_and_trained_segments_separately(tokenizer):
    renderings = [
        render_example(QA, QA_EXAMPLE, tokenizer),
        render_example(CHAT_TEMPLATE, chat(history="user: 2+2?\nassistant: 4", user="3+3?", output="6"), tokenizer),
    ]

    def tokens(segments, trained):
        return sum(len(tokenizer(s.text, add_special_tokens=False)["input_ids"]) for s in segments if s.trained == trained)

    assert token_counts(renderings, tokenizer) == [(tokens(r, False), tokens(r, True)) for r in renderings]


def test_token_counts_of_a_known_rendering(tokenizer):
    counts = token_counts([[Segment("<|im_start|>user\n", False), Segment("<|im_end|>", True)]], tokenizer)
    assert counts == [(len(tokenizer("<|im_start|>user\n", add_special_tokens=False)["input_ids"]), 1)]


def test_token_counts_of_nothing_is_empty(tokenizer):
    assert token_counts([], tokenizer) == []


# --- chat history --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, messages",
    [
        ("", []),
        ("user: Hi\nassistant: Hello", [Message("user", "Hi"), Message("assistant", "Hello")]),
        ("User:Hi\nASSISTANT:  Hello  ", [Message("user", "Hi"), Message("assistant", "Hello")]),
        ("user: line one\nline two\n\nassistant: ok", [Message("user", "line one\nline two"), Message("assistant", "ok")]),
        ("\nHi there\nassistant: Hello", [Message("user", "Hi there"), Message("assistant", "Hello")]),
        ("username: bob", [Message("user", "username: bob")]),
    ],
)
def test_parse_history(text, messages):
    assert parse_history(text) == messages


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [Message("user", "Hi"), Message("assistant", "Hello")],
        [Message("user", "two\nlines"), Message("assistant", "a: b"), Message("user", "")],
    ],
)
def test_format_then_parse_history_round_trips(messages):
    assert parse_history(format_history(messages)) == messages


def test_parse_then_format_history_round_trips_a_tidy_transcript():
    text = "user: 2+2?\nassistant: 4\nuser: and\nmore?"
    assert format_history(parse_history(text)) == text


# --- grid rows -----------------------------------------------------------------------------------


def test_from_rows_drops_blank_rows_and_keeps_grid_row_numbers():
    rows = [["a", "1"], [None, ""], ["  ", None], ["b", "2"]]
    dataset = Dataset.from_rows(UNLABELLED, rows)
    assert [(e.fields, e.output, e.source) for e in dataset.examples] == [
        ({"text": "a"}, "1", "row 1"),
        ({"text": "b"}, "2", "row 4"),
    ]


def test_from_rows_pads_short_rows_and_ignores_extra_cells():
    dataset = Dataset.from_rows(QA, [["q"], ["q2", "c2", "o2", "extra"]])
    assert dataset.rows() == [["q", "", ""], ["q2", "c2", "o2"]]


def test_from_rows_turns_spreadsheet_numbers_into_text():
    dataset = Dataset.from_rows(UNLABELLED, [[3.0, 2.5], [float("nan"), 7]])
    assert dataset.rows() == [["3", "2.5"], ["", "7"]]


@pytest.mark.parametrize(
    "value, text",
    [
        (None, ""),
        (math.nan, ""),
        (3.0, "3"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1e20, "100000000000000000000"),
        (math.inf, "inf"),
        (7, "7"),
        ("  kept as is ", "  kept as is "),
    ],
)
def test_cell_text(value, text):
    assert cell_text(value) == text


def test_template_survives_a_dict_round_trip():
    assert PromptTemplate.from_dict(QA.to_dict()) == QA
    assert PromptTemplate.from_dict(CHAT_TEMPLATE.to_dict()) == CHAT_TEMPLATE
