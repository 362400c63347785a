"""Job states and tuned-model ids: pure tables."""

import pytest

from training.core.errors import StudioError
from training.core.states import (
    EVENTS, ID_RE, STATES, IllegalTransition, gemini_state, transition, tuned_model_id,
)

LEGAL = {
    ("queued", "start"): "running",
    ("queued", "cancel"): "cancelled",
    ("running", "finish"): "succeeded",
    ("running", "fail"): "failed",
    ("running", "cancel"): "cancelling",
    ("running", "interrupt"): "interrupted",
    ("cancelling", "cancelled"): "cancelled",
    ("cancelling", "finish"): "succeeded",
    ("cancelling", "fail"): "failed",
    ("cancelling", "interrupt"): "cancelled",
    ("interrupted", "resume"): "queued",
    ("interrupted", "cancel"): "cancelled",
    ("failed", "resume"): "queued",
    ("cancelled", "resume"): "queued",
}


@pytest.mark.parametrize("state, event, after", [(s, e, a) for (s, e), a in LEGAL.items()])
def test_legal_transitions(state, event, after):
    assert transition(state, event) == after


ILLEGAL = [(s, e) for s in STATES for e in EVENTS if (s, e) not in LEGAL]


@pytest.mark.parametrize("state, event", ILLEGAL)
def test_every_other_transition_is_refused_with_a_message(state, event):
    with pytest.raises(IllegalTransition) as caught:
        transition(state, event)
    assert isinstance(caught.value, StudioError)
    assert str(caught.value).startswith("This job ")


@pytest.mark.parametrize("state, event, message", [
    ("cancelling", "cancel", "This job is already being cancelled: it stops within one training step."),
    ("cancelled", "cancel", "This job is already cancelled: there is nothing to cancel."),
    ("succeeded", "cancel", "This job has finished: there is nothing to cancel; delete the tuned "
                            "model if you do not want it."),
    ("failed", "cancel", "This job has failed: there is nothing to cancel."),
    ("succeeded", "resume", "This job has finished: use Tune again to train a new model with "
                            "changed settings."),
    ("running", "resume", "This job is running: only a failed, cancelled or interrupted job can "
                          "be resumed."),
    ("queued", "resume", "This job is queued: only a failed, cancelled or interrupted job can be "
                         "resumed."),
    ("failed", "start", "This job is failed: only a queued job can start."),
    ("queued", "finish", "This job is queued, not running: it cannot finish."),
    ("succeeded", "fail", "This job is succeeded, not running: it cannot fail."),
    ("running", "cancelled", "This job is running, not running: it cannot end as cancelled."),
    ("queued", "interrupt", "This job is queued, not running: it cannot be interrupted."),
])
def test_refusal_messages(state, event, message):
    with pytest.raises(IllegalTransition, match="^") as caught:
        transition(state, event)
    assert str(caught.value) == message


def test_unknown_states_and_events_are_programming_errors():
    with pytest.raises(ValueError):
        transition("paused", "start")
    with pytest.raises(ValueError):
        transition("queued", "pause")


@pytest.mark.parametrize("state, gemini", [
    ("queued", "CREATING"), ("running", "CREATING"), ("cancelling", "CREATING"),
    ("interrupted", "CREATING"), ("succeeded", "ACTIVE"), ("failed", "FAILED"),
    ("cancelled", "FAILED"),
])
def test_gemini_states(state, gemini):
    assert gemini_state(state) == gemini


@pytest.mark.parametrize("name, taken, expected", [
    ("Support tickets", (), "support-tickets"),
    ("  Support   Tickets!! v2 ", (), "support-tickets-v2"),
    ("Café crème", (), "cafe-creme"),
    ("2024 sentiment", (), "sentiment"),
    ("日本語", (), "tuned-model"),
    ("---", (), "tuned-model"),
    ("a", (), "a"),
    ("x" * 40, (), "x" * 40),
    ("Support tickets", ("support-tickets",), "support-tickets-2"),
    ("Support tickets", ("support-tickets", "support-tickets-2"), "support-tickets-3"),
    ("x" * 40, ("x" * 40,), "x" * 38 + "-2"),
    ("\ufb01" * 25, (), "fi" * 20),  # the ligature 'ﬁ' becomes two letters: cut at 40
    ("abcdefghi abcdefghi abcdefghi abcdefg xy", ("abcdefghi-abcdefghi-abcdefghi-abcdefg-xy",),
     "abcdefghi-abcdefghi-abcdefghi-abcdefg-2"),
])
def test_tuned_model_id_from_display_name(name, taken, expected):
    derived = tuned_model_id(name, taken)
    assert derived == expected
    assert ID_RE.match(derived)


@pytest.mark.parametrize("name, message", [
    ("", "The display name is empty: type a name of 1 to 40 characters."),
    ("   ", "The display name is empty: type a name of 1 to 40 characters."),
    ("y" * 41, "The display name is 41 characters long: shorten it to at most 40."),
])
def test_display_names_must_have_1_to_40_characters(name, message):
    with pytest.raises(StudioError) as caught:
        tuned_model_id(name)
    assert str(caught.value) == message
