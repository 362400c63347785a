"""JSON and JSONL datasets: detect the format from the objects' keys and map it to a Dataset.

Formats: Gemini pairs (also Gemini's REST camelCase ``textInput``), Vertex text, Vertex chat,
OpenAI chat, Alpaca, and structured objects (any text keys plus ``output``). Each object is
classified by its keys; the format of the majority wins; objects that do not fit it become row
problems ("Line 7: missing key 'output'; ..."). A file that fits no format is refused, naming
the keys found and the shapes accepted. JSON documents number their examples as items.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from training.core.dataset import (
    CHAT_TEMPLATE, Dataset, Example, InputField, Message, PromptTemplate, cell_text, format_history,
)
from training.core.errors import UnreadableFileError
from training.core.limits import DatasetLimits
from training.core.messages import say
from training.data.report import Problem
from training.data.spreadsheet import ROW_CAP_FACTOR, count_text, field_key

JSON_LABELS: dict[str, str] = {
    "gemini_pairs": "Gemini pairs JSONL",
    "vertex_text": "Vertex text JSONL",
    "vertex_chat": "Vertex chat JSONL",
    "openai_chat": "OpenAI chat JSONL",
    "alpaca": "Alpaca JSONL",
    "structured_jsonl": "Structured JSONL",
}
"""Read from one JSON document rather than lines, the label ends in 'JSON' instead."""

_PRIORITY = (
    "vertex_chat", "openai_chat", "alpaca", "gemini_pairs", "vertex_text", "structured_jsonl"
)  # on a tie between formats, the first wins
GEMINI_PAIRS_TEMPLATE = PromptTemplate(inputs=(InputField("text_input", "input:"),))
"""The template of Gemini's {text_input, output} pairs (files, and the API's inline examples)."""

_FIELD_SHAPES = {  # format -> (template, {file key: field key}, output key, optional file keys)
    "gemini_pairs": (
        GEMINI_PAIRS_TEMPLATE,
        {"text_input": "text_input"}, "output", (),
    ),
    "vertex_text": (
        PromptTemplate(inputs=(InputField("input_text", "input:"),)),
        {"input_text": "input_text"}, "output_text", (),
    ),
    "alpaca": (
        PromptTemplate(
            inputs=(InputField("instruction", "Instruction:"), InputField("input", "Input:")),
            output_label="Response:",
        ),
        {"instruction": "instruction", "input": "input"}, "output", ("input",),
    ),
}
_ROLES = {
    "vertex_chat": ("author", {"user": "user", "assistant": "assistant", "model": "assistant"}),
    "openai_chat": ("role", {"system": "system", "user": "user", "assistant": "assistant"}),
}
_SHAPES_TEXT = (
    '{"text_input", "output"} (Gemini pairs), {"input_text", "output_text"} (Vertex text), '
    '{"context"?, "messages": [{"author", "content"}]} (Vertex chat), '
    '{"messages": [{"role", "content"}]} (OpenAI chat), {"instruction", "input"?, "output"} '
    '(Alpaca), or text keys of your own plus "output" (structured)'
)


@dataclass
class _Rows:
    """Where problems go while mapping JSON records; ``kind`` is 'Line' (JSONL) or 'Item'."""

    kind: str
    name: str
    limits: DatasetLimits
    problems: list[Problem] = field(default_factory=list)

    @property
    def unit(self) -> str:
        return self.kind.lower()

    def add(self, severity, number: int, code: str, text: str, key: str | None = None) -> None:
        place = say(f"place.{self.unit}", n=number)
        self.problems.append(Problem(severity, code, f"{place[:1].upper()}{place[1:]}: {text}",
                                     number, key))

    def text(self, number: int, key: str, value, what: str) -> str | None:
        """A JSON value as text (numbers converted); None, with an error, for lists/objects."""
        if isinstance(value, str):
            if len(value) > self.limits.max_field_chars:
                raise UnreadableFileError(say(
                    "json.text_too_long", name=self.name, most=self.limits.max_field_chars,
                    place=say(f"place.{self.unit}", n=number), remove=say(f"remove.{self.unit}")))
            return _valid_unicode(value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return cell_text(value)
        self.add("error", number, "not_text",
                 say("json.not_text", what=what, kind=_json_kind(value)), key)
        return None


def _valid_unicode(text: str) -> str:
    """JSON may escape lone surrogates ('\\ud800'), which cannot be stored: replace them."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _json_kind(value) -> str:
    """``an object``, ``a list``...: what a JSON value is, in the reader's language."""
    if isinstance(value, dict):
        kind = "object"
    elif isinstance(value, list):
        kind = "list"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, bool):
        kind = "bool"
    else:
        kind = "null" if value is None else "number"
    return say(f"json.kind.{kind}")


