"""Which XLSX cells hold dates, and what date an Excel serial number is.

A spreadsheet stores a date as a number of days (a serial) and shows it as a date only through
the cell's number format: ``c/@s`` indexes ``cellXfs`` in ``xl/styles.xml``, whose ``numFmtId``
is a built-in format or a custom one in ``numFmts``. The rules are openpyxl's, so a workbook
reads as it did with openpyxl. Pure functions: ``training.data.xlsx_reader`` reads the XML.
"""

from __future__ import annotations

import datetime as dt
import re

WINDOWS_EPOCH = dt.datetime(1899, 12, 30)
"""Day 0 of the 1900 date system (Excel's default; day 1 is 1 January 1900)."""

MAC_EPOCH = dt.datetime(1904, 1, 1)
"""Day 0 of the 1904 date system (``workbookPr date1904="1"``)."""

BUILTIN_DATE_FORMATS = {
    14: "mm-dd-yy", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss", 22: "m/d/yy h:mm", 45: "mm:ss",
    46: "[h]:mm:ss", 47: "mmss.0",
}
"""The built-in number formats (ECMA-376 18.8.30) that show a date or time; other built-in
ids show numbers or text. Locale-dependent ids (27-36, 50-58) read as numbers, as in openpyxl."""

_IGNORED_IN_FORMAT = re.compile(r'".*?"|\[(?!hh?\]|mm?\]|ss?\])[^\]]*\]')  # "x", [Red], [$-409]
_DATE_TOKEN = re.compile(r"(?<![_\\])[dmhysDMHYS]")
_DURATION_TOKEN = re.compile(
    r"\[hh?\](:mm(:ss(\.0*)?)?)?|\[mm?\](:ss(\.0*)?)?|\[ss?\](\.0*)?", re.IGNORECASE)
_ISO_DATE = re.compile(
    r"(?P<date>(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2}))?T?"
    r"(?P<time>(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(:(?P<second>\d{2})(?P<microsecond>\.\d{1,3})?)?)?Z?"
)
_ISO_DURATION = re.compile(
    r"PT((?P<hours>\d+)H)?((?P<minutes>\d+)M)?((?P<seconds>\d+(\.\d{1,3})?)S)?")


def is_date_format(code: str | None) -> bool:
    """Whether a number format shows a date or time: a d, m, y, h or s outside quoted text and
    [brackets] (but [h], [mm], [ss] count) in its first section; ``0.00`` and ``[Red]0`` do not."""
    if code is None:
        return False
    return _DATE_TOKEN.search(_IGNORED_IN_FORMAT.sub("", code.split(";")[0])) is not None


def is_duration_format(code: str | None) -> bool:
    """Whether a number format shows elapsed time, such as ``[h]:mm:ss``."""
    return code is not None and _DURATION_TOKEN.search(code.split(";")[0]) is not None


def date_styles(custom_formats: dict[int, str], cell_formats: list[int]):
    """(indexes of cell formats showing dates or times, those showing elapsed times), given
    the custom number formats by id and each cell format's number format id (``cellXfs``)."""
    dates, durations = set(), set()
    for index, number_format in enumerate(cell_formats):
        code = custom_formats.get(number_format, BUILTIN_DATE_FORMATS.get(number_format))
        if is_date_format(code):
            dates.add(index)
        if is_duration_format(code):
            durations.add(index)
    return frozenset(dates), frozenset(durations)


def number_value(text: str) -> int | float:
    """A numeric cell's text as a number: ``4`` is an int, ``4.0`` and ``1E3`` are floats."""
    if "." in text or "E" in text or "e" in text:
        return float(text)
    return int(text)


def excel_date(serial: float, epoch: dt.datetime, duration: bool = False):
    """An Excel serial as openpyxl reads it: a time of day below 1, else a datetime counted
    from ``epoch`` (1900 system: serials below 60 are moved a day for Excel's 29 February
    1900), or a ``timedelta`` for elapsed-time formats; ``#VALUE!`` when out of range."""
    try:
        if duration:
            span = dt.timedelta(days=serial)
            if span.microseconds:  # to the millisecond
                span = dt.timedelta(seconds=span.total_seconds() // 1,
                                    microseconds=round(span.microseconds, -3))
            return span
        day, fraction = divmod(serial, 1)
        since_midnight = dt.timedelta(milliseconds=round(fraction * 86_400_000))
        if 0 <= serial < 1 and since_midnight.days == 0:
            minutes, seconds = divmod(since_midnight.seconds, 60)
            hours, minutes = divmod(minutes, 60)
            return dt.time(hours, minutes, seconds, since_midnight.microseconds)
        if 0 < serial < 60 and epoch == WINDOWS_EPOCH:
            day += 1
        return epoch + dt.timedelta(days=day) + since_midnight
    except (OverflowError, ValueError):
        return "#VALUE!"


def iso_date(text: str):
    """A ``t="d"`` cell's ISO 8601 text as openpyxl reads it: a date, a time, a datetime, or a
    ``PT1H30M`` duration as a timedelta (ECMA-376 18.17.4)."""
    match = _ISO_DATE.match(text)
    if match and any(match.groups()):
        parts = {k: int(v) if v and k not in ("date", "time", "microsecond") else v
                 for k, v in match.groupdict(0).items()}
        microsecond = int(float(parts["microsecond"]) * 1_000_000) if parts["microsecond"] else 0
        if not parts["date"]:
            return dt.time(parts["hour"], parts["minute"], parts["second"], microsecond)
        if not parts["time"]:
            return dt.date(parts["year"], parts["month"], parts["day"])
        return dt.datetime(parts["year"], parts["month"], parts["day"], parts["hour"],
                           parts["minute"], parts["second"], microsecond)
    match = _ISO_DURATION.match(text)
    if match and any(match.groups()):
        return dt.timedelta(**{k: float(v) for k, v in match.groupdict(0).items()})
    raise ValueError(f"Invalid datetime value {text}")
