"""Helpers that turn domain objects into what the datasets tab shows (Markdown, HTML,
grid values) and grid values back into domain objects. No handlers, no state."""

from __future__ import annotations

import html
from typing import Sequence

import gradio as gr

from training.core.dataset import CHAT_TEMPLATE, Dataset, InputField, PromptTemplate, cell_text
from training.core.messages import say
from training.core.template import Segment, render_example, token_counts
from training.data.report import Problem, Report

_ICONS = {"error": "Error:", "warning": "Warning:", "info": "Note:"}
_MAX_LISTED = 60  # problems listed in the panel; the rest are counted


def template_from_editor(kind: str, preamble: str, field_rows, output_label: str) -> PromptTemplate:
    """The template described by the prompt editor's widgets."""
    if kind == "chat":
        return CHAT_TEMPLATE
    fields = []
    for row in _rows(field_rows):
        key = cell_text(row[0]).strip() if row else ""
        label = cell_text(row[1]) if len(row) > 1 else ""
        if key:
            fields.append(InputField(key, label))
    return PromptTemplate("structured", preamble or "", tuple(fields), output_label or "")


def field_rows(template: PromptTemplate) -> list[list[str]]:
    return [[f.key, f.label] for f in template.inputs] or [["input", "input:"]]


def grid_rows(value) -> list[list[str]]:
    """Grid value (list of lists, or a pandas DataFrame) as lists of strings."""
    return [[cell_text(c) for c in row] for row in _rows(value)]


def _rows(value) -> list[list]:
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):  # pandas DataFrame
        return value.values.tolist()
    if isinstance(value, dict):
        return list(value.get("data") or [])
    return [list(r) for r in value]


def reshape_rows(rows: list[list[str]], old_columns: Sequence[str], new_columns: Sequence[str]):
    """Keep cells when fields are renamed, added or removed: columns that keep their name keep
    their cells; a renamed column (same position, new name) keeps its cells too."""
    old_index = {name: i for i, name in enumerate(old_columns)}
    reshaped = []
    for row in rows:
        new_row = []
        for position, name in enumerate(new_columns):
            if name in old_index:
                source = old_index[name]
            elif position < len(old_columns) - 1 and old_columns[position] not in new_columns:
                source = position
            else:
                source = None
            new_row.append(row[source] if source is not None and source < len(row) else "")
        reshaped.append(new_row)
    return reshaped


def dataset_from_grid(template: PromptTemplate, value) -> Dataset:
    template.check()
    return Dataset.from_rows(template, grid_rows(value))


def report_markdown(report: Report, summary: str = "") -> str:
    lines = []
    if summary:
        lines.append(f"**{html.escape(summary)}**\n")
    errors, warnings = len(report.errors), len(report.warnings)
    if report.ok:
        head = "**" + say("report.ready", examples=report.examples) + "**"
    else:
        head = "**" + say("report.not_ready", examples=report.examples, errors=errors) + "**"
    if warnings:
        head += say("report.warnings", warnings=warnings)
    lines.append(head)
    if report.truncated_rows:
        shown = ", ".join(str(r) for r in report.truncated_rows[:20])
        more = "…" if len(report.truncated_rows) > 20 else ""
        lines.append("\n" + say("report.truncated", rows=shown + more))
    if report.token_counts:
        inputs = [a for a, _ in report.token_counts]
        outputs = [b for _, b in report.token_counts]
        lines.append("\n" + say("report.tokens", input_max=max(inputs),
                                 input_mean=sum(inputs) / len(inputs), output_max=max(outputs),
                                 output_mean=sum(outputs) / len(outputs)))
    listed = report.problems[:_MAX_LISTED]
    if listed:
        lines.append("")
        lines.extend(_problem_line(p) for p in listed)
    if len(report.problems) > _MAX_LISTED:
        lines.append("- " + say("report.more", more=len(report.problems) - _MAX_LISTED))
    return "\n".join(lines)


def _problem_line(problem: Problem) -> str:
    return f"- **{_ICONS.get(problem.severity, '')}** {html.escape(problem.message)}"


def preview_html(segments: Sequence[Segment], counts: tuple[int, int] | None, row: int) -> str:
    """The rendered example as the model sees it; the trained part (the answer) highlighted."""
    parts = []
    for segment in segments:
        text = html.escape(segment.text)
        parts.append(f'<mark class="trained">{text}</mark>' if segment.trained else text)
    body = "".join(parts)
    if counts is None:
        tokens = say("preview.tokens_pending")
    else:
        tokens = say("preview.tokens", row=row, input=counts[0], output=counts[1])
    return (
        f'<div class="preview-tokens">{html.escape(tokens)}</div>'
        f'<pre class="prompt-preview" id="prompt-preview">{body}</pre>'
        f'<div class="preview-legend"><mark class="trained">{say("preview.highlighted")}</mark>'
        f' = {say("preview.legend")}</div>'
    )


def empty_preview(message: str) -> str:
    return f'<div class="preview-tokens">{html.escape(message)}</div>'


def mapping_markdown(dataset: Dataset, rows: int = 3) -> str:
    """A table of the first rows as the mapping reads them: one column per field, then output."""
    if not dataset.examples:
        return "_" + say("preview.no_rows") + "_"
    template = dataset.template
    none = say("preview.no_label")
    heads = [f"{f.key} → {f.label or none}" for f in template.inputs]
    heads.append(f"output → {template.output_label or none}")
    lines = ["| " + " | ".join(_cell(h) for h in heads) + " |", "|" + "---|" * len(heads)]
    for example in dataset.examples[:rows]:
        cells = [example.fields.get(f.key, "") for f in template.inputs] + [example.output]
        lines.append("| " + " | ".join(_cell(c, 80) for c in cells) + " |")
    return "\n".join(lines)


def _cell(text: str, limit: int = 200) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def grid(rows, columns) -> gr.Dataframe:
    """A grid update with these columns, equally wide (cells wrap), so the output stays in view."""
    share = f"{100 / max(len(columns), 1):.2f}%"
    return gr.Dataframe(value=rows, headers=list(columns), column_widths=[share] * len(columns))


def preview(dataset: Dataset, row: int, tokenizer) -> str:
    if not dataset.examples:
        return empty_preview(say("preview.empty"))
    row = min(max(row, 0), len(dataset.examples) - 1)
    segments = render_example(dataset.template, dataset.examples[row], tokenizer)
    counts = token_counts([segments], tokenizer)[0] if tokenizer is not None else None
    return preview_html(segments, counts, row + 1)
