"""Datasets as the studio edits them: a prompt template plus a grid of examples.

A structured dataset has named input fields (grid columns) and one output column. A chat
dataset has the columns ``system``, ``history``, ``user`` and ``output``: ``history`` holds the
earlier turns of a conversation as a transcript (see ``parse_history``), ``user`` the last user
message and ``output`` the assistant's answer that the model learns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Mapping

from training.core.errors import DatasetError

OUTPUT_COLUMN = "output"
CHAT_COLUMNS = ("system", "history", "user")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_ -]{0,63}$")
_TURN_RE = re.compile(r"^(user|assistant):[ \t]?", re.IGNORECASE)


@dataclass(frozen=True)
class InputField:
    key: str
    """Column name in the grid and in exported files, e.g. ``question``."""

    label: str
    """Text placed before the value in the prompt, e.g. ``question:``."""


@dataclass(frozen=True)
class PromptTemplate:
    kind: Literal["structured", "chat"] = "structured"
    """``structured``: preamble + labelled input fields; ``chat``: the model's chat template."""

    preamble: str = ""
    """Instructions placed before every example (structured only)."""

    inputs: tuple[InputField, ...] = (InputField("input", "input:"),)
    """Named input fields, in prompt order (structured only)."""

    output_label: str = "output:"
    """Text that ends the prompt, after which the model writes the output (structured only)."""

    @property
    def input_keys(self) -> tuple[str, ...]:
        if self.kind == "chat":
            return CHAT_COLUMNS
        return tuple(f.key for f in self.inputs)

    @property
    def columns(self) -> tuple[str, ...]:
        """Grid columns: the input keys, then ``output``."""
        return self.input_keys + (OUTPUT_COLUMN,)

    def check(self) -> None:
        """Raise DatasetError naming the first field that makes this template unusable."""
        if self.kind not in ("structured", "chat"):
            raise DatasetError.of("template.kind_unknown", kind=self.kind)
        if self.kind == "chat":
            return
        if not self.inputs:
            raise DatasetError.of("template.no_inputs")
        seen: set[str] = set()
        for position, item in enumerate(self.inputs, start=1):
            if not _KEY_RE.match(item.key):
                raise DatasetError.of("template.bad_key", position=position, key=item.key)
            if item.key.lower() == OUTPUT_COLUMN or item.key.lower() in seen:
                raise DatasetError.of("template.key_taken", position=position, key=item.key)
            seen.add(item.key.lower())

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "preamble": self.preamble,
            "inputs": [{"key": f.key, "label": f.label} for f in self.inputs],
            "output_label": self.output_label,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "PromptTemplate":
        return cls(
            kind=data.get("kind", "structured"),
            preamble=data.get("preamble", ""),
            inputs=tuple(InputField(i["key"], i.get("label", "")) for i in data.get("inputs", [])),
            output_label=data.get("output_label", "output:"),
        )


CHAT_TEMPLATE = PromptTemplate(kind="chat", inputs=())


@dataclass(frozen=True)
class Example:
    fields: Mapping[str, str]
    """Input values by key (for chat: ``system``, ``history``, ``user``)."""

    output: str
    """What the model should answer."""

    source: str = ""
    """Where it came from in the original file, for messages: ``line 12`` or ``row 7``."""


@dataclass(frozen=True)
class Dataset:
    template: PromptTemplate
    examples: tuple[Example, ...] = field(default_factory=tuple)

    def same_content(self, other: "Dataset") -> bool:
        """The same template and the same examples in the same order (where each example came
        from in a file does not count)."""
        return self.template == other.template and self.rows() == other.rows()

    def rows(self) -> list[list[str]]:
        """The grid: one list of cell strings per example, in ``template.columns`` order."""
        keys = self.template.input_keys
        return [[ex.fields.get(k, "") for k in keys] + [ex.output] for ex in self.examples]

    @classmethod
    def from_rows(cls, template: PromptTemplate, rows: list[list]) -> "Dataset":
        """Build from grid rows; cells may be None or numbers (spreadsheets). Wholly empty rows
        are dropped, so an empty line at the end of a grid is not an example."""
        keys = template.input_keys
        width = len(keys) + 1
        examples = []
        for number, row in enumerate(rows, start=1):
            cells = [cell_text(c) for c in list(row)[:width]]
            cells += [""] * (width - len(cells))
            if not any(c.strip() for c in cells):
                continue
            examples.append(Example(dict(zip(keys, cells[:-1])), cells[-1], source=f"row {number}"))
        return cls(template, tuple(examples))


def cell_text(value) -> str:
    """A grid or spreadsheet cell as text: None is empty, 3.0 is '3'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN from pandas-backed grids
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


def parse_history(history: str) -> list[Message]:
    """Read a transcript: a line starting ``user:`` or ``assistant:`` begins a message, other lines
    continue the message before. Text before the first marker belongs to a user message."""
    messages: list[Message] = []
    for line in history.splitlines():
        match = _TURN_RE.match(line)
        if match:
            messages.append(Message(match.group(1).lower(), line[match.end():]))
        elif messages:
            last = messages[-1]
            messages[-1] = Message(last.role, f"{last.content}\n{line}")
        elif line.strip():
            messages.append(Message("user", line))
    return [Message(m.role, m.content.strip()) for m in messages]


def format_history(messages: list[Message]) -> str:
    """The inverse of ``parse_history`` for user and assistant turns."""
    return "\n".join(f"{m.role}: {m.content}" for m in messages)


def chat_messages(example: Example) -> list[Message]:
    """The whole conversation of a chat example, the output as the final assistant turn."""
    messages = []
    system = example.fields.get("system", "").strip()
    if system:
        messages.append(Message("system", system))
    messages.extend(parse_history(example.fields.get("history", "")))
    user = example.fields.get("user", "")
    if user.strip():
        messages.append(Message("user", user.strip()))
    messages.append(Message("assistant", example.output))
    return messages


@dataclass(frozen=True)
class NewDataset:
    """Examples that arrive with a job request (the API's inline examples, a file given to
    ``app.py tune``): saved as a new dataset version together with the job, in one transaction,
    or not at all."""

    name: str
    dataset: Dataset
    format: str = ""
    note: str = ""
    upload: tuple[str, bytes] | None = None
    """The file the examples were read from (its name and content), stored with them."""
