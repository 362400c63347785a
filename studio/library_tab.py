"""My Library: every saved dataset (and, with the tuning issue, every job and tuned model)."""

from __future__ import annotations

import gradio as gr

from studio.context import StudioContext
from studio.errors import user_errors
from studio.i18n import t

DATASET_HEADERS = ["name", "latest version", "examples", "format", "updated"]


def dataset_rows(ctx: StudioContext) -> list[list]:
    return [[d.name, d.latest_version, d.example_count, d.format, d.updated_at]
            for d in ctx.store.list_datasets()]


def build(ctx: StudioContext):
    """Returns (datasets grid, refresh function) so other tabs can refresh the list."""
    gr.Markdown(f"### {t('library.models')}")
    gr.Markdown(t("library.no_models"))
    gr.Markdown(f"### {t('library.datasets')}")
    datasets = gr.Dataframe(value=dataset_rows(ctx) or None, headers=DATASET_HEADERS,
                            type="array", interactive=False, elem_id="library-datasets")
    refresh = gr.Button(t("library.refresh"), size="sm", elem_id="library-refresh")

    @user_errors
    def on_refresh():
        return dataset_rows(ctx)

    refresh.click(on_refresh, None, datasets)
    return datasets, on_refresh
