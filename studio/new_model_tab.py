"""New tuned model: pick a saved dataset and a base model, set AI Studio's hyperparameters (the
advanced Vertex ones folded away), see a measured estimate, and start a job that runs in the
background. Defaults come from TuningConfig, so the form and the trainer never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import gradio as gr

from studio.context import StudioContext
from studio.errors import user_errors
from studio.i18n import t
from training.core.config import SETTINGS, ConfigError, TuningConfig
from training.core.errors import DatasetError
from training.core.messages import say

DEFAULTS = TuningConfig()


REQUEST_FIELDS = ("display_name", "description", "base_model", "dataset", "version", "eval_dataset")
"""The form's widgets besides the settings: what the job is called, on what it trains."""

LABELS = {
    "epochs": "new.epochs", "batch_size": "new.batch_size", "learning_rate": "new.learning_rate",
    "learning_rate_multiplier": "new.multiplier", "lora_rank": "new.lora_rank",
    "lora_alpha": "new.lora_alpha", "lora_dropout": "new.lora_dropout",
    "target_modules": "new.target_modules", "max_input_tokens": "new.max_input_tokens",
    "max_output_tokens": "new.max_output_tokens", "eval_rows": "new.eval_rows",
    "eval_interval_steps": "new.eval_interval", "early_stopping": "new.early_stopping",
    "early_stopping_patience": "new.patience", "select_best_checkpoint": "new.best_checkpoint",
    "seed": "new.seed", "precision": "new.precision", "processes": "new.processes",
    "shard_model": "new.shard_model",
}
"""The message key of each setting's label."""


@dataclass
class Form:
    request: dict[str, gr.components.Component]
    """``REQUEST_FIELDS`` by name."""
    settings: dict[str, gr.components.Component]
    """One widget per TuningConfig field, by field name."""
    estimate_button: gr.Button
    estimate: gr.Markdown
    tune_button: gr.Button
    message: gr.Markdown

    def __getattr__(self, name: str):  # form.dataset, form.epochs, ...
        for group in ("request", "settings"):
            widgets = self.__dict__.get(group, {})
            if name in widgets:
                return widgets[name]
        raise AttributeError(name)

    @property
    def widgets(self) -> list:
        """Every widget a request is read from (Gradio ``inputs`` and ``outputs``)."""
        return list(self.request.values()) + list(self.settings.values())

    def read(self, data: dict) -> tuple[dict, dict]:
        """Request values and setting values by name, from a handler's ``{widget: value}``."""
        return ({name: data.get(w) for name, w in self.request.items()},
                {name: data.get(w) for name, w in self.settings.items()})

    def fill(self, request: dict, settings: dict) -> dict:
        """``{widget: value}`` for a handler's outputs, from values by name."""
        return {**{self.request[n]: v for n, v in request.items()},
                **{self.settings[n]: v for n, v in settings.items()}}


def config_from_values(values: Mapping[str, Any]) -> TuningConfig:
    """A checked TuningConfig from the form's values by field name; ConfigError listing every
    setting that is empty, not a number or out of its range, each with what to enter."""
    config, problems = {}, []
    for name, setting in SETTINGS.items():
        default = getattr(DEFAULTS, name)
        try:
            config[name] = setting.read(values.get(name), default)
        except ConfigError as error:
            problems.append(str(error))
            config[name] = default  # checked no further: its message is already there
    config = TuningConfig(**config)
    problems += config.problems()
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          say("config.several") + "\n- " + "\n- ".join(problems))
    return config


def values_from_config(config: TuningConfig) -> dict:
    """The inverse of ``config_from_values``: widget values by field name."""
    return {name: list(getattr(config, name)) if setting.kind == "choices" else getattr(config, name)
            for name, setting in SETTINGS.items()}


def range_info(name: str) -> str:
    """``A whole number from 1 to 1000``: what a number box takes, in the page's language."""
    allowed = SETTINGS[name].allowed
    return allowed[0].upper() + allowed[1:]


def number_boxes(form: "Form") -> dict:
    """The settings entered in a number box (their ``info`` is the range), by name."""
    return {name: widget for name, widget in form.settings.items()
            if isinstance(widget, gr.Number) and name != "eval_rows"}


def localized_ranges(form: "Form") -> dict:
    """The number boxes' ranges in the page's language (the layout is built in English)."""
    return {widget: gr.Number(info=range_info(name)) for name, widget in number_boxes(form).items()}


def setting_widget(name: str, **extra) -> gr.components.Component:
    """The widget for a TuningConfig field: kind, default, range and choices from ``SETTINGS``."""
    setting, default, label = SETTINGS[name], getattr(DEFAULTS, name), t(LABELS[name])
    if setting.kind == "bool":
        return gr.Checkbox(default, label=label, **extra)
    if setting.kind == "choice":
        return gr.Radio(list(setting.choices), value=default, label=label, **extra)
    if setting.kind == "choices":
        return gr.CheckboxGroup(list(setting.choices), value=list(default), label=label, **extra)
    if setting.choices:  # suggested values, others allowed
        return gr.Dropdown(list(setting.choices), value=default, allow_custom_value=True,
                           label=label, **extra)
    # No minimum or maximum on the box: Gradio would refuse a value with its own message, which
    # does not name the setting. The range is shown instead, and the form's check names it.
    extra.setdefault("info", range_info(name))
    return gr.Number(default, label=label, step=setting.step or 1, **extra)


