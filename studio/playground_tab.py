"""Playground: choose a base model or a ready tuned model. Prompting it with its own template,
streaming, compare and batch test arrive with the playground issue; "Open in playground" from My
Library already lands here with the model chosen."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.context import StudioContext
from studio.i18n import t


@dataclass
class Playground:
    model: gr.Dropdown


def model_choices(ctx: StudioContext) -> list[tuple[str, str]]:
    """Base models, then tuned models that have an adapter (ACTIVE, or partial)."""
    choices = [(f"{name} (base)", name) for name in ctx.base_model_names()]
    for job in ctx.store.list_jobs():
        if job.result_dir:
            label = f"{job.display_name} · {job.id}" + (" (partial)" if job.partial else "")
            choices.append((label, job.id))
    return choices


def refresh_models(ctx: StudioContext, select: str | None = None):
    choices = model_choices(ctx)
    values = [value for _, value in choices]
    return gr.Dropdown(choices=choices, value=select if select in values else gr.skip())


def build(ctx: StudioContext) -> Playground:
    gr.Markdown(t("playground.intro"))
    choices = model_choices(ctx)
    model = gr.Dropdown(choices, value=choices[0][1] if choices else None,
                        label=t("playground.model"), elem_id="playground-model")
    return Playground(model)
