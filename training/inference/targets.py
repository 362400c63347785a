"""What a playground, compare view, batch test or ``app.py generate`` answers with: a base model,
or a tuned model (its base model, adapter, prompt template and generation defaults), or one of
a tuned model's epoch checkpoints.

A tuned model's files are laid out by ``training.core.layout``; its prompt template comes from
SQLite (the dataset version it was tuned on).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

from training import models
from training.core.dataset import Dataset, PromptTemplate
from training.core.errors import ModelError, NotFoundError
from training.core.generation import (
    BASE_DEFAULTS, TUNED_DEFAULTS, GenerationParams, load_generation_defaults,
)
from training.core.layout import (
    ADAPTER, BASE_MODEL_FILE, CHECKPOINTS, checkpoint_folders, checkpoint_name, has_adapter,
    tuned_dir,
)

_CHECKPOINT_RE = re.compile(r"^(?:epoch-)?(\d{1,6})$")


@dataclass(frozen=True)
class Target:
    name: str
    """The tuned model id, or the base model as chosen (bundled id, folder, path or hub id)."""

    base: models.ModelRef

    adapter_dir: Path | None
    """The LoRA adapter (final or a checkpoint's); None for a base model."""

    template: PromptTemplate | None
    """The tuned model's prompt template; None for a base model (prompted with text or chat)."""

    defaults: GenerationParams

    checkpoint: str | None = None
    """``epoch-N`` when a checkpoint was chosen instead of the final adapter."""

    display_name: str = ""
    max_input_tokens: int | None = None
    """Prompt tokens the tuned model saw at most in training; longer prompts are refused."""

    partial: bool = False
    """The tuned model is the last checkpoint of a cancelled job (it may behave unpredictably)."""

    training_set: Dataset | None = field(default=None, compare=False, repr=False)
    """The dataset version it was tuned on (greedy decoding drafts from its outputs)."""

    training_version: int | None = None
    """That dataset version's id."""

    @property
    def is_tuned(self) -> bool:
        return self.adapter_dir is not None

    @property
    def label(self) -> str:
        """``support-tickets``, ``support-tickets (epoch-2)`` or the base model's name."""
        return f"{self.name} ({self.checkpoint})" if self.checkpoint else self.name


def with_template(target: Target, template: PromptTemplate | None) -> Target:
    """``target`` prompted with another template: a base model compared with a tuned model, or
    batch-tested on a dataset, sees the same rendered prompt as the tuned model."""
    return replace(target, template=template)


def resolve_target(store, data_dir: Path, name: str, checkpoint: str | None = None) -> Target:
    """The tuned model with id ``name``, else the base model ``name``. Raises a StudioError that
    says what to choose instead when it is neither, is not ready, or has no such checkpoint."""
    text = (name or "").strip()
    checkpoint = (checkpoint or "").strip() or None
    if not text:
        raise ModelError.of("target.none")
    try:
        job = store.get_job(text)
    except NotFoundError:
        job = None
    if job is None:
        if checkpoint is not None:
            raise ModelError.of("target.checkpoint_of_base", name=text)
        return Target(text, _resolve_base(text, data_dir), None, None, BASE_DEFAULTS)
    return _tuned_target(store, Path(data_dir), job, checkpoint)


def list_checkpoints(data_dir: Path, job_id: str) -> list[str]:
    """``epoch-N`` names of the tuned model's complete checkpoints, in epoch order."""
    folders = checkpoint_folders(tuned_dir(data_dir, job_id))
    return [checkpoint_name(n) for n in sorted(folders) if has_adapter(folders[n] / ADAPTER)]


def _resolve_base(name: str, data_dir: Path) -> models.ModelRef:
    try:
        return models.resolve_model(name, data_dir)
    except ModelError:
        if "/" in name or "\\" in name or name.startswith((".", "~")):
            raise  # a path: resolve_model's message names what the folder lacks
        raise ModelError.of("target.unknown", name=name, bundled=models.BUNDLED_MODEL,
                            example=models.HUB_EXAMPLE) from None


def _tuned_target(store, data_dir: Path, job, checkpoint: str | None) -> Target:
    folder = tuned_dir(data_dir, job.id)
    available = list_checkpoints(data_dir, job.id)
    if checkpoint is not None:
        adapter = _checkpoint_adapter(job.id, folder, checkpoint, available)
        checkpoint = f"epoch-{_CHECKPOINT_RE.match(checkpoint).group(1).lstrip('0') or '0'}"
    else:
        adapter = job.path(data_dir, job.result_dir)
        if not has_adapter(adapter):
            raise ModelError.of(_not_ready(job, available), id=job.id, state=job.state,
                                available=", ".join(available))
    return Target(
        name=job.id, base=_tuned_base(job, folder, data_dir), adapter_dir=adapter,
        template=store.get_dataset_version(job.dataset_version_id).dataset.template,
        defaults=load_generation_defaults(folder, TUNED_DEFAULTS), checkpoint=checkpoint,
        display_name=job.display_name, max_input_tokens=job.config.max_input_tokens,
        partial=bool(job.partial) and checkpoint is None,
        training_set=_training_set(store, job.dataset_version_id),
        training_version=job.dataset_version_id)


_training_sets: OrderedDict[tuple[str, int], Dataset] = OrderedDict()
_training_sets_lock = threading.Lock()
TRAINING_SETS_CACHED = 8


def _training_set(store, version_id: int) -> Dataset | None:
    """A saved dataset version's examples, kept for the last few versions asked (a version never
    changes once saved); None when it is gone."""
    key = (str(getattr(store, "db_path", id(store))), version_id)
    with _training_sets_lock:
        if key in _training_sets:
            _training_sets.move_to_end(key)
            return _training_sets[key]
    try:
        dataset = store.get_dataset_version(version_id).dataset
    except NotFoundError:
        return None
    with _training_sets_lock:
        _training_sets[key] = dataset
        while len(_training_sets) > TRAINING_SETS_CACHED:
            _training_sets.popitem(last=False)
    return dataset


def _checkpoint_adapter(job_id: str, folder: Path, checkpoint: str, available: list[str]) -> Path:
    match = _CHECKPOINT_RE.match(checkpoint)
    name = f"epoch-{int(match.group(1))}" if match else checkpoint
    if name not in available:
        raise ModelError.of("target.no_checkpoint" if available else "target.no_checkpoint_yet",
                            id=job_id, checkpoint=checkpoint, available=", ".join(available))
    return folder / CHECKPOINTS / name / ADAPTER


def _not_ready(job, available: list[str]) -> str:
    """The message key saying why ``job`` has no model to use yet."""
    if not job.is_final:
        key = "target.not_ready_checkpoints" if available else "target.not_ready"
    else:
        key = "target.no_final_adapter" if available else "target.no_adapter"
    return key


def _tuned_base(job, folder: Path, data_dir: Path) -> models.ModelRef:
    """The base model the adapter was trained on: the recorded folder when it is still there
    (a relative path the user typed may mean something else now), else the name as chosen."""
    try:
        recorded = json.loads((folder / BASE_MODEL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    path = recorded.get("path")
    if recorded.get("kind") == "local" and path and Path(path).is_dir():
        return models.ModelRef(recorded.get("name", job.base_model), path, "local")
    return models.resolve_model(job.base_model, data_dir)

