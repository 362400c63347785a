"""Reading a request's JSON and refusing it in Google's shape: ``ApiError`` carries Google's
status name (INVALID_ARGUMENT, NOT_FOUND, ...) and a message that starts with the field's path
(``tuningTask.hyperparameters.epochCount: ...``). Field names are read in either proto3 JSON
spelling (``textInput`` or ``text_input``)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Mapping, Sequence

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500,
    "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
}
RPC_CODE = {
    "CANCELLED": 1, "INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
    "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}
"""google.rpc.Code numbers, for an operation's ``error``."""


class ApiError(Exception):
    """A request the API refuses: Google's status name and a message naming the field."""

    def __init__(self, status: str, message: str, http_status: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = http_status or HTTP_STATUS[status]
        """Google's code for the status, unless the studio has a truer one (507: disk full)."""

    def to_json(self) -> dict:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


# --- reading a request's JSON ------------------------------------------------------------------

MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and lists in a request body (Google's deepest request is under 10)."""

MAX_INTEGER_DIGITS = 20
"""Longest whole number in a request body (a signed 64-bit integer has at most 19 digits)."""


def parse_body(data: bytes):
    """The one reader of every request body: JSON whose every value the studio can hold, or
    ApiError (INVALID_ARGUMENT) naming the place that is not. Refused: malformed JSON, nesting
    deeper than MAX_JSON_DEPTH, whole numbers longer than MAX_INTEGER_DIGITS digits, NaN and
    Infinity, and text with lone surrogates (``\\ud800``), which no UTF-8 file or tokenizer takes.
    An empty body is ``{}``."""
    if not data.strip():
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid(f"Invalid JSON payload received: the body is not UTF-8 ({error.reason} at "
                      f"byte {error.start}). Send a JSON object encoded as UTF-8.") from None
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except ApiError:
        raise
    except RecursionError:
        raise invalid(f"Invalid JSON payload received: objects and lists are nested more than "
                      f"{MAX_JSON_DEPTH} levels deep. Send the request's documented shape.") from None
    except ValueError as error:
        if "integer string conversion" in str(error):  # Python's own bound, 4300 digits
            raise invalid(f"Invalid JSON payload received: a whole number has thousands of "
                          f"digits: numbers here have at most {MAX_INTEGER_DIGITS}.") from None
        raise invalid(f"Invalid JSON payload received: {error}. Send a JSON object with "
                      "Content-Type: application/json.") from None
    _check_values(body)
    return body


def _no_constant(name: str):
    raise invalid(f"Invalid JSON payload received: {name} is not a JSON number. Send a finite "
                  "number.")


def _check_values(body) -> None:
    """Walk the parsed body (without recursion) for nesting deeper than MAX_JSON_DEPTH, text a
    UTF-8 file cannot hold and floats that overflowed to infinity; ApiError naming the path."""
    pending = [("", body, 0)]
    while pending:
        path, value, depth = pending.pop()
        if isinstance(value, (dict, list)) and depth >= MAX_JSON_DEPTH:
            raise invalid(f"{path or 'The request body'} is nested more than {MAX_JSON_DEPTH} "
                          "levels deep: send the request's documented shape.")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"A field name in {path or 'the request body'}")
                pending.append((f"{path}.{camel(key)}" if path else camel(key), item, depth + 1))
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item, depth + 1)
                           for index, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, path or "The request body")
        elif isinstance(value, float) and not math.isfinite(value):
            raise invalid(f"{path or 'The request body'} is too large a number: send a finite "
                          "number.")
        elif isinstance(value, int) and abs(value) >= 10 ** MAX_INTEGER_DIGITS:
            raise invalid(f"{path or 'The request body'} is a whole number of "
                          f"{len(str(abs(value)))} digits: numbers here have at most "
                          f"{MAX_INTEGER_DIGITS}.")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise invalid(f"{where} holds a lone surrogate (\\u{ord(text[error.start]):04x} at "
                      f"character {error.start + 1}), which is not text: send valid Unicode."
                      ) from None


def check_keys(obj, path: str, known: Sequence[str], ignored: Sequence[str] = (), *,
               proto: bool = True) -> dict:
    """``obj`` as a dict with only ``known`` (or ``ignored``) keys; ApiError naming the first
    unknown one, the way Google's JSON parser does. ``proto``: keys in either proto3 JSON
    spelling (``text_input`` is ``textInput``); else exactly as given (OpenAI's snake_case)."""
    if not isinstance(obj, dict):
        raise invalid(f"{path or 'The request body'} must be a JSON object, not {_kind(obj)}.")
    found = {}
    for key, value in obj.items():
        key = camel(key) if proto else key
        if key not in known and key not in ignored:
            where = f"{path}.{key}" if path else key
            raise invalid(f"Unknown field {where}: the fields here are {', '.join(known)}.")
        found[key] = value
    return found


def text_value(obj: Mapping, key: str, path: str, *, required: bool = False,
               max_chars: int | None = None) -> str | None:
    value = obj.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        if required:
            raise invalid(f"{where} is missing: it is required.")
        return None
    if not isinstance(value, str):
        raise invalid(f"{where} must be a string, not {_kind(value)}.")
    if max_chars is not None and len(value) > max_chars:
        raise invalid(f"{where} is {len(value)} characters long: use at most {max_chars}.")
    return value


def number_value(obj: Mapping, key: str, path: str, *, whole: bool = False) -> float | int | None:
    value = obj.get(key)
    where = f"{path}.{key}" if path else key
    if value is None:
        return None
    if isinstance(value, str) and whole and len(value) <= MAX_INTEGER_DIGITS + 1:
        try:  # proto3 JSON may write int64 as a string
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{where} must be a {'whole ' if whole else ''}number, not {_kind(value)}.")
    if isinstance(value, int) and abs(value) >= 10 ** MAX_INTEGER_DIGITS:
        raise invalid(f"{where} has {len(str(abs(value)))} digits: use at most "
                      f"{MAX_INTEGER_DIGITS}.")
    if whole:
        if not float(value).is_integer():
            raise invalid(f"{where} is {value}: use a whole number.")
        return int(value)
    return float(value)


def checked_numbers(obj: Mapping, path: str, names: Mapping[str, tuple[str, bool]],
                    blank) -> dict:
    """The numbers of ``obj`` named in ``names`` (JSON key -> (field of ``blank``'s dataclass,
    whole number)), by field name, each checked alone by ``blank``'s own ``problems()``; ApiError
    naming the first bad one (``path.key: <the setting's message>``)."""
    found = {}
    for key, (name, whole) in names.items():
        value = number_value(obj, key, path, whole=whole)
        if value is None:
            continue
        problems = replace(blank, **{name: value}).problems()
        if problems:
            raise invalid(f"{f'{path}.' if path else ''}{key}: {problems[0]}")
        found[name] = value
    return found


def _kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
