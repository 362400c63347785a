"""Generation settings, their per-model defaults, streamed text and stop sequences, prompt lookup:
the pure parts of answering (no model)."""

import pytest

from training.core.config import ConfigError
from training.core.generation import (
    GenerationParams, TextStream, load_generation_defaults, parse_stop_sequences,
    save_generation_defaults,
)
from training.inference.decoding import DraftIndex, propose


@pytest.mark.parametrize("change, message", [
    (dict(temperature=2.5), "Temperature is 2.5: use a number from 0 (always the most likely token) to 2."),
    (dict(temperature=None), "Temperature is empty: use a number from 0 (always the most likely token) to 2."),
    (dict(top_p=0.0), "Top-p is 0: use a number above 0 and at most 1 (1 keeps every token)."),
    (dict(top_p=1.5), "Top-p is 1.5: use a number above 0 and at most 1 (1 keeps every token)."),
    (dict(top_k=-1), "Top-k is -1: use a whole number from 0 (no limit) to 1,000."),
    (dict(top_k=2.5), "Top-k is 2.5: use a whole number from 0 (no limit) to 1,000."),
    (dict(max_output_tokens=0), "Maximum output tokens is 0: use a whole number from 1 to 8,192."),
    (dict(max_output_tokens=10_000), "Maximum output tokens is 10000: use a whole number from 1 to 8,192."),
    (dict(stop_sequences=("a", "b", "c", "d", "e", "f")), "There are 6 stop sequences: use at most 5."),
    (dict(stop_sequences=("END", "")), "Stop sequence 2 is empty: remove it or type the text that should end an answer."),
    (dict(seed=-1), "Seed is -1: use a whole number from 0 to 4294967295, or leave it empty for a different answer each time."),
])
def test_each_unusable_setting_is_named_with_what_to_use(change, message):
    with pytest.raises(ConfigError) as error:
        GenerationParams(**change).check()
    assert str(error.value) == message


def test_several_unusable_settings_are_listed_at_once():
    with pytest.raises(ConfigError) as error:
        GenerationParams(temperature=-1, max_output_tokens=0).check()
    assert str(error.value) == (
        "Some settings need changing:\n"
        "- Temperature is -1: use a number from 0 (always the most likely token) to 2.\n"
        "- Maximum output tokens is 0: use a whole number from 1 to 8,192.")


def test_whole_numbers_from_number_widgets_become_ints():
    params = GenerationParams(top_k=40.0, max_output_tokens=64.0, seed=7.0).check()
    assert (params.top_k, params.max_output_tokens, params.seed) == (40, 64, 7)
    assert isinstance(params.top_k, int)


def test_stop_sequences_are_read_one_per_line_with_escaped_line_breaks():
    assert parse_stop_sequences("END\n\n###\\n") == ("END", "###\n")


def test_generation_defaults_are_saved_beside_the_model_and_read_back(tmp_path):
    params = GenerationParams(temperature=0.3, stop_sequences=("END",), seed=5)
    save_generation_defaults(tmp_path, params)
    assert load_generation_defaults(tmp_path) == params


def test_a_model_without_saved_defaults_gets_the_fallback(tmp_path):
    fallback = GenerationParams(temperature=0.7)
    assert load_generation_defaults(tmp_path, fallback) == fallback


def test_a_broken_defaults_file_is_named(tmp_path):
    (tmp_path / "generation.json").write_text("{not json")
    with pytest.raises(ConfigError) as error:
        load_generation_defaults(tmp_path)
    assert str(error.value).startswith(f"The generation settings in {tmp_path / 'generation.json'} "
                                       "cannot be read (")
    assert str(error.value).endswith("): fix the file or delete it to use the defaults.")


# ---- text as it streams ----

def chars(ids):
    """A stand-in tokenizer: token ids are character codes."""
    return "".join(map(chr, ids))


def feed(stream: TextStream, text: str) -> list[str]:
    pieces = [stream.add([ord(c)]) for c in text]
    return [p for p in pieces + [stream.finish()] if p]


def test_leading_whitespace_is_dropped_and_pieces_join_to_the_answer():
    stream = TextStream(chars)
    assert "".join(feed(stream, "  category: billing")) == "category: billing"


def test_the_answer_ends_before_the_first_stop_sequence():
    stream = TextStream(chars, ("###", ";"))
    assert "".join(feed(stream, "category: billing; urgency ### more")) == "category: billing"
    assert stream.stopped


def test_text_that_may_begin_a_stop_sequence_is_held_back_until_it_does_not():
    stream = TextStream(chars, ("END",))
    assert [stream.add([ord(c)]) for c in "aEN"] == ["a", "", ""]
    assert stream.add([ord("x")]) == "ENx"


def test_a_half_decoded_character_is_held_back():
    stream = TextStream(lambda ids: "caf\ufffd" if len(ids) == 1 else "café")
    assert stream.add([1]) == "caf"
    assert stream.add([2]) == "é"


# ---- prompt lookup ----

@pytest.mark.parametrize("sequence, count, draft", [
    ([1, 2, 3, 4, 9, 2, 3], 2, [4, 9]),          # the trigram is new; the bigram 2 3 was followed by 4 9
    ([1, 2, 3, 7, 1, 2, 3, 8, 1, 2, 3], 3, [8, 1, 2]),  # the latest earlier occurrence wins
    ([5, 1, 2, 1, 2], 5, [1, 2, 1, 2, 1]),       # a repetition goes on repeating
    ([5, 6, 7], 4, []),                          # nothing repeats
    ([1, 2, 1, 2], 0, []),
])
def test_prompt_lookup_drafts_what_followed_the_last_ngram(sequence, count, draft):
    assert propose(sequence, count) == draft


ANSWERS = DraftIndex([[50, 1, 2, 3, 9], [50, 1, 2, 4, 9], [50, 1, 2, 3, 9]], end_ids=[9])


@pytest.mark.parametrize("tail, count, draft", [
    ([1, 2], 5, [3, 9]),        # 3 followed "1 2" twice, 4 once; the draft stops at the end token
    ([50], 2, [1, 2]),          # the prompt's last token before the answers
    ([2, 4], 3, [9]),
    ([7], 3, []),               # never seen
])
def test_training_answers_draft_their_most_frequent_continuation(tail, count, draft):
    assert ANSWERS.after(tail, count) == draft


def test_drafts_come_from_training_answers_before_the_prompt():
    assert propose([1, 2, 7, 7, 1, 2], 2, ANSWERS) == [3, 9]
    assert propose([1, 2, 7, 7, 1, 2], 2) == [7, 7]


def test_training_answers_cover_answers_up_to_the_longest():
    assert (ANSWERS.covers(4), ANSWERS.covers(5)) == (True, False)
