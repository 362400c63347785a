"""Playground: prompt a base model or a tuned model (or one of its checkpoints) exactly as it was
trained. A structured-prompt model shows its own input fields; a chat-tuned or base model gets a
multi-turn chat. Answers stream. Compare runs the same input on a second model; batch test runs a
model over a dataset and scores exact matches."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.context import StudioContext
from studio.errors import user_errors
from studio.i18n import t
from training.core.generation import (
    GenerationParams, parse_stop_sequences, save_generation_defaults,
)
from training.core.layout import exports_dir, tuned_dir
from training.core.messages import say
from training.data.validation import validate_file
from training.inference import batch_test
from training.inference import engine as inference

MAX_FIELDS = 8
"""Input-field boxes available to structured-prompt models (hidden when unused)."""

FINAL = "final"


@dataclass
class Playground:
    model: gr.Dropdown
    model_b: gr.Dropdown
    batch_dataset: gr.Dropdown


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
    if select in [value for _, value in choices]:
        return gr.Dropdown(choices=choices, value=select)
    return gr.Dropdown(choices=choices)


def _target(ctx: StudioContext, name, checkpoint):
    if not name:
        raise gr.Error(say("ui.choose_model"))
    chosen = None if checkpoint in (None, "", FINAL) else checkpoint
    return inference.resolve_target(ctx.store, ctx.data_dir, name, chosen)


def _is_chat(target) -> bool:
    return target.template is None or target.template.kind == "chat"


def _params(temperature, top_p, top_k, max_tokens, stops, seed) -> GenerationParams:
    return GenerationParams(
        temperature=float(temperature or 0), top_p=float(top_p if top_p is not None else 1),
        top_k=int(top_k or 0), max_output_tokens=int(max_tokens or 1),
        stop_sequences=parse_stop_sequences(stops or ""),
        seed=None if seed in (None, "", -1) else int(seed)).check()


def _request(target, field_values, history, message, system):
    """What the model is asked: its input fields, or the chat so far plus the new message."""
    if not _is_chat(target):
        keys = [f.key for f in target.template.inputs]
        return dict(zip(keys, field_values))
    messages = [{"role": "system", "content": system}] if (system or "").strip() else []
    messages += [{"role": m["role"], "content": _text(m["content"])} for m in history or []]
    return messages + [{"role": "user", "content": message or ""}]


def _text(content) -> str:
    """A chat message's text (Gradio may hand content over as a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "".join(_text(part) for part in content or [])


def _describe(ctx: StudioContext, target) -> str:
    lines = [f"**{target.label}**"]
    if target.is_tuned:
        kind = (say("playground.kind_chat") if _is_chat(target) else
                say("playground.kind_fields", n=len(target.template.inputs)))
        lines.append(say("playground.tuned_from", base=target.base.name, kind=kind))
    else:
        lines.append(say("playground.base_described"))
    if target.partial:
        lines.append(say("playground.partial"))
    if ctx.runner is not None and ctx.runner.current_job_id:
        lines.append(say("playground.training_now", job=ctx.runner.current_job_id))
    lines.append(say("playground.loaded", status=inference.default_cache().status()))
    return "  \n".join(lines)


