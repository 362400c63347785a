"""The studio's shell: header, language switch, and one tab per place an AI Studio user expects."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import datasets_tab, library_tab
from studio.context import StudioContext
from studio.i18n import t
from studio.locale import LANGUAGES, PICK_LANGUAGE_JS

STATICS = Path(__file__).resolve().parent.parent / "statics"
CSS = (STATICS / "style.css").read_text(encoding="utf-8")


def build_ui(ctx: StudioContext) -> gr.Blocks:
    with gr.Blocks(title="Tuning Studio") as demo:
        with gr.Row(elem_id="header"):
            with gr.Column(scale=5):
                gr.Markdown(f"## {t('app.title')}")
                gr.Markdown(t("app.tagline"), elem_classes=["tagline"])
            language = gr.Dropdown(LANGUAGES, value=None, label=t("language"), scale=1,
                                   min_width=140, elem_id="language")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab(t("tab.data"), id="data", elem_id="tab-data"):
                data = datasets_tab.build(ctx)
            with gr.Tab(t("tab.new"), id="new", elem_id="tab-new"):
                gr.Markdown(t("new.intro"))
            with gr.Tab(t("tab.library"), id="library", elem_id="tab-library") as library:
                datasets_grid, refresh = library_tab.build(ctx)
            with gr.Tab(t("tab.playground"), id="playground", elem_id="tab-playground"):
                gr.Markdown(t("playground.intro"))
        library.select(refresh, None, datasets_grid)
        language.input(None, language, None, js=PICK_LANGUAGE_JS)
    demo.data_widgets = data  # for tests and later tabs
    return demo
