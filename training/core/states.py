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
from training.core.messages import say

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
    word = say(f"state.word.{state}")
    if event == "cancel":
        return say(f"refusal.cancel.{state}")
    if event == "resume":
        return say("refusal.resume.succeeded") if state == "succeeded" else say(
            "refusal.resume", state=word)
    if event == "start":
        return say("refusal.start", state=word)
    return say("refusal.other", state=word, verb=say(f"refusal.verb.{event}"))




def gemini_state(state: JobState) -> GeminiState:
    """The tuned model's state as the Gemini API reports it: CREATING, ACTIVE or FAILED."""
    return _GEMINI[state]


def check_display_name(display_name: str) -> str:
    """The display name stripped of surrounding spaces; StudioError if empty or too long."""
    name = display_name.strip()
    if not name:
        raise InvalidRequestError(say("name.empty", most=MAX_DISPLAY_NAME_CHARS))
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidRequestError(say("name.too_long", chars=len(name),
                                      most=MAX_DISPLAY_NAME_CHARS))
    return name


def check_description(description: str) -> str:
    """InvalidRequestError when the description is longer than MAX_DESCRIPTION_CHARS."""
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequestError(say("description.too_long", chars=len(description),
                                      most=MAX_DESCRIPTION_CHARS), field="description")
    return description


def check_tuned_model_id(model_id: str) -> str:
    """A tuned-model id chosen by the caller (the API's ``tunedModelId``), as the Gemini API
    allows it: lowercase letters, digits and '-', starting with a letter, 1-40 characters."""
    if not TUNED_MODEL_ID_RE.fullmatch(model_id or ""):
        raise InvalidRequestError.of("model_id.not_allowed", id=model_id, most=MAX_ID_CHARS)
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
