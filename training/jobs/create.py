"""Creating a tuning job: the one function the UI, the API and the command line call.

``create_job`` checks the request once (``check_request``), then writes in one transaction the
examples that came with it (and their uploaded file), the job, the steps it will take and its
generation defaults. When anything fails, nothing is left: no dataset version, no job row, no
folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from storage.db import Store
from storage.jobs import Job
from training.core.generation import save_generation_defaults
from training.core.layout import tuned_dir
from training.core.limits import DatasetLimits
from training.jobs.request import JobRequest, check_request
from training.tuning.batching import steps_per_epoch


def create_job(store: Store, data_dir: Path, request: JobRequest, limits: DatasetLimits) -> Job:
    """Check ``request`` and queue its job; StudioError naming the problem when it cannot run
    (the dataset, the settings, the base model, the id or the generation defaults)."""
    examples = check_request(store, data_dir, request, limits)
    config = request.config
    per_epoch = steps_per_epoch(max(1, examples - config.eval_rows), config.batch_size)
    defaults = request.generation_defaults.check() if request.generation_defaults else None
    written: list[Path] = []

    def write_files(job: Job) -> None:  # inside the transaction: a failure rolls the rows back
        if defaults is not None:
            folder = tuned_dir(data_dir, job.id)
            if not folder.exists():
                written.append(folder)
            save_generation_defaults(folder, defaults)

    new = request.new_dataset
    try:
        return store.create_job(
            display_name=request.display_name, description=request.description,
            base_model=request.base_model.strip(), config=config,
            dataset_version_id=request.dataset_version_id,
            eval_dataset_version_id=request.eval_dataset_version_id,
            job_id=request.tuned_model_id, steps_per_epoch=per_epoch,
            total_steps=per_epoch * config.epochs, new_dataset=new, before_commit=write_files)
    except BaseException:
        for folder in written:
            shutil.rmtree(folder, ignore_errors=True)
        raise
