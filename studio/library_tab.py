"""My Library: every tuned model and job, and each job's page with its live loss curve.

Everything shown is read from SQLite: a gr.Timer polls once a second and redraws the chart only
when new points arrived, so a page reload or a second browser tab shows the same live state.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

import gradio as gr

from studio.charts import loss_figure
from studio.context import StudioContext
from studio.errors import user_errors
from studio.i18n import t
from training.core.messages import say
from training.core.states import ACTIVE_STATES, allowed_events
from training.export.gguf import DEFAULT_QUANTIZATION, QUANTIZATIONS, export_gguf
from training.export.model_export import export_adapter, export_merged

JOB_COLUMNS = ("name", "id", "base_model", "state", "progress", "created", "dataset", "epochs",
               "final_loss")
DATASET_COLUMNS = ("name", "latest", "examples", "format", "updated")


def headers(columns) -> list[str]:
    """Table headers in the page's language."""
    return [say(f"library.col.{column}") for column in columns]
POLL_S = 1.0


@dataclass
class Library:
    jobs: gr.Dataframe
    datasets: gr.Dataframe
    selected: gr.State
    panel: gr.Group
    header: gr.Markdown
    chart: gr.Plot
    details: gr.Markdown
    log: gr.Textbox
    seen: gr.State
    timer: gr.Timer
    tune_again: gr.Button
    open_playground: gr.Button
    address: gr.Textbox
    """The selected job's id, hidden: the browser copies it into the address (?job=<id>)."""
    actions: list
    """The buttons that depend on the job's state, in ``action_buttons`` order, and the
    delete confirmation."""

    @property
    def page(self) -> list:
        """What a refresh of the selected job updates, in ``job_page`` order."""
        return [self.jobs, self.panel, self.header, self.chart, self.details, self.log, self.seen,
                self.address, *self.actions]


def _when(stamp: str | None) -> str:
    return (stamp or "").replace("T", " ")[:16]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_text(job) -> str:
    """'42% · 1m20s left' while running, from the pace of the latest steps (not the time since
    the start, which includes loading the model and would triple the first estimates)."""
    if job.state == "queued":
        return (say("library.queued_at", position=job.queue_position) if job.queue_position
                else say("library.queued"))
    if not job.total_steps:
        return say("library.starting") if job.state == "running" else "—"
    done = min(job.completed_steps, job.total_steps)
    percent = 100 * done // job.total_steps
    if job.state != "running" or not done or not job.recent_step_s:
        return f"{percent}%"
    left = job.recent_step_s * (job.total_steps - done)  # the pace of the latest steps
    return say("library.left", percent=percent, left=_duration(left))


def state_text(job) -> str:
    label = say(f"library.state.{job.state}")
    return say("library.partial", state=label) if job.partial else label


def final_loss_text(job) -> str:
    """The final loss of a finished job; nothing for one that did not finish."""
    return f"{job.final_loss:.4f}" if job.state == "succeeded" and job.final_loss is not None else ""


def action_buttons(job) -> tuple:
    """Cancel, Resume, Open in playground, both downloads, the GGUF row, Delete, each shown when
    the job's state allows it; the delete confirmation hidden."""
    events, has_model = allowed_events(job.state), bool(job.result_dir)
    return (gr.Button(visible="cancel" in events), gr.Button(visible="resume" in events),
            gr.Button(visible=has_model), gr.Button(visible=has_model),
            gr.Button(visible=has_model), gr.Row(visible=has_model),
            gr.Button(visible=job.state not in ACTIVE_STATES), gr.Group(visible=False))


def job_rows(ctx: StudioContext) -> list[list]:
    rows = []
    for job in ctx.store.list_jobs():
        version = ctx.store.dataset_version_info(job.dataset_version_id)
        loss = final_loss_text(job)
        rows.append([job.display_name, job.id, job.base_model, state_text(job), progress_text(job),
                     _when(job.created_at), f"{version.name} v{version.version}",
                     job.config.epochs, loss])
    return rows


def dataset_rows(ctx: StudioContext) -> list[list]:
    return [[d.name, d.latest_version, d.example_count, d.format, _when(d.updated_at)]
            for d in ctx.store.list_datasets()]


def job_details(ctx: StudioContext, job) -> str:
    version = ctx.store.dataset_version_info(job.dataset_version_id)
    config = job.config.to_dict()
    settings = "\n".join(f"| {say(f'setting.{k}')} | {html.escape(json.dumps(v))} |"
                         for k, v in config.items())
    snapshots = ctx.store.job_snapshots(job.id)
    epochs = "\n".join(f"| {s.epoch} | {s.step} | {s.mean_loss:.4f} | {s.compute_time_s:.1f} s |"
                       for s in snapshots)
    return (say("library.dataset_line", name=html.escape(version.name), version=version.version,
                examples=version.example_count, model=html.escape(job.base_model)) + "\n\n"
            + (f"{html.escape(job.description)}\n\n" if job.description else "")
            + say("library.epoch_table") + "\n|---|---|---|---|\n" + epochs
            + "\n\n" + say("library.settings_table") + "\n|---|---|\n" + settings)


