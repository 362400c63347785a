"""`python app.py tune`: import a file, save it as a dataset version, tune a model into the studio's
library, and show progress in the terminal.

The job goes through the same queue as the studio's: if a studio is running on the same data
folder, either process may train it, and this command follows it in the database either way.
Exit status: 0 when the model is ready, 1 when the job failed or was cancelled (or the data was
refused), 2 when the file cannot be read, 130 after Ctrl-C (the job is cancelled cleanly).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from training.core.config import TuningConfig
from training.core.errors import StudioError

HYPERPARAMETERS = ("epochs", "batch_size", "learning_rate", "learning_rate_multiplier",
                   "lora_rank", "eval_rows", "seed", "processes", "shard_model")
"""Command-line options that set a TuningConfig field of the same name (unset: its default)."""

BAR_WIDTH = 20
REFRESH_S = 0.25
ETA_WINDOW_STEPS = 20
"""Steps averaged for the time-left estimate."""


def add_arguments(parser) -> None:
    """The `tune` command's options (called by app.py's parse_args)."""
    defaults = TuningConfig()
    parser.add_argument("--data", type=Path, required=True, help="dataset file (CSV, TSV, XLSX, JSON, JSONL)")
    parser.add_argument("--sheet", help="XLSX sheet to read (default: the first)")
    parser.add_argument("--name", required=True, help="display name of the tuned model (1-40 characters)")
    parser.add_argument("--description", default="", help="description of the tuned model")
    parser.add_argument("--model", default=None, help="base model (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    parser.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    parser.add_argument("--learning-rate", type=float, help=f"default {defaults.learning_rate}")
    parser.add_argument("--learning-rate-multiplier", type=float,
                        help=f"default {defaults.learning_rate_multiplier}")
    parser.add_argument("--lora-rank", type=int, help=f"adapter size, default {defaults.lora_rank}")
    parser.add_argument("--eval-rows", type=int, help="examples held out for evaluation (0 or 10-250)")
    parser.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    parser.add_argument("--nproc-per-node", type=int, dest="processes", metavar="N",
                        help="training processes on this machine (torchrun's --nproc-per-node): "
                             "default 0, one per visible GPU (one on the CPU)")
    parser.add_argument("--fsdp", action="store_true", default=None, dest="shard_model",
                        help="split the model's weights between the processes (FSDP), for a "
                             "base model too big for one GPU")


def tune(args, data_dir: Path, err: TextIO = sys.stderr, out: TextIO = sys.stdout) -> int:
    from storage.db import Store
    from training import models
    from training.core.dataset import NewDataset
    from training.data.validation import validate_file
    from training.jobs.runner import JobRequest, JobRunner
    from training.tuning.runtime import configure_threads

    configure_threads()
    _quiet_libraries()
    base_model = args.model or models.BUNDLED_MODEL
    with Store(data_dir) as store:
        try:
            if base_model == models.BUNDLED_MODEL and not models.bundled_folder(data_dir).exists():
                print("Preparing the bundled base model (first run only, about 20 s)…", file=err)
            tokenizer = models.load_tokenizer(models.resolve_model(base_model, data_dir))
            result, dataset, report = validate_file(args.data, tokenizer=tokenizer, sheet=args.sheet)
        except StudioError as error:
            print(f"Cannot read {args.data}: {error}", file=err)
            return 2
        for problem in report.problems:
            print(f"  {problem.severity:7s} {problem.message}", file=err)
        if not report.ok:
            print(f"{args.data}: {len(report.errors)} error(s); fix them and run the command "
                  "again (`python app.py validate FILE` shows the same report).", file=err)
            return 1
        config = TuningConfig(**{name: getattr(args, name) for name in HYPERPARAMETERS
                                 if getattr(args, name) is not None})
        runner = JobRunner(store, data_dir, scope="submitted")
        version = store.latest_if_same(args.data.stem, dataset)  # a rerun adds no version
        new = None if version else NewDataset(
            args.data.stem, dataset, format=result.format, note="imported by app.py tune",
            upload=(args.data.name, args.data.read_bytes()))
        try:
            job = runner.submit(JobRequest(args.name, args.description, base_model,
                                           version.id if version else None, config,
                                           new_dataset=new))
        except StudioError as error:
            print(str(error), file=err)
            return 1
        info = store.dataset_version_info(job.dataset_version_id)
        print(f"Tuning '{job.id}' on {base_model} with dataset '{info.name}' version "
              f"{info.version} ({info.example_count} examples).", file=err)
        runner.start()
        try:
            return _outcome(follow(store, job.id, err), runner, out, err)
        except KeyboardInterrupt:
            return _cancel(store, runner, job.id, err)
        finally:
            runner.stop()


def _quiet_libraries() -> None:
    """The progress line is the terminal's only moving part: no library progress bars or
    deprecation notices between its updates (they still go to the studio's log when serving)."""
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def _cancel(store, runner, job_id: str, err: TextIO) -> int:
    from training.core.states import IllegalTransition

    print("\nCancelling the job at the next step (Ctrl-C again to stop at once)…", file=err)
    try:
        runner.cancel(job_id)
        job = follow(store, job_id, err)
        print(f"The job is {job.state}.", file=err)
    except IllegalTransition:
        pass
    except KeyboardInterrupt:
        runner.stop(timeout_s=10)
    return 130


def _outcome(job, runner, out: TextIO, err: TextIO) -> int:
    if job.state == "succeeded":
        loss = f" (final loss {job.final_loss:.4f})" if job.final_loss is not None else ""
        print(f"Tuned model '{job.id}' is ready{loss}: {job.path(runner.data_dir, job.result_dir)}",
              file=out)
        return 0
    if job.state == "failed":
        print(f"Tuning failed: {job.error}", file=err)
    elif job.state == "interrupted":
        print("The studio that was training this job stopped; the job resumes from its last "
              "checkpoint when the studio starts again (`python app.py`).", file=err)
    else:
        print(f"The job ended {job.state}.", file=err)
    return 1


def follow(store, job_id: str, err: TextIO, refresh_s: float = REFRESH_S):
    """Show the job's log lines and a progress line until it is succeeded, failed or cancelled
    (or interrupted: a studio that was training it stopped); return the job."""
    from training.core.states import FINAL_STATES

    seq, last_step, recent, shown = 0, 0, [], ""
    while True:
        job = store.get_job(job_id)
        metrics = store.metrics_after(job_id, last_step)
        if metrics:
            recent = (recent + metrics)[-ETA_WINDOW_STEPS:]
            last_step = metrics[-1].step
        new_lines = store.log_lines(job_id, seq)
        if new_lines:
            err.write("\r" + " " * len(shown) + "\r" + "".join(e.line + "\n" for e in new_lines))
            seq, shown = new_lines[-1].seq, ""
        if recent and job.total_steps:
            text = progress_line(job.completed_steps, job.total_steps, recent[-1].epoch,
                                 recent[-1].loss, _seconds_left(job, recent))
        else:
            text = "waiting in the queue…" if job.state == "queued" else "preparing…"
        final = job.state in FINAL_STATES or job.state == "interrupted"
        if not final or recent:
            err.write("\r" + text.ljust(len(shown)) + ("\n" if final else ""))
        err.flush()
        if final:
            return job
        shown = text
        time.sleep(refresh_s)


def _seconds_left(job, recent) -> float | None:
    step_times = [m.step_time_s for m in recent if m.step_time_s > 0]
    if not step_times:
        return None
    return (job.total_steps - job.completed_steps) * sum(step_times) / len(step_times)


def progress_line(done: int, total: int, epoch: float, loss: float, seconds_left: float | None,
                  width: int = BAR_WIDTH) -> str:
    """``[#####...............] step 40/190 epoch 1.05 loss 1.234 ETA 1m20s``"""
    filled = min(width, width * done // total) if total else 0
    eta = format_duration(seconds_left) if seconds_left is not None else "?"
    return (f"[{'#' * filled}{'.' * (width - filled)}] step {done}/{total} epoch {epoch:.2f} "
            f"loss {loss:.3f} ETA {eta}")


def format_duration(seconds: float) -> str:
    """``42s``, ``1m20s``, ``2h05m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
