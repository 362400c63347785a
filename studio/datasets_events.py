"""The Datasets tab's events: loading a file, pasted rows, a saved version, the sample or an
empty dataset into the editor; editing the prompt and the grid (the preview and the validation
report follow); saving versions and exporting.

Handlers are thin: parsing, validation, rendering and storage live in training/ and storage/.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import dataset_view as view
from studio.context import StudioContext
from studio.datasets_tab import SAMPLE_FILE, Source, Widgets, saved_choices
from studio.errors import user_errors
from training.core.dataset import Dataset, PromptTemplate
from training.core.errors import DatasetError, StudioError
from training.core.layout import exports_dir
from training.core.messages import say
from training.data import export, formats
from training.data.validation import validate

# Editor events run one at a time, in order, keeping only the newest waiting one: typing fires an
# event per keystroke, and out-of-order answers would show a stale preview.
IN_ORDER = dict(concurrency_id="dataset-editor", concurrency_limit=1, trigger_mode="always_last")


def wire(ctx: StudioContext, w: Widgets) -> None:
    """Give the Datasets tab's widgets their behaviour."""
    # Everything a "load" changes: every loader returns a value for each of these, by widget.
    loaded = [w.template, w.source, w.selected, w.kind, w.preamble, w.fields, w.output_label,
              w.grid, w.mapping, w.sheet, w.inputs, w.output, w.mapping_preview, w.detected,
              w.report, w.preview, w.preview_row, w.name]
    shown = [w.report, w.preview]

    def show(template: PromptTemplate, rows, row: int, model: str, source: Source):
        """(report Markdown, preview HTML) for the current editor content."""
        dataset = view.dataset_from_grid(template, rows)
        tokenizer = ctx.tokenizer(model)
        report = validate(dataset, ctx.limits, tokenizer=tokenizer, file_problems=source.problems)
        return view.report_markdown(report, source.label), view.preview(dataset, row, tokenizer)

    def load(dataset: Dataset, source: Source, model: str, name: str = "", output_column=None):
        template = dataset.template
        rows = dataset.rows() or [[""] * len(template.columns)]
        table = source.table
        mapping_on = table is not None
        guess_inputs = [f.key for f in template.inputs] if mapping_on else []
        report, preview = _safe_show(show, template, rows, 0, model, source)
        return {
            w.template: template.to_dict(), w.source: source, w.selected: 0, w.kind: template.kind,
            w.preamble: gr.Textbox(value=template.preamble, visible=template.kind == "structured"),
            w.fields: gr.Dataframe(value=view.field_rows(template),
                                   visible=template.kind == "structured"),
            w.output_label: gr.Textbox(value=template.output_label,
                                       visible=template.kind == "structured"),
            w.grid: view.grid(rows, template.columns),
            w.mapping: gr.Group(visible=mapping_on),
            w.sheet: gr.Dropdown(choices=list(table.sheet_names) if table else [],
                                 value=table.sheet if table else None,
                                 visible=bool(table and len(table.sheet_names) > 1)),
            w.inputs: gr.Dropdown(choices=list(table.header) if table else [], value=guess_inputs),
            w.output: gr.Dropdown(choices=list(table.header) if table else [], value=output_column),
            w.mapping_preview: view.mapping_markdown(dataset) if mapping_on else "",
            w.detected: f"**{say('data.detected')}:** {source.label}" if source.label else "",
            w.report: report, w.preview: preview, w.preview_row: 1, w.name: name,
        }

    @user_errors
    def on_upload(path, model):
        if not path:
            raise gr.Error(say("ui.choose_file"))
        data = Path(path).read_bytes()
        filename = Path(path).name
        result = formats.read_bytes(data, filename, ctx.limits)
        upload_row = ctx.store.save_upload(filename, data, result.format)
        source = Source(result.summary, result.format, upload_row.id, result.table,
                        tuple(result.problems), data, filename)
        return _load_result(load, result, source, model, Path(filename).stem)

    @user_errors
    def on_paste(text, model):
        result = formats.read_pasted(text or "", ctx.limits)
        source = Source(result.summary, result.format, None, result.table, tuple(result.problems))
        return _load_result(load, result, source, model)

    @user_errors
    def on_sheet(sheet_name, source: Source, model):
        if not source.raw or not sheet_name or (source.table and source.table.sheet == sheet_name):
            raise gr.Error(say("ui.choose_sheet"))
        result = formats.read_bytes(source.raw, source.filename, ctx.limits, sheet=sheet_name)
        new_source = Source(result.summary, result.format, source.upload_id, result.table,
                            tuple(result.problems), source.raw, source.filename)
        return _load_result(load, result, new_source, model, Path(source.filename).stem)

    @user_errors
    def on_mapping(input_columns, output_column, source: Source, model, name):
        if source.table is None:
            raise gr.Error(say("ui.mapping_needs_table"))
        if not input_columns or not output_column:
            raise gr.Error(say("ui.choose_columns"))
        dataset = formats.map_columns(source.table, input_columns, output_column)
        return load(dataset, source, model, name, output_column)

    @user_errors
    def on_open(dataset_name, version_number, model):
        if not dataset_name:
            raise gr.Error(say("ui.choose_saved"))
        stored = ctx.store.get_version(dataset_name, int(version_number) or None)
        label = f"{stored.name} version {stored.version}, {stored.example_count} examples"
        return load(stored.dataset, Source(label, stored.format, stored.upload_id), model, stored.name)

    @user_errors
    def on_empty(model):
        template = PromptTemplate()
        return load(Dataset(template), Source(), model)

    @user_errors
    def on_sample(model):
        result = formats.read_file(SAMPLE_FILE, ctx.limits)
        source = Source(result.summary, result.format, None, result.table, tuple(result.problems))
        return _load_result(load, result, source, model, "support-tickets")

    model_in = [w.model]
    w.upload.upload(on_upload, [w.upload] + model_in, loaded, **IN_ORDER)
    w.paste_button.click(on_paste, [w.pasted] + model_in, loaded, **IN_ORDER)
    w.sheet.input(on_sheet, [w.sheet, w.source] + model_in, loaded, **IN_ORDER)
    mapping_in = [w.inputs, w.output, w.source] + model_in + [w.name]
    w.inputs.input(on_mapping, mapping_in, loaded, **IN_ORDER)
    w.output.input(on_mapping, mapping_in, loaded, **IN_ORDER)
    w.open_button.click(on_open, [w.saved, w.version] + model_in, loaded, **IN_ORDER)
    w.empty_button.click(on_empty, model_in, loaded, **IN_ORDER)
    w.sample_button.click(on_sample, model_in, loaded, **IN_ORDER)

    # Editing: the grid and the prompt editor re-validate and re-render the preview.
    @user_errors
    def on_edit(template_dict, rows, row, model, source):
        return show(PromptTemplate.from_dict(template_dict), rows, int(row or 1) - 1, model, source)

    edit_in = [w.template, w.grid, w.preview_row, w.model, w.source]
    w.grid.input(on_edit, edit_in, shown, **IN_ORDER)
    w.preview_row.input(on_edit, edit_in, shown, **IN_ORDER)
    w.model.input(on_edit, edit_in, shown, **IN_ORDER)

    @user_errors
    def on_select(evt: gr.SelectData, template_dict, rows, model, source):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index or 0)
        report, preview = show(PromptTemplate.from_dict(template_dict), rows, row, model, source)
        return row, row + 1, report, preview

    w.grid.select(on_select, [w.template, w.grid, w.model, w.source],
                  [w.selected, w.preview_row] + shown, **IN_ORDER)

    @user_errors
    def on_prompt(kind, preamble, field_value, output_label, template_dict, rows, row, model, source):
        old = PromptTemplate.from_dict(template_dict)
        try:
            new, reshaped = editor_content(kind, preamble, field_value, output_label,
                                           template_dict, rows)
        except DatasetError as error:  # keep the user's grid; say what is wrong with the fields
            return template_dict, gr.Dataframe(), f"**Error:** {error}", gr.HTML()
        report, preview = show(new, reshaped, int(row or 1) - 1, model, source)
        grid_update = view.grid(reshaped, new.columns) \
            if new.columns != old.columns else gr.Dataframe()
        return new.to_dict(), grid_update, report, preview

    prompt_in = [w.kind, w.preamble, w.fields, w.output_label, w.template, w.grid, w.preview_row,
                 w.model, w.source]
    prompt_out = [w.template, w.grid] + shown
    # Typing fires ``input``; a paste or an autofill may not, so leaving the box re-reads it too
    # (and saving and exporting read the boxes themselves, never only the last preview's state).
    for box in (w.preamble, w.output_label):
        box.input(on_prompt, prompt_in, prompt_out, **IN_ORDER)
        box.blur(on_prompt, prompt_in, prompt_out, **IN_ORDER)
    w.fields.input(on_prompt, prompt_in, prompt_out, **IN_ORDER)

    # Row actions on the selected row.
    def row_action(action):
        @user_errors
        def handler(template_dict, rows, selected_row, model, source):
            template = PromptTemplate.from_dict(template_dict)
            rows = view.grid_rows(rows)
            width = len(template.columns)
            index = min(max(int(selected_row or 0), 0), max(len(rows) - 1, 0))
            if action == "add":
                rows.append([""] * width)
                index = len(rows) - 1
            elif action == "duplicate" and rows:
                rows.insert(index + 1, list(rows[index]))
                index += 1
            elif action == "delete" and rows:
                del rows[index]
                rows = rows or [[""] * width]
                index = min(index, len(rows) - 1)
            report, preview = show(template, rows, index, model, source)
            return view.grid(rows, template.columns), index, index + 1, report, preview

        return handler

    @user_errors
    def on_append(text, template_dict, rows, model, source):
        template = PromptTemplate.from_dict(template_dict)
        current = [r for r in view.grid_rows(rows) if any(c.strip() for c in r)]
        added = formats.pasted_rows(text, template.columns, ctx.limits)
        width = len(template.columns)
        new_rows = current + [r + [""] * (width - len(r)) for r in added]
        report, preview = show(template, new_rows, len(current), model, source)
        gr.Info(say("ui.appended", count=len(added)))
        return (view.grid(new_rows, template.columns), len(current),
                len(current) + 1, report, preview)

    w.append_button.click(on_append, [w.pasted, w.template, w.grid, w.model, w.source],
                        [w.grid, w.selected, w.preview_row] + shown)

    row_in = [w.template, w.grid, w.selected, w.model, w.source]
    row_out = [w.grid, w.selected, w.preview_row] + shown
    w.add_button.click(row_action("add"), row_in, row_out, **IN_ORDER)
    w.duplicate_button.click(row_action("duplicate"), row_in, row_out, **IN_ORDER)
    w.delete_button.click(row_action("delete"), row_in, row_out, **IN_ORDER)

    editor_in = [w.kind, w.preamble, w.fields, w.output_label, w.template, w.grid]

    @user_errors
    def on_save(kind, preamble, field_value, output_label, template_dict, rows, dataset_name,
                source: Source, model):
        template, rows = editor_content(kind, preamble, field_value, output_label, template_dict,
                                        rows)
        dataset = view.dataset_from_grid(template, rows)
        if not dataset.examples:
            raise gr.Error(say("ui.nothing_to_save"))
        report = validate(dataset, ctx.limits, tokenizer=ctx.tokenizer(model))
        stored, saved = ctx.store.save_dataset_if_changed(
            dataset_name or "", dataset, format=source.format, upload_id=source.upload_id)
        message = say("data.saved" if saved else "data.unchanged", name=stored.name,
                      version=stored.version, examples=stored.example_count)
        if not report.ok:
            message += say("data.saved_with_errors", errors=len(report.errors))
        return message, gr.Dropdown(choices=saved_choices(ctx), value=stored.name), template.to_dict()

    # A second click while a save runs does nothing (trigger_mode "once").
    w.save_button.click(on_save, editor_in + [w.name, w.source, w.model],
                        [w.saved_message, w.saved, w.template], **dict(IN_ORDER, trigger_mode="once"))

    @user_errors
    def on_export(kind, preamble, field_value, output_label, template_dict, rows, fmt,
                  dataset_name):
        template, rows = editor_content(kind, preamble, field_value, output_label, template_dict,
                                        rows)
        dataset = view.dataset_from_grid(template, rows)
        if not dataset.examples:
            raise gr.Error(say("ui.nothing_to_export"))
        return str(export.export_file(dataset, fmt, exports_dir(ctx.data_dir),
                                      dataset_name or "dataset"))

    w.export_button.click(on_export, editor_in + [w.export_format, w.name], w.export_file,
                          **IN_ORDER)