def job_header(job, log_lines=()) -> str:
    """The job's title, state and progress; a failed job's error in the reader's language (from
    its ``log.failed`` line in ``log_lines``)."""
    lines = [f"### {html.escape(job.display_name)} · `{job.id}`",
             f"**{state_text(job)}** · {progress_text(job)} · "
             + say("library.step", done=job.completed_steps, total=job.total_steps or "?")]
    if final_loss_text(job):
        lines[-1] += " · " + say("library.final_loss", loss=final_loss_text(job))
    if job.error:
        failures = [line for line in log_lines if line.key == "log.failed"]
        error = failures[-1].cause_said() if failures else job.error
        lines.append(f"\n**{say('library.error')}:** {html.escape(error)}")
    if job.partial:
        lines.append("\n" + say("library.partial_note"))
    return "\n".join(lines)


def _failure_lines(ctx: StudioContext, job) -> list:
    return ctx.store.log_lines(job.id) if job.error else []


def job_page(ctx: StudioContext, job_id, seen_before: dict, force: bool = False):
    """Updates for the table and the selected job's page. What has not changed since
    ``seen_before`` is skipped: the table when its rows are the same, the chart and log unless
    new points (or a new state) arrived."""
    rows = job_rows(ctx)
    table = (gr.Dataframe(value=rows or None, headers=headers(JOB_COLUMNS))
             if force or rows != seen_before.get("rows") else gr.skip())
    if not job_id:
        if not force and seen_before.get("rows") == rows and "job" not in seen_before:
            return gr.skip()  # nothing selected and nothing changed: update nothing
        return (table, gr.Group(visible=False), "", gr.skip(), "", "", {"rows": rows}, "",
                *ACTIONS_KEPT)
    job = ctx.store.get_job(job_id)
    evals = ctx.store.job_evals(job_id)
    now = {"job": job_id, "steps": job.completed_steps, "evals": len(evals), "state": job.state}
    seen = {**now, "rows": rows}
    if force or now != {k: seen_before.get(k) for k in now}:
        steps = ctx.store.metrics_after(job_id, 0)
        figure = gr.Plot(loss_figure(steps, evals, ctx.store.job_snapshots(job_id)))
        log_lines = ctx.store.log_lines(job_id)
        log_text = "\n".join(f"{line.time[11:19]}  {line.said()}" for line in log_lines)
        buttons = action_buttons(job)
        if not force and seen_before.get("job") == job_id:
            buttons = buttons[:-1] + (gr.skip(),)  # a confirmation being answered stays open
        return (table, gr.Group(visible=True), job_header(job, log_lines), figure,
                job_details(ctx, job), log_text, seen, job_id, *buttons)
    return (table, gr.Group(visible=True), job_header(job, _failure_lines(ctx, job)), gr.skip(), gr.skip(), gr.skip(), seen,
            gr.skip(), *ACTIONS_KEPT)

ACTIONS_KEPT = (gr.skip(),) * 8


