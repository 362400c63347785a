"""New tuned model: pick a saved dataset and a base model, set AI Studio's hyperparameters (the
advanced Vertex ones folded away), see a measured estimate, and start a job that runs in the
background. Defaults come from TuningConfig, so the form and the trainer never disagree."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.context import StudioContext
from studio.errors import user_errors
from studio.i18n import t
from training.core.config import ALL_PROJECTIONS, TuningConfig

DEFAULTS = TuningConfig()


@dataclass
class Form:
    display_name: gr.Textbox
    description: gr.Textbox
    base_model: gr.Dropdown
    dataset: gr.Dropdown
    version: gr.Dropdown
    eval_dataset: gr.Dropdown
    epochs: gr.Number
    batch_size: gr.Number
    learning_rate: gr.Number
    learning_rate_multiplier: gr.Number
    lora_rank: gr.Dropdown
    lora_alpha: gr.Number
    lora_dropout: gr.Number
    target_modules: gr.CheckboxGroup
    max_input_tokens: gr.Number
    max_output_tokens: gr.Number
    eval_rows: gr.Number
    eval_interval_steps: gr.Number
    early_stopping: gr.Checkbox
    early_stopping_patience: gr.Number
    select_best_checkpoint: gr.Checkbox
    seed: gr.Number
    precision: gr.Radio
    estimate_button: gr.Button
    estimate: gr.Markdown
    tune_button: gr.Button
    message: gr.Markdown

    @property
    def settings(self) -> list:
        """The widgets that make a TuningConfig, in ``config_from_values`` order."""
        return [self.epochs, self.batch_size, self.learning_rate, self.learning_rate_multiplier,
                self.lora_rank, self.lora_alpha, self.lora_dropout, self.target_modules,
                self.max_input_tokens, self.max_output_tokens, self.eval_rows,
                self.eval_interval_steps, self.early_stopping, self.early_stopping_patience,
                self.select_best_checkpoint, self.seed, self.precision]

    @property
    def request_inputs(self) -> list:
        return [self.display_name, self.description, self.base_model, self.dataset,
                self.version, self.eval_dataset] + self.settings


def config_from_values(epochs, batch_size, learning_rate, multiplier, rank, alpha, dropout,
                       modules, max_input, max_output, eval_rows, eval_interval, early_stopping,
                       patience, best, seed, precision) -> TuningConfig:
    """A TuningConfig from the form's widget values (number widgets give floats or None)."""
    def whole(value, default):
        return default if value in (None, "") else int(float(value))

    def real(value, default):
        return default if value in (None, "") else float(value)

    return TuningConfig(
        epochs=whole(epochs, DEFAULTS.epochs), batch_size=whole(batch_size, DEFAULTS.batch_size),
        learning_rate=real(learning_rate, DEFAULTS.learning_rate),
        learning_rate_multiplier=real(multiplier, DEFAULTS.learning_rate_multiplier),
        lora_rank=whole(rank, DEFAULTS.lora_rank), lora_alpha=real(alpha, DEFAULTS.lora_alpha),
        lora_dropout=real(dropout, DEFAULTS.lora_dropout),
        target_modules=tuple(modules or ()),
        max_input_tokens=whole(max_input, DEFAULTS.max_input_tokens),
        max_output_tokens=whole(max_output, DEFAULTS.max_output_tokens),
        eval_rows=whole(eval_rows, 0), eval_interval_steps=whole(eval_interval, DEFAULTS.eval_interval_steps),
        early_stopping=bool(early_stopping),
        early_stopping_patience=whole(patience, DEFAULTS.early_stopping_patience),
        select_best_checkpoint=bool(best), seed=whole(seed, DEFAULTS.seed),
        precision=precision or "auto",
    )


