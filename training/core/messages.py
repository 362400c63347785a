"""Text the server writes, in the reader's language: one catalogue, three languages.

The interface's fixed labels are ``gr.I18n`` keys the browser translates (``studio.i18n``). What
the server computes (reports, states, log lines, table headers, chart axes) is said here:
``say("library.state.cancelled")`` or ``say("report.ready", examples=40)``, in the current
``LANGUAGE`` (English unless set). The studio sets it for every event from the page's
``studio-lang`` cookie (``studio.errors.user_errors``). Job log lines are stored as a key and its
values, and said in the language of whoever reads them. The three tables (``messages_en``,
``messages_zh``, ``messages_fr``) have the same keys; ``tests/test_messages.py`` checks it.
"""

from __future__ import annotations

from contextvars import ContextVar

from training.core.messages_en import EN
from training.core.messages_fr import FR
from training.core.messages_zh import ZH

LANGUAGES = ("en", "zh-CN", "fr")
LANGUAGE: ContextVar[str] = ContextVar("studio_language", default="en")
"""The language of the page whose event is being handled."""


def say(key: str, /, **params) -> str:
    """The message ``key`` in the current page's language, with ``params`` filled in."""
    return CATALOGUE[LANGUAGE.get()][key].format(**params)

CATALOGUE = {"en": EN, "zh-CN": ZH, "fr": FR}


def english(key: str, /, **params) -> str:
    """The message in English whatever the current language (logs kept for every reader)."""
    return EN[key].format(**params)