def build(ctx: StudioContext) -> Library:
    gr.Markdown(f"### {t('library.models')}")
    jobs = gr.Dataframe(value=job_rows(ctx) or None, headers=headers(JOB_COLUMNS), type="array",
                        interactive=False, elem_id="library-jobs",
                        column_widths=["14%", "12%", "14%", "14%", "12%", "11%", "10%", "6%", "7%"])
    selected = gr.State(None)
    seen = gr.State({})
    with gr.Group(visible=False, elem_id="job-page") as panel:
        header = gr.Markdown(elem_id="job-header")
        chart = gr.Plot(elem_id="job-chart", show_label=False)
        with gr.Row():
            cancel = gr.Button(t("library.cancel"), size="sm", variant="stop", elem_id="job-cancel")
            resume = gr.Button(t("library.resume"), size="sm", elem_id="job-resume")
            tune_again = gr.Button(t("library.tune_again"), size="sm", elem_id="job-tune-again")
            open_playground = gr.Button(t("library.open_playground"), size="sm",
                                        elem_id="job-open-playground")
            download = gr.Button(t("library.download"), size="sm", elem_id="job-download")
            download_merged = gr.Button(t("library.download_merged"), size="sm",
                                        elem_id="job-download-merged")
            delete = gr.Button(t("library.delete"), size="sm", elem_id="job-delete")
        with gr.Row(elem_id="job-gguf", equal_height=True) as gguf_row:
            quantization = gr.Dropdown(list(QUANTIZATIONS), value=DEFAULT_QUANTIZATION,
                                       label=t("library.gguf_quantization"),
                                       info=t("library.gguf_info"), scale=3,
                                       elem_id="job-gguf-quantization")
            download_gguf = gr.Button(t("library.download_gguf"), size="sm", scale=1,
                                      elem_id="job-download-gguf")
        with gr.Group(visible=False, elem_id="job-delete-confirm") as confirm:
            confirm_text = gr.Markdown(elem_id="job-delete-question")
            with gr.Row():
                confirm_delete = gr.Button(t("library.delete_confirm"), size="sm", variant="stop",
                                           elem_id="job-delete-yes")
                keep = gr.Button(t("library.delete_keep"), size="sm", elem_id="job-delete-no")
        export_file = gr.File(label=t("library.export_file"), visible=False, elem_id="job-file")
        with gr.Accordion(t("library.details"), open=False):
            details = gr.Markdown(elem_id="job-details")
        log = gr.Textbox(label=t("library.log"), lines=8, max_lines=8, autoscroll=True,
                         interactive=False, elem_id="job-log")
    gr.Markdown(f"### {t('library.datasets')}")
    datasets = gr.Dataframe(value=dataset_rows(ctx) or None, headers=headers(DATASET_COLUMNS),
                            type="array", interactive=False, elem_id="library-datasets")
    timer = gr.Timer(POLL_S, active=True)
    address = gr.Textbox(visible=False, elem_id="job-address")
    library = Library(jobs, datasets, selected, panel, header, chart, details, log, seen, timer,
                      tune_again, open_playground, address,
                      [cancel, resume, open_playground, download, download_merged, gguf_row,
                       delete, confirm])

    @user_errors
    def on_tick(job_id, seen_before):
        return job_page(ctx, job_id, seen_before or {})

    timer.tick(on_tick, [selected, seen], library.page, show_progress="hidden")

    @user_errors
    def on_select(evt: gr.SelectData, rows):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else int(evt.index)
        job_id = rows[row][1] if rows and row < len(rows) else None
        return (job_id, *job_page(ctx, job_id, {}, force=True))

    jobs.select(on_select, [jobs], [selected] + library.page)

    def action(fn):
        @user_errors
        def handler(job_id, seen_before):
            if not job_id:
                raise gr.Error(say("ui.choose_job"))
            next_id = fn(job_id)
            next_id = job_id if next_id is None else next_id or None
            return (next_id, *job_page(ctx, next_id, {}, force=True))
        return handler

    def do_cancel(job_id):
        ctx.runner.cancel(job_id)

    def do_resume(job_id):
        ctx.runner.resume(job_id)

    def do_delete(job_id):
        ctx.runner.delete(job_id)
        gr.Info(say("ui.deleted", id=job_id))
        return ""

    for button, fn in ((cancel, do_cancel), (resume, do_resume), (confirm_delete, do_delete)):
        button.click(action(fn), [selected, seen], [selected] + library.page)

    @user_errors
    def on_delete(job_id):
        if not job_id:
            raise gr.Error(say("ui.choose_job"))
        job = ctx.store.get_job(job_id)
        return gr.Group(visible=True), say("library.delete_question",
                                           name=html.escape(job.display_name), id=job.id)

    delete.click(on_delete, selected, [confirm, confirm_text])
    keep.click(lambda: gr.Group(visible=False), None, confirm)

    def exporter(export):
        @user_errors
        def handler(job_id):
            if not job_id:
                raise gr.Error(say("ui.choose_job"))
            return gr.File(value=str(export(ctx.store, ctx.data_dir, job_id)), visible=True)
        return handler

    def hide_file():
        return gr.File(value=None, visible=False)

    jobs.select(hide_file, None, export_file)  # another job's zip is not offered under this one
    for button in (cancel, resume, delete):
        button.click(hide_file, None, export_file)
    download.click(exporter(export_adapter), selected, export_file)
    download_merged.click(exporter(export_merged), selected, export_file,
                          show_progress="full", concurrency_limit=1, concurrency_id="export")

    @user_errors
    def on_gguf(job_id, chosen, progress=gr.Progress()):
        if not job_id:
            raise gr.Error(say("ui.choose_job"))
        archive = export_gguf(ctx.store, ctx.data_dir, job_id, chosen or DEFAULT_QUANTIZATION,
                              progress=lambda done, what: progress(done, desc=what))
        return gr.File(value=str(archive), visible=True)

    download_gguf.click(on_gguf, [selected, quantization], export_file, show_progress="full",
                        concurrency_limit=1, concurrency_id="export")
    return library


def refresh_datasets(ctx: StudioContext):
    return gr.Dataframe(value=dataset_rows(ctx) or None, headers=headers(DATASET_COLUMNS))