def read_json(
    text: str, name: str, extension: str, limits: DatasetLimits, problems: list[Problem]
) -> tuple[str, str, Dataset, list[Problem]]:
    """(format id, label, dataset, problems) of a JSON or JSONL text; ``problems`` are those
    found so far (decoding), kept first. JSONL and text files are read line by line (as one
    document only if no line holds an object); .json files as one document, or as lines when
    the document is not valid JSON but starts with '{'."""
    stripped = text.lstrip()
    if not stripped:
        raise UnreadableFileError(say("json.empty", name=name))
    lines_first = extension in (".jsonl", ".ndjson", ".txt", "") and not stripped.startswith("[")
    if not lines_first:
        document, error = _parse_document(text)
        if error is None:
            return _from_document(document, name, limits, problems)
        if not stripped.startswith("{"):
            raise UnreadableFileError(say("json.invalid_document", name=name,
                                          error=_json_error(error, with_line=True))) from error
    rows = _Rows("Line", name, limits, list(problems))
    records = []
    cap = limits.max_examples * ROW_CAP_FACTOR
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if len(lines) > cap:
        raise UnreadableFileError(say("json.too_many_lines", name=name, cap=cap,
                                      most=limits.max_examples))
    for number, line in lines:
        try:
            records.append((number, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            rows.add("error", number, "invalid_json",
                     say("json.invalid_line", error=_json_error(exc)))
    if lines_first and not any(isinstance(v, dict) for _, v in records):
        document, error = _parse_document(text)
        if error is None:
            return _from_document(document, name, limits, problems)
    return _from_records(records, rows, "JSONL")


def _parse_document(text: str) -> tuple[object, Exception | None]:
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        return None, exc


def _from_document(document, name: str, limits: DatasetLimits, problems: list[Problem]):
    items = _document_items(document, name)
    rows = _Rows("Item", name, limits, list(problems))
    return _from_records(list(enumerate(items, start=1)), rows, "JSON")


def _json_error(exc: Exception, with_line: bool = False) -> str:
    if isinstance(exc, json.JSONDecodeError):
        where = f"line {exc.lineno}, column {exc.colno}" if with_line else f"column {exc.colno}"
        return f"{exc.msg} at {where}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number has too many digits"


def _document_items(document, name: str) -> list:
    """The examples of a JSON document: a list, {"examples": [...]}, Gemini's REST
    {"examples": {"examples": [...]}} (also inside tuningTask.trainingData), or one example."""
    value = document
    for key in ("tuningTask", "trainingData"):
        if isinstance(value, dict) and isinstance(value.get(key), dict):
            value = value[key]
    if isinstance(value, dict) and "examples" in value:
        value = value["examples"]
        if isinstance(value, dict) and "examples" in value:
            value = value["examples"]
    elif isinstance(value, dict) and _classify(value):
        value = [value]
    if not isinstance(value, list):
        raise UnreadableFileError(say("json.not_a_list", name=name, kind=_json_kind(value)))
    return value


def _classify(obj: dict) -> str | None:
    """The format an object's keys belong to, or None."""
    if "messages" in obj:
        messages = obj["messages"] if isinstance(obj["messages"], list) else []
        for message in messages:
            if isinstance(message, dict) and ("author" in message or "role" in message):
                return "vertex_chat" if "author" in message else "openai_chat"
        return "vertex_chat" if "context" in obj else "openai_chat"
    if "instruction" in obj:
        return "alpaca"
    if "text_input" in obj or "textInput" in obj:
        return "gemini_pairs"
    if "input_text" in obj or "output_text" in obj:
        return "vertex_text"
    if "output" in obj and len(obj) > 1:
        return "structured_jsonl"
    return None


def _from_records(
    records: list[tuple[int, object]], rows: _Rows, suffix: str
) -> tuple[str, str, Dataset, list[Problem]]:
    objects = []
    for number, value in records:
        if isinstance(value, dict):
            objects.append((number, value))
        else:
            rows.add("error", number, "not_object", say(f"json.not_object_{rows.unit}",
                                                        kind=_json_kind(value)))
    cap = rows.limits.max_examples * ROW_CAP_FACTOR
    if len(records) > cap:
        raise UnreadableFileError(say("json.too_many_items", name=rows.name, cap=cap,
                                      most=rows.limits.max_examples))
    if not objects:
        first = rows.problems[0].message if rows.problems else say("json.add_examples")
        raise UnreadableFileError(say("json.no_object", name=rows.name, first=first))
    counts = Counter(_classify(obj) for _, obj in objects)
    counts.pop(None, None)
    if not counts:
        keys = Counter(key for _, obj in objects for key in obj)
        found = ", ".join(f"'{k}'" for k, _ in keys.most_common(10)) or say("json.none")
        raise UnreadableFileError(say("json.no_format", name=rows.name, found=found,
                                      shapes=_SHAPES_TEXT))
    fmt = max(counts, key=lambda f: (counts[f], -_PRIORITY.index(f)))
    label = JSON_LABELS[fmt].removesuffix("JSONL") + suffix
    if fmt in _ROLES:
        template = CHAT_TEMPLATE
        known = {"messages", "context"} if fmt == "vertex_chat" else {"messages"}
        examples = [_chat_example(n, obj, fmt, rows) for n, obj in objects]
    else:
        template, inputs, output, optional, aliases = _field_shape(fmt, objects)
        known = set(inputs) | {output} | set(aliases)
        examples = [_field_example(n, obj, inputs, output, optional, aliases, rows, fmt)
                    for n, obj in objects]
    _report_unknown_keys(objects, known, label, fmt, rows)
    kept = tuple(e for e in examples if e is not None)
    if len(objects) > rows.limits.max_examples:
        rows.problems.append(Problem(
            "error", "too_many_rows",
            say("json.too_many_examples", examples=len(objects), most=rows.limits.max_examples),
        ))
    order = sorted(rows.problems, key=lambda p: (p.row is None, p.row or 0))  # stable: file order
    return fmt, label, Dataset(template, kept), order


def _field_shape(fmt: str, objects):
    """(template, {file key: field key}, output key, optional keys, {alias: file key})."""
    if fmt == "structured_jsonl":
        keys = list(dict.fromkeys(
            k for _, obj in objects if _classify(obj) == fmt for k in obj if k != "output"))
        taken: set[str] = set()
        fields = []
        for position, key in enumerate(keys, start=1):
            fields.append(InputField(field_key(key, position, taken), f"{key}:"))
            taken.add(fields[-1].key.lower())
        template = PromptTemplate("structured", "", tuple(fields), "output:")
        return template, {k: f.key for k, f in zip(keys, fields)}, "output", set(keys), {}
    template, inputs, output, optional = _FIELD_SHAPES[fmt]
    aliases = {}
    if fmt == "gemini_pairs":  # Gemini's REST API writes camelCase: textInput
        camel = sum("textInput" in o for _, o in objects) > sum(
            "text_input" in o for _, o in objects)
        inputs = {"textInput": "text_input"} if camel else inputs
        aliases = {"text_input": "textInput"} if camel else {"textInput": "text_input"}
    return template, inputs, output, set(optional), aliases


def _field_example(number, obj, inputs, output, optional, aliases, rows: _Rows, fmt):
    for alias, canonical in aliases.items():
        if alias in obj and canonical not in obj:
            obj = {**obj, canonical: obj[alias]}
    before = len(rows.problems)
    values = {}
    for key in [*inputs, output]:
        if key not in obj:
            if key in optional:
                values[key] = ""
                if fmt == "structured_jsonl":
                    rows.add("warning", number, "missing_key",
                             say("json.missing_optional", key=key), key)
                continue
            rows.add("error", number, "missing_key",
                     say("json.missing_key", key=key, remove=say(f"remove.{rows.unit}")), key)
            continue
        values[key] = rows.text(number, key, obj[key], f"'{key}'")
    if any(p.severity == "error" for p in rows.problems[before:]):
        return None
    fields = {inputs[k]: values[k] for k in inputs}
    return Example(fields, values[output], source=f"{rows.unit} {number}")


def _chat_example(number: int, obj: dict, fmt: str, rows: _Rows) -> Example | None:
    role_key, roles = _ROLES[fmt]
    if "messages" not in obj:
        rows.add("error", number, "missing_key",
                 say("json.missing_key", key="messages", remove=say(f"remove.{rows.unit}")),
                 "messages")
        return None
    if not isinstance(obj["messages"], list):
        rows.add("error", number, "bad_messages",
                 say("json.messages_not_list", kind=_json_kind(obj["messages"]),
                     remove=say(f"remove.{rows.unit}")), "messages")
        return None
    before = len(rows.problems)
    system = []
    if fmt == "vertex_chat":
        system.append(rows.text(number, "context", obj.get("context"), "'context'"))
    turns: list[Message] = []
    for position, message in enumerate(obj["messages"], start=1):
        if not isinstance(message, dict):
            rows.add("error", number, "bad_messages",
                     say("json.message_not_object", position=position, kind=_json_kind(message),
                         role_key=role_key), "messages")
            continue
        role = roles.get(message.get(role_key)) if isinstance(message.get(role_key), str) else None
        if role is None:
            names = [f"'{r}'" for r in roles if r != "model"]
            allowed = say("json.or", first=", ".join(names[:-1]), last=names[-1])
            if role_key in message:
                text = say("json.unknown_role", position=position, role_key=role_key,
                           role=message[role_key], allowed=allowed)
            else:
                text = say("json.no_role", position=position, role_key=role_key, allowed=allowed)
            rows.add("error", number, "unknown_role", text, role_key)
            continue
        if "content" not in message:
            rows.add("error", number, "missing_key",
                     say("json.no_content", position=position), "content")
            continue
        content = rows.text(number, "content", message["content"],
                            say("json.content_of", position=position))
        if role == "system" and turns:
            rows.add("error", number, "late_system", say("json.late_system", position=position),
                     role_key)
        elif role == "system":
            system.append(content)
        else:
            turns.append(Message(role, content or ""))
    if len(rows.problems) > before:
        return None
    if not turns or turns[-1].role != "assistant":
        rows.add("error", number, "no_answer",
                 say("json.no_answer", remove=say(f"remove.{rows.unit}")))
        return None
    history, user = turns[:-1], ""
    if history and history[-1].role == "user":
        user = history.pop().content
    fields = {"system": "\n\n".join(s for s in system if s), "history": format_history(history),
              "user": user}
    return Example(fields, turns[-1].content, source=f"{rows.unit} {number}")


def _report_unknown_keys(objects, known: set[str], label: str, fmt: str, rows: _Rows) -> None:
    """One problem per ignored key, at its first line, with how often it occurs."""
    seen: dict[str, list[int]] = {}
    for number, obj in objects:
        for key in obj:
            if key not in known:
                seen.setdefault(key, [number, 0])[1] += 1
    severity = "info" if fmt == "vertex_text" else "warning"
    for key, (first, count) in seen.items():
        rows.add(severity, first, "unknown_key",
                 say("json.unknown_key", key=key, label=label, found=count_text(count, rows.unit)),
                 key)
