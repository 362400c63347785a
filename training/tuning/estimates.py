"""The duration shown before a job starts: a few real training steps on this machine, timed."""

from __future__ import annotations

from pathlib import Path

from training.core.config import TuningConfig
from training.core.dataset import Dataset
from training.core.progress import Estimate


def estimate_job(data_dir: Path, base_model: str, dataset: Dataset, config: TuningConfig) -> Estimate:
    """Steps per epoch, total steps and the measured seconds per step for this dataset,
    base model and settings (the evaluation rows, if any, are split off first)."""
    from training import models  # torch loads here, only when asked
    from training.tuning import trainer

    config.check()
    ref = models.resolve_model(base_model, data_dir)
    train_set, _ = trainer.split_eval(dataset, config.eval_rows, config.seed)
    return trainer.estimate(base_model=ref, train_set=train_set, config=config)