def values_from_config(config: TuningConfig) -> list:
    """The inverse of ``config_from_values``: widget values in ``Form.settings`` order."""
    return [config.epochs, config.batch_size, config.learning_rate, config.learning_rate_multiplier,
            config.lora_rank, config.lora_alpha, config.lora_dropout, list(config.target_modules),
            config.max_input_tokens, config.max_output_tokens, config.eval_rows,
            config.eval_interval_steps, config.early_stopping, config.early_stopping_patience,
            config.select_best_checkpoint, config.seed, config.precision]


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
    with gr.Row():
        epochs = gr.Number(DEFAULTS.epochs, label=t("new.epochs"), precision=0, minimum=1,
                           elem_id="new-epochs")
        batch_size = gr.Number(DEFAULTS.batch_size, label=t("new.batch_size"), precision=0,
                               minimum=1, elem_id="new-batch-size")
        learning_rate = gr.Number(DEFAULTS.learning_rate, label=t("new.learning_rate"),
                                  minimum=0, step=0.0001, elem_id="new-learning-rate")
        multiplier = gr.Number(DEFAULTS.learning_rate_multiplier, label=t("new.multiplier"),
                               minimum=0, step=0.1, elem_id="new-multiplier")
    with gr.Accordion(t("new.advanced"), open=False, elem_id="new-advanced"):
        with gr.Row():
            rank = gr.Dropdown([1, 4, 8, 16], value=DEFAULTS.lora_rank, allow_custom_value=True,
                               label=t("new.lora_rank"), elem_id="new-rank")
            alpha = gr.Number(DEFAULTS.lora_alpha, label=t("new.lora_alpha"), minimum=0)
            dropout = gr.Number(DEFAULTS.lora_dropout, label=t("new.lora_dropout"), minimum=0,
                                maximum=0.99, step=0.05)
            precision = gr.Radio(["auto", "bf16", "fp32"], value=DEFAULTS.precision,
                                 label=t("new.precision"))
        modules = gr.CheckboxGroup(list(ALL_PROJECTIONS), value=list(DEFAULTS.target_modules),
                                   label=t("new.target_modules"))
        with gr.Row():
            max_input = gr.Number(DEFAULTS.max_input_tokens, label=t("new.max_input_tokens"),
                                  precision=0, minimum=1)
            max_output = gr.Number(DEFAULTS.max_output_tokens, label=t("new.max_output_tokens"),
                                   precision=0, minimum=1)
            seed = gr.Number(DEFAULTS.seed, label=t("new.seed"), precision=0, minimum=0)
        with gr.Row():
            eval_rows = gr.Number(DEFAULTS.eval_rows, label=t("new.eval_rows"), precision=0,
                                  minimum=0, maximum=250, info=t("new.eval_rows_info"),
                                  elem_id="new-eval-rows")
            eval_interval = gr.Number(DEFAULTS.eval_interval_steps, label=t("new.eval_interval"),
                                      precision=0, minimum=1)
            early = gr.Checkbox(DEFAULTS.early_stopping, label=t("new.early_stopping"))
            patience = gr.Number(DEFAULTS.early_stopping_patience, label=t("new.patience"),
                                 precision=0, minimum=1)
            best = gr.Checkbox(DEFAULTS.select_best_checkpoint, label=t("new.best_checkpoint"))
        eval_dataset = gr.Dropdown(names, value=None, label=t("new.eval_dataset"),
                                   info=t("new.eval_dataset_info"), elem_id="new-eval-dataset")
    with gr.Row():
        estimate_button = gr.Button(t("new.estimate"), elem_id="new-estimate")
        tune_button = gr.Button(t("new.tune"), variant="primary", elem_id="new-tune")
    estimate = gr.Markdown(elem_id="new-estimate-text")
    message = gr.Markdown(elem_id="new-message")

    form = Form(display_name, description, base_model, dataset, version, eval_dataset, epochs, batch_size,
                learning_rate, multiplier, rank, alpha, dropout, modules, max_input, max_output,
                eval_rows, eval_interval, early, patience, best, seed, precision,
                estimate_button, estimate, tune_button, message)

    @user_errors
    def on_dataset(name):
        choices = version_choices(ctx, name)
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    dataset.input(on_dataset, dataset, version)

    @user_errors
    def on_estimate(base, name, version_number, *settings):
        from training.tuning.estimates import estimate_job  # loads torch: only when asked

        stored = dataset_version(ctx, name, version_number)
        config = config_from_values(*settings)
        return describe_estimate(estimate_job(ctx.data_dir, base, stored.dataset, config))

    estimate_button.click(on_estimate, [base_model, dataset, version] + form.settings, estimate,
                          concurrency_id="estimate", concurrency_limit=1)
    return form


def describe_estimate(estimate) -> str:
    minutes = estimate.total_seconds / 60
    pace = f"{estimate.seconds_per_step:.2f} s per step measured on this machine"
    return (f"**{estimate.train_examples} training examples → {estimate.steps_per_epoch} steps per "
            f"epoch, {estimate.total_steps} steps in all.** About "
            f"{minutes:.1f} minutes ({pace}; {estimate.device}, {estimate.precision}).")


def refresh_datasets(ctx: StudioContext):
    """Dataset-dropdown updates (training set, evaluation set) with the current list."""
    choices = dataset_choices(ctx)
    return gr.Dropdown(choices=choices), gr.Dropdown(choices=choices)


def dataset_version(ctx: StudioContext, name, version_number):
    if not name:
        raise gr.Error("Choose a saved dataset first (save one in the Datasets tab).")
    return ctx.store.get_version(name, int(version_number) if version_number else None)
