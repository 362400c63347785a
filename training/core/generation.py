"""Generation settings and the text side of streaming: pure, no torch.

``GenerationParams`` holds the playground's knobs (Gemini's names), validated with one message
per setting. Defaults differ by model kind:

- a tuned model answers the task it was tuned on, where the most likely answer is the wanted
  one: temperature 0 (greedy, the same answer every time), so the playground shows what the
  model learned and a batch test is reproducible;
- a base chat model is more pleasant with some variety: temperature 0.7, top-p 0.95, top-k 40
  (Gemini's usual top-p and top-k).

A tuned model may carry its own defaults in ``generation.json`` beside its adapter (the UI saves
them there); without that file ``TUNED_DEFAULTS`` apply.

``TextStream`` turns the growing list of generated token ids into text increments: it drops
leading whitespace (a structured prompt ends with ``output:`` and the model writes `` answer``),
holds back a half-decoded character and any tail that may begin a stop sequence, and ends the
answer before the first stop sequence.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

from training.core.atomic import write_file_atomic
from training.core.config import ConfigError
from training.core.layout import GENERATION_FILE
from training.core.messages import say

MAX_OUTPUT_TOKENS = 8_192
MAX_TEMPERATURE = 2.0
MAX_TOP_K = 1_000
MAX_STOP_SEQUENCES = 5
"""Gemini's limit on stop sequences."""

MAX_SEED = 2**32 - 1
_INCOMPLETE_CHARACTER = "\ufffd"
"""What a tokenizer decodes half of a multi-byte character to."""


@dataclass(frozen=True)
class GenerationParams:
    temperature: float = 0.0
    """0 always picks the most likely token (greedy); higher values pick less likely ones more often."""

    top_p: float = 0.95
    """Sample only among the most likely tokens whose probabilities add up to this (1: all)."""

    top_k: int = 40
    """Sample only among this many most likely tokens (0: no limit)."""

    max_output_tokens: int = 256
    """The answer stops after this many tokens."""

    stop_sequences: tuple[str, ...] = ()
    """The answer ends before the first of these texts (which is not shown)."""

    seed: int | None = None
    """Seeds sampling, so the same seed gives the same answer; None: a new answer each time."""

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def problems(self) -> list[str]:
        """Every unusable setting, one message each (empty when all is well)."""
        found = []
        if not _number_in(self.temperature, 0, MAX_TEMPERATURE):
            found.append(say("generation.temperature", value=_shown(self.temperature),
                             most=MAX_TEMPERATURE))
        if not _number_in(self.top_p, 0, 1) or self.top_p == 0:
            found.append(say("generation.top_p", value=_shown(self.top_p)))
        if not _whole_in(self.top_k, 0, MAX_TOP_K):
            found.append(say("generation.top_k", value=_shown(self.top_k), most=MAX_TOP_K))
        if not _whole_in(self.max_output_tokens, 1, MAX_OUTPUT_TOKENS):
            found.append(say("generation.max_output_tokens", value=_shown(self.max_output_tokens),
                             most=MAX_OUTPUT_TOKENS))
        if len(self.stop_sequences) > MAX_STOP_SEQUENCES:
            found.append(say("generation.stop_count", count=len(self.stop_sequences),
                             most=MAX_STOP_SEQUENCES))
        for number, text in enumerate(self.stop_sequences, start=1):
            if not isinstance(text, str) or not text:
                found.append(say("generation.stop_empty", number=number))
        if self.seed is not None and not _whole_in(self.seed, 0, MAX_SEED):
            found.append(say("generation.seed", value=_shown(self.seed), most=MAX_SEED))
        return found

    def check(self) -> "GenerationParams":
        """Raise ConfigError listing every problem; return the settings with whole numbers as
        ints (number widgets send 40.0)."""
        found = self.problems()
        if found:
            raise ConfigError(found[0] if len(found) == 1 else
                              say("config.several") + "\n- " + "\n- ".join(found))
        return replace(self, temperature=float(self.temperature), top_p=float(self.top_p),
                       top_k=int(self.top_k), max_output_tokens=int(self.max_output_tokens),
                       stop_sequences=tuple(self.stop_sequences),
                       seed=None if self.seed is None else int(self.seed))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stop_sequences"] = list(self.stop_sequences)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "GenerationParams":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "stop_sequences" in values:
            values["stop_sequences"] = tuple(values["stop_sequences"] or ())
        return cls(**values)


TUNED_DEFAULTS = GenerationParams()
BASE_DEFAULTS = GenerationParams(temperature=0.7)


def _number_in(value, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _whole_in(value, low: int, high: int) -> bool:
    return _number_in(value, low, high) and float(value).is_integer()


def _shown(value) -> str:
    if value is None:
        return "empty"
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_stop_sequences(text: str) -> tuple[str, ...]:
    """One stop sequence per line of a text box; empty lines are skipped. ``\\n`` in a line
    stands for a line break."""
    return tuple(line.replace("\\n", "\n") for line in text.splitlines() if line)


# --- per-tuned-model defaults ------------------------------------------------------------------


def load_generation_defaults(model_dir: Path, fallback: GenerationParams = TUNED_DEFAULTS) -> GenerationParams:
    """The defaults saved in ``model_dir/generation.json``, else ``fallback``. Raises ConfigError
    naming the file when it cannot be used."""
    path = Path(model_dir) / GENERATION_FILE
    if not path.is_file():
        return fallback
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        params = GenerationParams.from_dict({**fallback.to_dict(), **data})
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ConfigError.of("generation.unreadable", path=path, error=error) from error
    return params.check()


def save_generation_defaults(model_dir: Path, params: GenerationParams) -> Path:
    """Check ``params`` and save them as the tuned model's defaults (written whole or not at all)."""
    params = params.check()
    path = Path(model_dir) / GENERATION_FILE
    write_file_atomic(path, (json.dumps(params.to_dict(), ensure_ascii=False, indent=1) + "\n").encode())
    return path


# --- from token ids to text increments ---------------------------------------------------------


class TextStream:
    """Feed it the generated token ids as they come (``add``); it returns the text that may be
    shown now. ``stopped`` turns true once a stop sequence was generated; ``finish`` returns the
    text held back at the end. The concatenation of everything returned is the answer."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop_sequences: Sequence[str] = ()):
        self._decode = decode
        self._stops = tuple(s for s in stop_sequences if s)
        self._ids: list[int] = []
        self._sent = 0
        self.stopped = False

    @property
    def token_count(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[int]) -> str:
        if self.stopped:
            return ""
        self._ids.extend(ids)
        text = self._decode(self._ids).lstrip()
        end = self._stop_at(text)
        if end is not None:
            self.stopped = True
            return self._send(text, end)
        safe = len(text) - self._held_back(text)
        return self._send(text, safe)

    def finish(self) -> str:
        """The rest of the answer (a half-decoded last character is dropped)."""
        if self.stopped:
            return ""
        text = self._decode(self._ids).lstrip().rstrip(_INCOMPLETE_CHARACTER)
        return self._send(text, len(text))

    def _send(self, text: str, end: int) -> str:
        piece = text[self._sent:end] if end > self._sent else ""
        self._sent = max(self._sent, end)
        return piece

    def _stop_at(self, text: str) -> int | None:
        found = [i for i in (text.find(stop) for stop in self._stops) if i >= 0]
        return min(found) if found else None

    def _held_back(self, text: str) -> int:
        """Characters at the end not to show yet: a half-decoded character, or the beginning of
        a stop sequence."""
        if text.endswith(_INCOMPLETE_CHARACTER):
            return len(text) - len(text.rstrip(_INCOMPLETE_CHARACTER))
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