def dataset_choices(ctx: StudioContext) -> list[str]:
    return [d.name for d in ctx.store.list_datasets()]


def version_choices(ctx: StudioContext, name: str | None) -> list[tuple[str, int]]:
    if not name:
        return []
    versions = sorted(ctx.store.list_versions(name), key=lambda v: v.version, reverse=True)
    return [(f"version {v.version}{' (latest)' if i == 0 else ''}: {v.example_count} examples",
             v.version) for i, v in enumerate(versions)]


def build(ctx: StudioContext) -> Form:
    gr.Markdown(t("new.intro"))
    with gr.Row():
        with gr.Column(scale=3):
            display_name = gr.Textbox(label=t("new.display_name"), max_length=40,
                                      elem_id="new-name", info=t("new.display_name_info"))
            description = gr.Textbox(label=t("new.description"), lines=2, elem_id="new-description")
        with gr.Column(scale=2):
            base_model = gr.Dropdown(ctx.base_model_names(), value=ctx.base_model_names()[0],
                                     label=t("new.base_model"), allow_custom_value=True,
                                     info=t("new.base_model_info"), elem_id="new-base-model")
            names = dataset_choices(ctx)
            dataset = gr.Dropdown(names, value=None, label=t("new.dataset"), elem_id="new-dataset")
            version = gr.Dropdown([], value=None, label=t("data.version"), elem_id="new-version")
    gr.Markdown(t("new.guidance"), elem_classes=["limits"])
    s = {}
    with gr.Row():
        s["epochs"] = setting_widget("epochs", elem_id="new-epochs")
        s["batch_size"] = setting_widget("batch_size", elem_id="new-batch-size")
        s["learning_rate"] = setting_widget("learning_rate", elem_id="new-learning-rate")
        s["learning_rate_multiplier"] = setting_widget("learning_rate_multiplier",
                                                       elem_id="new-multiplier")
    with gr.Accordion(t("new.advanced"), open=False, elem_id="new-advanced"):
        with gr.Row():
            s["lora_rank"] = setting_widget("lora_rank", elem_id="new-rank")
            s["lora_alpha"] = setting_widget("lora_alpha")
            s["lora_dropout"] = setting_widget("lora_dropout")
            s["precision"] = setting_widget("precision")
        s["target_modules"] = setting_widget("target_modules")
        with gr.Row():
            s["max_input_tokens"] = setting_widget("max_input_tokens")
            s["max_output_tokens"] = setting_widget("max_output_tokens")
            s["seed"] = setting_widget("seed")
            s["processes"] = setting_widget("processes", elem_id="new-processes")
            s["shard_model"] = setting_widget("shard_model", elem_id="new-shard-model")
        with gr.Row():
            s["eval_rows"] = setting_widget("eval_rows", info=t("new.eval_rows_info"),
                                            elem_id="new-eval-rows")
            s["eval_interval_steps"] = setting_widget("eval_interval_steps")
            s["early_stopping"] = setting_widget("early_stopping")
            s["early_stopping_patience"] = setting_widget("early_stopping_patience")
            s["select_best_checkpoint"] = setting_widget("select_best_checkpoint")
        eval_dataset = gr.Dropdown(names, value=None, label=t("new.eval_dataset"),
                                   info=t("new.eval_dataset_info"), elem_id="new-eval-dataset")
    with gr.Row():
        estimate_button = gr.Button(t("new.estimate"), elem_id="new-estimate")
        tune_button = gr.Button(t("new.tune"), variant="primary", elem_id="new-tune")
    estimate = gr.Markdown(elem_id="new-estimate-text")
    message = gr.Markdown(elem_id="new-message")

    request = dict(display_name=display_name, description=description, base_model=base_model,
                   dataset=dataset, version=version, eval_dataset=eval_dataset)
    form = Form(request, {name: s[name] for name in SETTINGS}, estimate_button, estimate,
                tune_button, message)

    @user_errors
    def on_dataset(name):
        choices = version_choices(ctx, name)
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    dataset.input(on_dataset, dataset, version)

    @user_errors
    def on_estimate(data: dict):
        from training.tuning.estimates import estimate_job  # loads torch: only when asked

        request, settings = form.read(data)
        try:
            config = config_from_values(settings)
        except ConfigError as error:  # shown until the next estimate, naming each setting
            return error_text(error)
        stored = dataset_version(ctx, request["dataset"], request["version"])
        return describe_estimate(estimate_job(ctx.data_dir, request["base_model"],
                                              stored.dataset, config))

    estimate_button.click(on_estimate, set(form.widgets), estimate,
                          concurrency_id="estimate", concurrency_limit=1)
    return form


def error_text(error: Exception) -> str:
    """An error as Markdown that stays in the form (a toast would fade before it is fixed)."""
    lines = str(error).splitlines()
    return "\n".join([f"**{say('new.cannot')}:** {lines[0]}", *lines[1:]])


def describe_estimate(estimate) -> str:
    return say("new.estimate_text", examples=estimate.train_examples,
               steps_per_epoch=estimate.steps_per_epoch, total=estimate.total_steps,
               minutes=estimate.total_seconds / 60, pace=estimate.seconds_per_step,
               device=estimate.device, precision=estimate.precision)


def dataset_version(ctx: StudioContext, name, version_number):
    if not name:
        raise DatasetError(say("ui.choose_dataset_first"))
    return ctx.store.get_version(name, int(version_number) if version_number else None)
