"""Tuning-job states and their changes, and the tuned-model id derived from a display name.

Pure functions of their inputs: the runner and the store call them, the tests read them as tables.

    queued ──start──> running ──finish──> succeeded
      │                 │ ├────fail─────> failed ─────┐
      cancel            │ └──interrupt──> interrupted ┤ resume ──> queued
      │               cancel                          │
      v                 v                             │
    cancelled <─cancelled── cancelling               ─┘
                        (finish / fail / interrupt also end a cancelling job)

``interrupted``: the studio stopped (or died) while the job ran; it resumes from its last
checkpoint when the studio starts again. A ``cancelled`` job keeps its last checkpoint as a
*partial* model (labelled so: the guide calls it unpredictable) and offers "tune again with
fewer epochs".
"""

from __future__ import annotations

import re
import unicodedata
from typing import Collection, Literal

from training.core.errors import InvalidRequestError, StudioError

JobState = Literal["queued", "running", "cancelling", "cancelled", "succeeded", "failed", "interrupted"]
JobEvent = Literal["start", "finish", "fail", "cancel", "cancelled", "interrupt", "resume"]
GeminiState = Literal["CREATING", "ACTIVE", "FAILED"]

STATES: tuple[JobState, ...] = (
    "queued", "running", "cancelling", "cancelled", "succeeded", "failed", "interrupted",
)
EVENTS: tuple[JobEvent, ...] = (
    "start", "finish", "fail", "cancel", "cancelled", "interrupt", "resume",
)
ACTIVE_STATES: frozenset[JobState] = frozenset({"running", "cancelling"})
"""A process is training the job (or was, when it died)."""

FINAL_STATES: frozenset[JobState] = frozenset({"succeeded", "failed", "cancelled"})
"""Nothing more happens to the job unless the user resumes it (failed, cancelled)."""

MAX_DISPLAY_NAME_CHARS = 40
"""Gemini's limit on a tuned model's display name."""

MAX_DESCRIPTION_CHARS = 2_000
"""Longest description of a tuned model (a few paragraphs; the list pages show it whole)."""

MAX_ID_CHARS = 40
"""Tuned-model ids match ``[a-z]([a-z0-9-]{0,38}[a-z0-9])?``: 1 to 40 characters."""

TUNED_MODEL_ID_RE = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")

FALLBACK_ID = "tuned-model"
"""The id stem when a display name has no latin letter to start one (e.g. '日本語')."""

ID_RE = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")

_TRANSITIONS: dict[tuple[JobState, JobEvent], JobState] = {
    ("queued", "start"): "running",
    ("queued", "cancel"): "cancelled",
    ("running", "finish"): "succeeded",
    ("running", "fail"): "failed",
    ("running", "cancel"): "cancelling",
    ("running", "interrupt"): "interrupted",
    ("cancelling", "cancelled"): "cancelled",
    ("cancelling", "finish"): "succeeded",  # the last step ended before the stop was seen
    ("cancelling", "fail"): "failed",
    ("cancelling", "interrupt"): "cancelled",  # died while stopping: the user wanted it stopped
    ("interrupted", "resume"): "queued",
    ("interrupted", "cancel"): "cancelled",
    ("failed", "resume"): "queued",
    ("cancelled", "resume"): "queued",
}

_GEMINI: dict[JobState, GeminiState] = {
    "queued": "CREATING",
    "running": "CREATING",
    "cancelling": "CREATING",
    "interrupted": "CREATING",
    "succeeded": "ACTIVE",
    "failed": "FAILED",
    "cancelled": "FAILED",  # its partial model is kept and labelled partial
}


class IllegalTransition(StudioError):
    """The job's state does not allow what was asked; the message says what can be done."""


def allowed_events(state: JobState) -> frozenset[JobEvent]:
    """The events ``state`` allows: what a job page offers (Cancel, Resume) follows this."""
    return frozenset(event for (source, event) in _TRANSITIONS if source == state)


def transition(state: JobState, event: JobEvent) -> JobState:
    """The state after ``event``; IllegalTransition (a user-facing message) when not allowed."""
    if state not in STATES:
        raise ValueError(f"unknown job state {state!r}")
    if event not in EVENTS:
        raise ValueError(f"unknown job event {event!r}")
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(_refusal(state, event)) from None


def _refusal(state: JobState, event: JobEvent) -> str:
    if event == "cancel":
        return {
            "cancelling": "This job is already being cancelled: it stops within one training step.",
            "cancelled": "This job is already cancelled: there is nothing to cancel.",
            "succeeded": "This job has finished: there is nothing to cancel; delete the tuned "
                         "model if you do not want it.",
            "failed": "This job has failed: there is nothing to cancel.",
        }[state]
    if event == "resume":
        if state == "succeeded":
            return ("This job has finished: use Tune again to train a new model with changed "
                    "settings.")
        return (f"This job is {state}: only a failed, cancelled or interrupted job can be "
                "resumed.")
    if event == "start":
        return f"This job is {state}: only a queued job can start."
    return f"This job is {state}, not running: it cannot {_VERBS[event]}."


_VERBS = {
    "finish": "finish",
    "fail": "fail",
    "cancelled": "end as cancelled",
    "interrupt": "be interrupted",
}


def gemini_state(state: JobState) -> GeminiState:
    """The tuned model's state as the Gemini API reports it: CREATING, ACTIVE or FAILED."""
    return _GEMINI[state]


def check_display_name(display_name: str) -> str:
    """The display name stripped of surrounding spaces; StudioError if empty or too long."""
    name = display_name.strip()
    if not name:
        raise InvalidRequestError(
            f"The display name is empty: type a name of 1 to {MAX_DISPLAY_NAME_CHARS} characters."
        )
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidRequestError(
            f"The display name is {len(name)} characters long: shorten it to at most "
            f"{MAX_DISPLAY_NAME_CHARS}."
        )
    return name


def check_description(description: str) -> str:
    """InvalidRequestError when the description is longer than MAX_DESCRIPTION_CHARS."""
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequestError(
            f"The description is {len(description)} characters long: shorten it to at most "
            f"{MAX_DESCRIPTION_CHARS}.", field="description")
    return description


def check_tuned_model_id(model_id: str) -> str:
    """A tuned-model id chosen by the caller (the API's ``tunedModelId``), as the Gemini API
    allows it: lowercase letters, digits and '-', starting with a letter, 1-40 characters."""
    if not TUNED_MODEL_ID_RE.fullmatch(model_id or ""):
        raise InvalidRequestError(
            f"The tuned model id '{model_id}' is not allowed: use 1 to {MAX_ID_CHARS} lowercase "
            "letters, digits and '-', starting with a letter and not ending with '-'.")
    return model_id


def tuned_model_id(display_name: str, taken: Collection[str] = ()) -> str:
    """A tuned-model id derived from the display name, not in ``taken``: latin letters lowered,
    accents dropped, every other run of characters a single '-', starting with a letter; on a
    clash ``-2``, ``-3``... (the stem shortened so the whole id stays within 40 characters)."""
    stem = _id_stem(check_display_name(display_name))
    taken = set(taken)
    if stem not in taken:
        return stem
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = stem[: MAX_ID_CHARS - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
        number += 1


def _id_stem(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower())
    slug = re.sub(r"^[^a-z]+", "", slug)  # must start with a letter
    slug = slug[:MAX_ID_CHARS].rstrip("-")
    return slug or FALLBACK_ID
