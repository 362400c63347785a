"""Checkpoint folders and adapters, written whole or not at all.

Layout under a run's output folder::

    checkpoints/epoch-<n>/adapter/        the PEFT adapter (safetensors + adapter_config.json)
    checkpoints/epoch-<n>/trainer_state.pt optimizer, scheduler, step, epoch, RNG, best metric
    best/                                  adapter with the best eval loss (best-checkpoint selection)
    adapter/                               the final adapter (the tuned model)
    metrics.json                           final figures

Every folder is filled under a hidden temporary name beside its target and renamed into place,
so a crash leaves either nothing or a complete folder; leftovers are removed at the next start.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from training.core.atomic import write_file_atomic
from training.core.errors import TrainingError
from training.core.layout import (
    ADAPTER, ADAPTER_CONFIG, ADAPTER_WEIGHTS, CHECKPOINTS, METRICS_FILE, STATE_FILE, checkpoint_dir,
)
from training.tuning.lora import save_adapter

_TEMP_MARK = ".tmp-"
_OLD_MARK = ".old-"


def write_folder_atomic(target: Path, fill: Callable[[Path], None]) -> Path:
    """Call ``fill(temporary_folder)``, then rename the folder to ``target`` (replacing an
    existing one). The temporary folder is removed when ``fill`` fails."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TEMP_MARK}", dir=target.parent))
    try:
        fill(staging)
        staging.chmod(0o755)  # mkdtemp makes it private to this user
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}{_OLD_MARK}", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_leftovers(output_dir: Path) -> None:
    """Delete temporary folders a crashed run left behind."""
    for folder in (Path(output_dir), Path(output_dir) / CHECKPOINTS):
        if folder.is_dir():
            for child in folder.iterdir():
                if child.name.startswith(".") and (_TEMP_MARK in child.name or _OLD_MARK in child.name):
                    shutil.rmtree(child, ignore_errors=True)


def write_checkpoint(output_dir: Path, epoch: int, peft_model, state: dict,
                     weights: dict | None = None) -> Path:
    """checkpoints/epoch-<epoch>: the adapter and ``state`` (saved with torch.save).
    ``weights``: see ``training.tuning.lora.save_adapter``."""
    import torch

    def fill(folder: Path) -> None:
        save_adapter(peft_model, folder / ADAPTER, weights)
        torch.save(state, folder / STATE_FILE)

    return write_folder_atomic(checkpoint_dir(output_dir, epoch), fill)


def write_adapter(peft_model, target: Path, weights: dict | None = None) -> Path:
    return write_folder_atomic(target, lambda folder: save_adapter(peft_model, folder, weights))


# An optimizer's state is saved keyed by parameter position (``Optimizer.state_dict``) by an
# unsharded run and by parameter name (``torch.distributed.checkpoint``) by a sharded one; a job
# resumed with the other setting (or another number of processes) reads either.

def _by_name(state: dict) -> bool:
    return any(isinstance(p, str) for group in state["param_groups"] for p in group["params"])


def optimizer_by_name(state: dict, names: list[str]) -> dict:
    """``state`` keyed by the trainable parameters' names (``names``, in the optimizer's order)."""
    if _by_name(state):
        return state
    return {"state": {names[index]: value for index, value in state["state"].items()},
            "param_groups": [{**group, "params": [names[i] for i in group["params"]]}
                             for group in state["param_groups"]]}


def optimizer_by_index(state: dict, names: list[str]) -> dict:
    """``state`` keyed by the parameters' positions in the optimizer (``names``' order)."""
    if not _by_name(state):
        return state
    index = {name: position for position, name in enumerate(names)}
    return {"state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**group, "params": [index[n] for n in group["params"]]}
                             for group in state["param_groups"]]}


def copy_adapter(source: Path, target: Path) -> Path:
    def fill(folder: Path) -> None:
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            shutil.copy2(Path(source) / name, folder / name)

    return write_folder_atomic(target, fill)


def read_checkpoint(folder: Path) -> dict:
    """The trainer state saved in a checkpoint folder; TrainingError when it is not one."""
    import torch

    folder = Path(folder)
    state_path = folder / STATE_FILE
    if not state_path.is_file() or not (folder / ADAPTER / ADAPTER_WEIGHTS).is_file():
        raise TrainingError.of("training.checkpoint_incomplete", folder=folder,
                               needs=f"{ADAPTER}/{ADAPTER_WEIGHTS} and {STATE_FILE}")
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the boundary: pickle, zip and torch errors of a damaged file
        raise TrainingError.of("training.checkpoint_unreadable", path=state_path,
                               error=type(exc).__name__) from exc


def write_metrics(output_dir: Path, metrics: dict) -> None:
    write_file_atomic(Path(output_dir) / METRICS_FILE,
                      (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode("utf-8"))
