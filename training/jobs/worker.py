"""One job's training in a process of its own, started by the runner through PyTorch's launcher:

    python -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node 1 \\
        -m training.jobs.worker --data-dir DATA --job ID [--device cpu]

The worker reads its job from SQLite, trains, and writes its progress rows, log lines and
checkpoints exactly as training in the studio's own process did (``StoreSink``); its outcome (the
result, or the failure with its message key) goes to ``<job folder>/worker-outcome.json`` for the
runner, which records it. A crash, an out-of-memory kill or a leak ends this process only: the
studio keeps serving, and GPU memory is returned when the process ends.

Stopping: a cancel is read from the database within half a second (``StopCheck``); SIGTERM or
SIGINT (the studio is stopping) stops at the next step. The worker dies with the process that
started it (``PR_SET_PDEATHSIG``), so a killed studio leaves no worker behind.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from storage.db import Store
from storage.jobs import Job
from training import models
from training.core.atomic import write_file_atomic
from training.core.disk_space import is_disk_full, no_space
from training.core.errors import StudioError, TrainingError
from training.core.layout import BASE_MODEL_FILE, tuned_dir
from training.core.messages import english
from training.core.progress import NullSink, TrainResult
from training.jobs.sink import StopCheck, StoreSink, relative_to
from training.jobs.workers import worker_threads
from training.tuning.parallel import SOLO, Group, join, leave

MEMORY_LIMIT_ENV = "TUNING_STUDIO_WORKER_MEMORY_MB"
"""When set, each worker may use at most this many megabytes of memory more than it holds once
its libraries are loaded (an address-space limit): a job that needs more fails with the
out-of-memory message instead of slowing the machine down."""

OUTCOME_FILE = "worker-outcome.json"
WORKER_LOG = "worker.log"
"""The worker group's standard output and error, beside the job's files."""
_PR_SET_PDEATHSIG = 1


def train_job(store: Store, data_dir: Path, job: Job, should_stop, train_fn,
              device: str | None = None, group: Group = SOLO) -> TrainResult:
    """Train ``job`` with ``train_fn`` (``training.tuning.trainer.train``): its dataset version,
    evaluation set, base model and settings from the store, progress into the store (from rank
    0 of ``group`` only)."""
    version = store.get_dataset_version(job.dataset_version_id)
    train_set, eval_set = version.dataset, None
    if job.eval_dataset_version_id is not None:
        eval_set = store.get_dataset_version(job.eval_dataset_version_id).dataset
    elif job.config.eval_rows:
        from training.tuning.trainer import split_eval

        train_set, eval_set = split_eval(version.dataset, job.config.eval_rows, job.config.seed)
    base_model = models.resolve_model(job.base_model, data_dir)
    output_dir = tuned_dir(data_dir, job.id)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_file_atomic(output_dir / BASE_MODEL_FILE, json.dumps(
        {"name": base_model.name, "path": base_model.path, "kind": base_model.kind},
        indent=1).encode())
    resume_from = job.path(data_dir, job.checkpoint_dir)
    extra = {}
    if group.world > 1:  # the other ranks, maybe on machines without this database
        group.broadcast((train_set, eval_set, job.config, job.base_model))
        extra = {"group": group}
    return train_fn(base_model=base_model, train_set=train_set, eval_set=eval_set,
                    config=job.config, output_dir=output_dir,
                    sink=StoreSink(store, job.id, data_dir), should_stop=should_stop,
                    resume_from=resume_from, device=device, **extra)


def follow(data_dir: Path, device: str | None, group: Group, should_stop, train_fn) -> None:
    """A rank other than 0: train rank 0's job (sent over the group) with the base model of the
    same name here (``data_dir``: this machine's data folder); write nothing."""
    import tempfile

    train_set, eval_set, config, base_name = group.broadcast(None)
    base_model = models.resolve_model(base_name, data_dir)
    with tempfile.TemporaryDirectory(prefix="rank-") as scratch:
        train_fn(base_model=base_model, train_set=train_set, eval_set=eval_set, config=config,
                 output_dir=Path(scratch), sink=NullSink(), should_stop=should_stop,
                 resume_from=None, device=device, group=group)


def failure_of(error: BaseException, data_dir: Path) -> StudioError:
    """The failure as the user reads it: a StudioError as raised, a full disk as such, anything
    else named with its first line (the traceback goes to the job's log)."""
    if is_disk_full(error):
        return no_space(data_dir, "disk.no_space_resume")
    if isinstance(error, StudioError):
        return error
    first_line = (str(error).strip().splitlines() or [""])[0][:300]
    return TrainingError.of("training.failed_unexpected", error=type(error).__name__,
                            line=first_line)


def die_with_parent() -> None:
    """Ask Linux to kill this process when the process (thread) that started it ends."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def limit_memory(megabytes: str | None) -> None:
    """Cap this process's address space at its present size plus ``megabytes``."""
    if not megabytes:
        return
    import resource

    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = size + int(megabytes) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def write_outcome(path: Path, outcome: dict) -> None:
    write_file_atomic(path, json.dumps(outcome, indent=1).encode())


def read_outcome(path: Path, data_dir: Path) -> tuple[TrainResult | StudioError | None, str]:
    """What the worker wrote: its result, or its failure (the StudioError it was) with its
    traceback; None when it wrote nothing (it was killed)."""
    try:
        outcome = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, ""
    if "failure" in outcome:
        failure = outcome["failure"]
        if failure.get("key"):
            return TrainingError.of(failure["key"], **failure.get("params", {})), outcome["trace"]
        return TrainingError(failure["message"]), outcome["trace"]
    result = outcome["result"]
    adapter = result.get("adapter_dir")
    return TrainResult(result["status"], result["last_step"],
                       Path(data_dir) / adapter if adapter else None,
                       result.get("best_step"), result.get("final_loss")), ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training.jobs.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--job")
    parser.add_argument("--device", default=None)
    parser.add_argument("--probe", action="store_true",
                        help="load what training needs, then exit (times a worker's start-up)")
    args = parser.parse_args(argv)
    if args.probe:
        import importlib

        for module in ("transformers", "peft", "training.tuning.trainer"):
            importlib.import_module(module)
        return 0
    if not args.data_dir:
        parser.error("--data-dir is required")
    die_with_parent()
    stopping = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())
    data_dir = args.data_dir.resolve()
    from training.tuning.runtime import configure_threads

    configure_threads(worker_threads())
    limit_memory(os.environ.get(MEMORY_LIMIT_ENV))
    group = join(args.device)
    try:
        if not group.leader:
            return _follow(data_dir, args.device, group, stopping)
        if not args.job:
            parser.error("--job is required on the first machine's first process (rank 0)")
        return _work(data_dir, args.job, args.device, group, stopping)
    finally:
        leave()