def editor_content(kind, preamble, field_value, output_label, template_dict, rows):
    """The prompt template as the editor's boxes hold it now, and the grid's rows in its columns
    (the grid still has the columns of ``template_dict``, the last template applied to it).
    DatasetError when the fields are unusable."""
    old = PromptTemplate.from_dict(template_dict)
    new = view.template_from_editor(kind, preamble, field_value, output_label)
    new.check()
    return new, view.reshape_rows(view.grid_rows(rows), old.columns, new.columns)


def _safe_show(show, *args):
    """A load must not fail because the report could not be computed (e.g. a base model that
    cannot be loaded): the rows are shown and the report says why."""
    try:
        return show(*args)
    except StudioError as error:
        return f"**Error:** {error}", view.empty_preview("")


def _load_result(load, result: formats.ImportResult, source: Source, model: str, name: str = ""):
    """Load an import: JSON formats as they are, spreadsheets with the guessed column mapping."""
    if result.dataset is not None:
        return load(result.dataset, source, model, name)
    table = result.table
    if table is None or not table.header or not table.rows:
        raise DatasetError.of("data.no_rows")
    input_columns, output_column = formats.guess_mapping(table.header)
    if output_column is None or not input_columns:
        raise DatasetError.of("data.two_columns")
    return load(formats.map_columns(table, input_columns, output_column), source, model, name,
                output_column)
