"""Reading a request's JSON and refusing it in Google's shape: ``ApiError`` carries Google's
status name (INVALID_ARGUMENT, NOT_FOUND, ...) and a message that starts with the field's path
(``tuningTask.hyperparameters.epochCount: ...``). Field names are read in either proto3 JSON
spelling (``textInput`` or ``text_input``)."""

from __future__ import annotations

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

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.status]

    def to_json(self) -> dict:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


# --- reading a request's JSON ------------------------------------------------------------------


def check_keys(obj, path: str, known: Sequence[str], ignored: Sequence[str] = ()) -> dict:
    """``obj`` as a dict with only ``known`` (or ``ignored``) keys; ApiError naming the first
    unknown one, the way Google's JSON parser does."""
    if not isinstance(obj, dict):
        raise invalid(f"{path or 'The request body'} must be a JSON object, not {_kind(obj)}.")
    found = {}
    for key, value in obj.items():
        key = camel(key)  # proto3 JSON accepts both spellings: text_input is textInput
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
    if isinstance(value, str) and whole:  # proto3 JSON may write int64 as a string
        try:
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{where} must be a {'whole ' if whole else ''}number, not {_kind(value)}.")
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
