"""The validation report: every problem with where it is and what to do, in one list."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "info"]
"""error: blocks saving for training / starting a job; warning: the user should look;
info: guidance (e.g. 'fewer than 100 examples')."""


@dataclass(frozen=True)
class Problem:
    severity: Severity
    code: str
    """Stable identifier for tests and the API, e.g. ``invalid_json``, ``empty_output``."""

    message: str
    """A whole sentence shown to the user: names the row or line and field, says what to do."""

    row: int | None = None
    """1-based: a file line for JSONL, a data row for spreadsheets and the grid."""

    field: str | None = None
    """The column or key concerned, if any."""


@dataclass(frozen=True)
class Report:
    problems: tuple[Problem, ...] = ()
    examples: int = 0
    """How many examples were checked."""

    truncated_rows: tuple[int, ...] = ()
    """Rows whose input or output is over the token limits and will be truncated in training."""

    token_counts: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    """(input tokens, output tokens) per example, when a tokenizer was given."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when nothing blocks training."""
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "examples": self.examples,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "truncated_rows": list(self.truncated_rows),
            "problems": [asdict(p) for p in self.problems],
        }