def build(ctx: StudioContext) -> Playground:
    gr.Markdown(t("playground.intro"))
    choices = model_choices(ctx)
    with gr.Row():
        model = gr.Dropdown(choices, value=choices[0][1] if choices else None,
                            label=t("playground.model"), elem_id="playground-model", scale=3)
        checkpoint = gr.Dropdown([FINAL], value=FINAL, label=t("playground.checkpoint"),
                                 elem_id="playground-checkpoint", scale=1)
    about = gr.Markdown(elem_id="playground-about")
    with gr.Group(visible=False, elem_id="playground-fields") as fields_group:
        fields = [gr.Textbox(visible=False, lines=2, elem_id=f"playground-field-{i}")
                  for i in range(MAX_FIELDS)]
    with gr.Group(visible=True, elem_id="playground-chat") as chat_group:
        system = gr.Textbox(label=t("playground.system"), lines=1, elem_id="playground-system")
        chat = gr.Chatbot(label=t("playground.chat"), height=320, elem_id="playground-chatbot")
        message = gr.Textbox(label=t("playground.message"), lines=2, elem_id="playground-message")
    with gr.Accordion(t("playground.settings"), open=False):
        with gr.Row():
            temperature = gr.Number(0.0, label=t("playground.temperature"), minimum=0, maximum=2,
                                    step=0.1, elem_id="playground-temperature")
            top_p = gr.Number(0.95, label="top-p", minimum=0, maximum=1, step=0.05)
            top_k = gr.Number(40, label="top-k", precision=0, minimum=0)
            max_tokens = gr.Number(256, label=t("playground.max_tokens"), precision=0, minimum=1,
                                   elem_id="playground-max-tokens")
            seed = gr.Number(None, label=t("new.seed"), precision=0, minimum=0)
        stops = gr.Textbox(label=t("playground.stops"), lines=2, elem_id="playground-stops")
        save_defaults = gr.Button(t("playground.save_defaults"), size="sm")
    with gr.Row():
        run = gr.Button(t("playground.run"), variant="primary", elem_id="playground-run")
        clear = gr.Button(t("playground.clear"), elem_id="playground-clear")
    with gr.Row():
        with gr.Column():
            output = gr.Textbox(label=t("playground.answer"), lines=6, interactive=False,
                                elem_id="playground-output")
        with gr.Column(visible=False) as compare_column:
            output_b = gr.Textbox(label=t("playground.answer_b"), lines=6, interactive=False,
                                  elem_id="playground-output-b")
    with gr.Accordion(t("playground.prompt"), open=False):
        prompt_view = gr.Code(language=None, interactive=False, elem_id="playground-prompt")
    with gr.Accordion(t("playground.compare"), open=False, elem_id="playground-compare"):
        compare = gr.Checkbox(False, label=t("playground.compare_on"), elem_id="playground-compare-on")
        with gr.Row():
            model_b = gr.Dropdown(choices, value=None, label=t("playground.model_b"),
                                  elem_id="playground-model-b")
            checkpoint_b = gr.Dropdown([FINAL], value=FINAL, label=t("playground.checkpoint"),
                                       elem_id="playground-checkpoint-b")
    with gr.Accordion(t("playground.batch"), open=False, elem_id="playground-batch"):
        with gr.Row():
            batch_dataset = gr.Dropdown([d.name for d in ctx.store.list_datasets()], value=None,
                                        label=t("new.dataset"), elem_id="batch-dataset")
            batch_file = gr.File(label=t("playground.batch_file"), file_types=[
                ".csv", ".tsv", ".xlsx", ".json", ".jsonl"], elem_id="batch-file")
            batch_limit = gr.Number(None, label=t("playground.batch_limit"), precision=0,
                                    info=t("playground.batch_limit_info"), elem_id="batch-limit")
        batch_run = gr.Button(t("playground.batch_run"), elem_id="batch-run")
        batch_summary = gr.Markdown(elem_id="batch-summary")
        batch_table = gr.Dataframe(headers=["input", "expected", "produced", "exact"], type="array",
                                   interactive=False, wrap=True, elem_id="batch-table")
        batch_download = gr.File(label=t("playground.batch_download"), interactive=False,
                                 visible=False, elem_id="batch-download")

    params_in = [temperature, top_p, top_k, max_tokens, stops, seed]

    @user_errors
    def on_model(name, checkpoint_value):
        target = _target(ctx, name, None)
        points = [FINAL] + (inference.list_checkpoints(ctx.data_dir, name) if target.is_tuned else [])
        d = target.defaults
        chat_mode = _is_chat(target)
        inputs = [] if chat_mode else list(target.template.inputs)
        boxes = [gr.Textbox(visible=i < len(inputs), value="",
                            label=(inputs[i].label or inputs[i].key) if i < len(inputs) else None)
                 for i in range(MAX_FIELDS)]
        return (gr.Dropdown(choices=points, value=FINAL), _describe(ctx, target),
                gr.Group(visible=not chat_mode), gr.Group(visible=chat_mode), *boxes,
                d.temperature, d.top_p, d.top_k, d.max_output_tokens, "\n".join(d.stop_sequences),
                d.seed, [], "", "")

    model.change(on_model, [model, checkpoint],
                 [checkpoint, about, fields_group, chat_group, *fields, *params_in, chat, output,
                  output_b])

    @user_errors
    def on_model_b(name):
        target = _target(ctx, name, None)
        points = [FINAL] + (inference.list_checkpoints(ctx.data_dir, name) if target.is_tuned else [])
        return gr.Dropdown(choices=points, value=FINAL)

    model_b.change(on_model_b, model_b, checkpoint_b)
    compare.change(lambda on: gr.Column(visible=bool(on)), compare, compare_column)

    @user_errors
    def on_run(name, point, name_b, point_b, comparing, system_text, history, text, *values):
        field_values, params_values = values[:MAX_FIELDS], values[MAX_FIELDS:]
        params = _params(*params_values)
        target = _target(ctx, name, point)
        request = _request(target, field_values, history, text, system_text)
        loaded = inference.load(target)
        prompt = inference.build_prompt(target, request, loaded.tokenizer)
        chat_mode = _is_chat(target)
        history = list(history or []) + ([{"role": "user", "content": text or ""}] if chat_mode else [])
        answer = ""
        for piece in inference.stream(target, request, params):
            answer += piece
            shown = history + [{"role": "assistant", "content": answer}] if chat_mode else history
            yield answer, gr.skip(), prompt, shown, ("" if chat_mode else gr.skip())
        if comparing and name_b:
            target_b = _target(ctx, name_b, point_b)
            if not target_b.is_tuned and target.template is not None:
                target_b = inference.with_template(target_b, target.template)  # same input
            request_b = request if _is_chat(target_b) == chat_mode else _request(
                target_b, field_values, history[:-1] if chat_mode else [], text, system_text)
            answer_b = ""
            for piece in inference.stream(target_b, request_b, params):
                answer_b += piece
                yield gr.skip(), answer_b, gr.skip(), gr.skip(), gr.skip()

    run.click(on_run, [model, checkpoint, model_b, checkpoint_b, compare, system, chat, message,
                       *fields, *params_in], [output, output_b, prompt_view, chat, message],
              concurrency_id="generate", concurrency_limit=1)
    clear.click(lambda: ([], "", "", ""), None, [chat, message, output, output_b])

    @user_errors
    def on_save_defaults(name, *params_values):
        target = _target(ctx, name, None)
        if not target.is_tuned:
            raise gr.Error(say("ui.defaults_per_model"))
        save_generation_defaults(tuned_dir(ctx.data_dir, name), _params(*params_values))
        gr.Info(say("ui.defaults_saved", name=name))

    save_defaults.click(on_save_defaults, [model, *params_in], None)

    def batch_dataset_of(dataset_name, upload):
        if upload:
            return validate_file(upload, ctx.limits)[1]
        if dataset_name:
            return ctx.store.get_version(dataset_name).dataset
        raise gr.Error(say("ui.choose_batch_source"))

    @user_errors
    def on_batch_source(dataset_name, upload):
        """Rows to run: the whole dataset, unless the user asks for fewer."""
        if not dataset_name and not upload:
            return None
        return len(batch_dataset_of(dataset_name, upload).examples)

    batch_dataset.input(on_batch_source, [batch_dataset, batch_file], batch_limit)
    batch_file.upload(on_batch_source, [batch_dataset, batch_file], batch_limit)

    @user_errors
    def on_batch(name, point, dataset_name, upload, limit, *params_values):
        target, dataset, note = batch_test.fit_dataset(_target(ctx, name, point),
                                                       batch_dataset_of(dataset_name, upload))
        note = f" {note}" if note else ""
        rows, table = [], []
        keys = dataset.template.input_keys
        for row in batch_test.run_batch(target, dataset, _params(*params_values),
                                        limit=int(limit) if limit else None):
            rows.append(row)
            inputs = "\n".join(f"{k}: {row.inputs.get(k, '')}" for k in keys)
            table.append([inputs, row.expected, row.produced, "yes" if row.exact else "no"])
            yield f"{len(rows)} row(s) done…{note}", table, gr.skip()
        result = batch_test.BatchResult(target.label, keys, tuple(rows))
        path = exports_dir(ctx.data_dir) / f"batch-{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(batch_test.batch_csv(result))
        yield result.summary() + note, table, gr.File(value=str(path), visible=True)

    batch_run.click(on_batch, [model, checkpoint, batch_dataset, batch_file, batch_limit,
                               *params_in], [batch_summary, batch_table, batch_download],
                    concurrency_id="generate", concurrency_limit=1)
    return Playground(model, model_b, batch_dataset)
