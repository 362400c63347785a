"""The studio's shell: header, language picker, one tab per place an AI Studio user expects, and
the events that cross tabs (Tune -> My Library, Tune again -> the form, Open in playground)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import datasets_events, datasets_tab, library_tab, new_model_tab, playground_tab
from studio.context import StudioContext
from studio.errors import user_errors
from studio.i18n import t
from studio.locale import LANGUAGE_IN_USE_JS, LANGUAGES, PICK_LANGUAGE_JS
from training.core.errors import StudioError
from training.core.messages import say
from training.inference.targets import resolve_target
from training.jobs.request import JobRequest

STATICS = Path(__file__).resolve().parent.parent / "statics"
CSS = (STATICS / "style.css").read_text(encoding="utf-8")


def build_ui(ctx: StudioContext) -> gr.Blocks:
    # Gradio copies every file a handler returns into its cache; a merged model is hundreds of
    # MB, so copies older than an hour are removed every hour (the export stays in data/exports).
    with gr.Blocks(title="Tuning Studio", delete_cache=(3600, 3600)) as demo:
        with gr.Row(elem_id="header"):
            with gr.Column(scale=5):
                gr.Markdown(f"## {t('app.title')}")
                gr.Markdown(t("app.tagline"), elem_classes=["tagline"])
            language = gr.Dropdown(LANGUAGES, value=None, label=t("language"), scale=1,
                                   min_width=140, elem_id="language")
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab(t("tab.data"), id="data", elem_id="tab-data") as data_tab:
                data = datasets_tab.build(ctx)
                datasets_events.wire(ctx, data)
            with gr.Tab(t("tab.new"), id="new", elem_id="tab-new") as new_tab:
                form = new_model_tab.build(ctx)
            with gr.Tab(t("tab.library"), id="library", elem_id="tab-library") as library_tab_:
                library = library_tab.build(ctx)
            with gr.Tab(t("tab.playground"), id="playground", elem_id="tab-playground") as play_tab:
                playground = playground_tab.build(ctx)
        language.input(None, language, None, js=PICK_LANGUAGE_JS)
        demo.load(None, None, language, js=LANGUAGE_IN_USE_JS)
        demo.load(user_errors(lambda: new_model_tab.localized_ranges(form)), None,
                  list(new_model_tab.number_boxes(form).values()), show_progress="hidden")
        _wire_across_tabs(ctx, tabs, form, library, playground)
        _keep_lists_current(ctx, demo, data, form, library, playground,
                            (data_tab, new_tab, library_tab_, play_tab))
        _keep_job_in_address(ctx, demo, tabs, library)
    return demo


# The selected job lives in the address (?job=<id>), so a reload or a shared link reopens it.
_JOB_TO_ADDRESS_JS = """(job) => {
    const url = new URL(location.href);
    if (job) url.searchParams.set('job', job); else url.searchParams.delete('job');
    history.replaceState(null, '', url);
}"""


def _keep_job_in_address(ctx, demo, tabs, library):
    library.address.change(None, library.address, None, js=_JOB_TO_ADDRESS_JS)

    @user_errors
    def on_load(request: gr.Request):
        job_id = request.query_params.get("job") if request else None
        if not job_id:
            return gr.skip()  # a deleted job's link gets the store's "no tuned model" message
        return (gr.Tabs(selected="library"), job_id,
                *library_tab.job_page(ctx, job_id, {}, force=True))

    demo.load(on_load, None, [tabs, library.selected] + library.page)


def _keep_lists_current(ctx, demo, data, form, library, playground, tabs: tuple) -> None:
    """Every list that names datasets, base models or tuned models is filled when the page loads
    (the layout holds the lists as they were when the studio started) and again whenever its
    tab opens (another tab, or the API, may have added to them)."""
    def base_models():
        return gr.Dropdown(choices=ctx.base_model_names())

    def datasets():
        return gr.Dropdown(choices=datasets_tab.saved_choices(ctx))

    def tuned_models():
        return playground_tab.refresh_models(ctx)

    by_tab = [
        {data.saved: datasets, data.model: base_models},
        {form.base_model: base_models, form.dataset: datasets, form.eval_dataset: datasets},
        {library.datasets: lambda: library_tab.refresh_datasets(ctx)},
        {playground.model: tuned_models, playground.model_b: tuned_models,
         playground.batch_dataset: datasets},
    ]
    for tab, lists in zip(tabs, by_tab):
        tab.select(_refresher(lists), None, list(lists), show_progress="hidden")
    every = {widget: make for lists in by_tab for widget, make in lists.items()}
    demo.load(_refresher(every), None, list(every), show_progress="hidden")


def _refresher(lists: dict):
    @user_errors
    def refresh():
        updates = tuple(make() for make in lists.values())
        return updates if len(updates) > 1 else updates[0]  # one output takes a bare value

    return refresh


def _wire_across_tabs(ctx, tabs, form, library, playground):

    @user_errors
    def on_tune(data: dict):
        request, settings = form.read(data)
        try:
            config = new_model_tab.config_from_values(settings)
            stored = new_model_tab.dataset_version(ctx, request["dataset"], request["version"])
            eval_name = request["eval_dataset"]
            eval_id = ctx.store.get_version(eval_name).id if eval_name else None
            job = ctx.runner.submit(JobRequest(
                request["display_name"] or "", request["description"] or "",
                request["base_model"] or "", stored.id, config, eval_id))
        except StudioError as error:  # stays in the form until the next try
            return {form.message: new_model_tab.error_text(error)}
        message = say("new.started", name=job.display_name, id=job.id)
        return (message, gr.Tabs(selected="library"), job.id,
                *library_tab.job_page(ctx, job.id, {}, force=True))

    form.tune_button.click(on_tune, set(form.widgets),
                           [form.message, tabs, library.selected] + library.page,
                           concurrency_id="submit", concurrency_limit=1)

    @user_errors
    def on_tune_again(job_id):
        if not job_id:
            raise gr.Error(say("ui.choose_job"))
        job = ctx.store.get_job(job_id)
        version = ctx.store.get_dataset_version(job.dataset_version_id)
        eval_name = (ctx.store.get_dataset_version(job.eval_dataset_version_id).name
                     if job.eval_dataset_version_id else None)
        gr.Info(say("ui.form_filled"))
        datasets = new_model_tab.dataset_choices(ctx)
        request = dict(
            display_name=f"{job.display_name} again"[:40], description=job.description,
            base_model=job.base_model, dataset=gr.Dropdown(choices=datasets, value=version.name),
            version=gr.Dropdown(choices=new_model_tab.version_choices(ctx, version.name),
                                value=version.version),
            eval_dataset=gr.Dropdown(choices=datasets, value=eval_name))
        return {tabs: gr.Tabs(selected="new"),
                **form.fill(request, new_model_tab.values_from_config(job.config))}

    library.tune_again.click(on_tune_again, library.selected, [tabs] + form.widgets)

    @user_errors
    def on_open_playground(job_id):
        if not job_id:
            raise gr.Error(say("ui.choose_job"))
        resolve_target(ctx.store, ctx.data_dir, job_id)  # says why when it has no model yet
        return gr.Tabs(selected="playground"), playground_tab.refresh_models(ctx, select=job_id)

    library.open_playground.click(on_open_playground, library.selected, [tabs, playground.model])
