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
        raise ModelError("No model was chosen: choose a tuned model from My Library or a base model.")
    try:
        job = store.get_job(text)
    except NotFoundError:
        job = None
    if job is None:
        if checkpoint is not None:
            raise ModelError(f"Checkpoints belong to tuned models, and '{text}' is a base model: "
                             "leave the checkpoint empty or choose a tuned model.")
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
        raise ModelError(
            f"'{name}' is neither a tuned model in this library nor a base model: choose a tuned "
            f"model id shown in My Library, {models.BUNDLED_MODEL}, a local model folder or a "
            f"Hugging Face model id such as {models.HUB_EXAMPLE}.") from None


def _tuned_target(store, data_dir: Path, job, checkpoint: str | None) -> Target:
    folder = tuned_dir(data_dir, job.id)
    available = list_checkpoints(data_dir, job.id)
    if checkpoint is not None:
        adapter = _checkpoint_adapter(job.id, folder, checkpoint, available)
        checkpoint = f"epoch-{_CHECKPOINT_RE.match(checkpoint).group(1).lstrip('0') or '0'}"
    else:
        adapter = job.path(data_dir, job.result_dir)
        if not has_adapter(adapter):
            raise ModelError(_not_ready(job, available))
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
        choices = (f"choose one of {', '.join(available)}." if available else
                   "it has none yet; leave the checkpoint empty to use the final model.")
        raise ModelError(f"The tuned model '{job_id}' has no checkpoint '{checkpoint}': {choices}")
    return folder / CHECKPOINTS / name / ADAPTER


def _not_ready(job, available: list[str]) -> str:
    listed = ", ".join(available)
    if not job.is_final:
        if available:
            return (f"The tuned model '{job.id}' is not ready yet (it is {job.state}): wait until "
                    f"training finishes, or choose one of its checkpoints: {listed}.")
        return (f"The tuned model '{job.id}' is not ready yet (it is {job.state}) and has no "
                "checkpoint yet: wait until training finishes.")
    if available:
        return (f"The tuned model '{job.id}' has no final adapter (it is {job.state}): choose one "
                f"of its checkpoints ({listed}) or tune it again.")
    return (f"The tuned model '{job.id}' has no adapter (it is {job.state} and kept no "
            "checkpoint): tune it again.")


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

