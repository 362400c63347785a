"""The Datasets tab's layout: import a file or pasted rows, map columns, edit the structured
prompt and the grid of examples, watch the preview and the validation report, save versions,
export. Its events are in ``studio.datasets_events``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from studio import dataset_view as view
from studio.context import StudioContext
from studio.i18n import t
from training.core.dataset import PromptTemplate
from training.data import formats
from training.data.report import Problem

SAMPLE_FILE = Path(__file__).resolve().parent.parent / "statics" / "samples" / "support_tickets.csv"
UPLOAD_TYPES = [".csv", ".tsv", ".txt", ".xlsx", ".json", ".jsonl"]


@dataclass(frozen=True)
class Source:
    """Where the rows in the editor came from (kept in a gr.State between events)."""

    label: str = ""
    format: str = ""
    upload_id: int | None = None
    table: formats.Table | None = None
    problems: tuple[Problem, ...] = ()
    raw: bytes | None = None  # the uploaded bytes, to re-read another sheet
    filename: str = ""


@dataclass
class Widgets:
    template: gr.State
    source: gr.State
    selected: gr.State
    kind: gr.Radio
    preamble: gr.Textbox
    fields: gr.Dataframe
    output_label: gr.Textbox
    grid: gr.Dataframe
    mapping: gr.Group
    sheet: gr.Dropdown
    inputs: gr.Dropdown
    output: gr.Dropdown
    mapping_preview: gr.Markdown
    detected: gr.Markdown
    report: gr.Markdown
    preview: gr.HTML
    preview_row: gr.Number
    model: gr.Dropdown
    name: gr.Textbox
    upload: gr.File
    pasted: gr.Textbox
    paste_button: gr.Button
    append_button: gr.Button
    saved: gr.Dropdown
    version: gr.Number
    open_button: gr.Button
    empty_button: gr.Button
    sample_button: gr.Button
    add_button: gr.Button
    duplicate_button: gr.Button
    delete_button: gr.Button
    save_button: gr.Button
    saved_message: gr.Markdown
    export_format: gr.Radio
    export_button: gr.Button
    export_file: gr.File


def build(ctx: StudioContext) -> Widgets:
    """Lay out the tab; ``datasets_events.wire`` gives it its behaviour."""
    template_state = gr.State(PromptTemplate().to_dict())
    source_state = gr.State(Source())
    selected = gr.State(0)

    with gr.Row():
        with gr.Column(scale=2):
            gr.Markdown(f"### {t('data.import')}")
            upload = gr.File(label=t("data.upload"), file_types=UPLOAD_TYPES, elem_id="upload")
            with gr.Accordion(t("data.paste"), open=False):
                pasted = gr.Textbox(lines=5, show_label=False, elem_id="paste-box")
                with gr.Row():
                    paste_button = gr.Button(t("data.paste_button"), size="sm", elem_id="paste-new")
                    append_button = gr.Button(t("data.paste_append"), size="sm", elem_id="paste-append")
        with gr.Column(scale=1):
            gr.Markdown(f"### {t('data.open')}")
            saved = gr.Dropdown(label=t("data.saved"), choices=saved_choices(ctx), elem_id="saved-datasets")
            version = gr.Number(label=t("data.version"), precision=0, minimum=0, value=0,
                                info=t("data.version_info"))
            open_button = gr.Button(t("data.open_button"), size="sm")
            with gr.Row():
                empty_button = gr.Button(t("data.new_empty"), size="sm")
                sample_button = gr.Button(t("data.sample"), size="sm")
    detected = gr.Markdown(elem_id="detected")
    gr.Markdown(t("data.limits"), elem_classes=["limits"])

    with gr.Group(visible=False, elem_id="mapping") as mapping:
        gr.Markdown(f"### {t('data.mapping')}")
        with gr.Row():
            sheet = gr.Dropdown(label=t("data.sheet"), visible=False, elem_id="sheet")
            inputs = gr.Dropdown(label=t("data.inputs"), multiselect=True, elem_id="map-inputs")
            output = gr.Dropdown(label=t("data.output"), elem_id="map-output")
        mapping_preview = gr.Markdown(label=t("data.mapping_preview"), elem_id="mapping-preview")

    gr.Markdown(f"### {t('data.prompt')}")
    with gr.Row():
        with gr.Column(scale=3):
            kind = gr.Radio([(t("data.kind_structured"), "structured"), (t("data.kind_chat"), "chat")],
                            value="structured", show_label=False,
                            interactive=False, elem_id="kind")
            preamble = gr.Textbox(label=t("data.preamble"), lines=2, elem_id="preamble")
        with gr.Column(scale=2):
            fields = gr.Dataframe(value=view.field_rows(PromptTemplate()), headers=["field", "label"],
                                  type="array", interactive=True, label=t("data.fields"),
                                  row_count=1, column_count=2, elem_id="fields")
            output_label = gr.Textbox(label=t("data.output_label"), value="output:", elem_id="output-label")

    gr.Markdown(f"### {t('data.examples')}")
    grid = gr.Dataframe(value=[["", ""]], headers=list(PromptTemplate().columns), type="array",
                        interactive=True, wrap=True, show_row_numbers=True, max_height=420,
                        label=t("data.grid"), elem_id="grid")
    with gr.Row():
        add_button = gr.Button(t("data.add_row"), size="sm", elem_id="add-row")
        duplicate_button = gr.Button(t("data.duplicate_row"), size="sm", elem_id="duplicate-row")
        delete_button = gr.Button(t("data.delete_row"), size="sm", elem_id="delete-row")

    with gr.Row():
        with gr.Column(scale=3):
            gr.Markdown(f"### {t('data.preview')}")
            with gr.Row():
                preview_row = gr.Number(label=t("data.preview_row"), value=1, precision=0, minimum=1,
                                        elem_id="preview-row")
                model = gr.Dropdown(label=t("data.token_model"), choices=ctx.base_model_names(),
                                    value=ctx.base_model_names()[0], allow_custom_value=True,
                                    elem_id="token-model")
            preview = gr.HTML(elem_id="preview")
        with gr.Column(scale=2):
            gr.Markdown(f"### {t('data.report')}")
            report = gr.Markdown(elem_id="report")

    with gr.Row():
        with gr.Column():
            gr.Markdown(f"### {t('data.save')}")
            name = gr.Textbox(label=t("data.name"), elem_id="dataset-name")
            save_button = gr.Button(t("data.save_button"), variant="primary", elem_id="save")
            saved_message = gr.Markdown(elem_id="save-message")
        with gr.Column():
            gr.Markdown(f"### {t('data.export')}")
            export_format = gr.Radio(["csv", "xlsx", "jsonl"], value="csv", label=t("data.export_format"))
            export_button = gr.Button(t("data.export_button"), elem_id="export")
            export_file = gr.File(label=t("data.export_file"), interactive=False, elem_id="export-file")

    return Widgets(template_state, source_state, selected, kind, preamble, fields, output_label,
                   grid, mapping, sheet, inputs, output, mapping_preview, detected, report,
                   preview, preview_row, model, name, upload, pasted, paste_button, append_button,
                   saved, version, open_button, empty_button, sample_button, add_button,
                   duplicate_button, delete_button, save_button, saved_message, export_format,
                   export_button, export_file)


def saved_choices(ctx: StudioContext) -> list[str]:
    return [d.name for d in ctx.store.list_datasets()]