def _follow(data_dir: Path, device: str | None, group: Group, stopping: threading.Event) -> int:
    from training.tuning.trainer import train

    try:
        follow(data_dir, device, group, stopping.is_set, train)
    except Exception:
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        return 1
    return 0


def _work(data_dir: Path, job_id: str, device: str | None, group: Group,
          stopping: threading.Event) -> int:
    from training.tuning.trainer import train

    outcome = tuned_dir(data_dir, job_id) / OUTCOME_FILE
    with Store(data_dir) as store:
        job = store.get_job(job_id)
        should_stop = StopCheck(store, job.id, stopping.is_set)
        try:
            result = train_job(store, data_dir, job, should_stop, train, device, group)
        except Exception as error:
            failure = failure_of(error, data_dir)
            message = english(failure.key, **failure.params) if failure.key else str(failure)
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            write_outcome(outcome, {"failure": {"key": failure.key, "params": failure.params,
                                                "message": message},
                                    "trace": traceback.format_exc().rstrip()})
            return 1
    adapter = relative_to(data_dir, result.adapter_dir) if result.adapter_dir else None
    write_outcome(outcome, {"result": {"status": result.status, "last_step": result.last_step,
                                       "adapter_dir": adapter, "best_step": result.best_step,
                                       "final_loss": result.final_loss}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
