"""What a new tuning job asks for, and the checks made before it is queued.

``check_request`` raises a StudioError naming the first problem: a dataset version that does not
exist or has errors in its validation report (or inline examples with errors), unusable settings, an evaluation set of the wrong
size, a base model that cannot be found. It reads the store but writes nothing, and it does not
load a tokenizer or a model, so submitting returns at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from storage.db import Store
from training import models
from training.core.config import TuningConfig
from training.core.dataset import NewDataset
from training.core.errors import DatasetError, ModelError
from training.core.generation import GenerationParams
from training.core.limits import DatasetLimits
from training.core.messages import say
from training.core.states import check_description, check_display_name, check_tuned_model_id
from training.data.report import Report
from training.data.validation import validate


@dataclass(frozen=True)
class JobRequest:
    display_name: str
    description: str
    base_model: str
    dataset_version_id: int | None
    """A saved dataset version; None when ``new_dataset`` brings the examples."""
    config: TuningConfig = TuningConfig()
    eval_dataset_version_id: int | None = None
    """A separate evaluation dataset (10-250 rows) instead of rows split off the training set."""
    tuned_model_id: str | None = None
    """The id the caller chose (the API's ``tunedModelId``); None derives it from the name."""
    new_dataset: NewDataset | None = None
    """Examples to save with the job, instead of ``dataset_version_id``."""
    generation_defaults: GenerationParams | None = None
    """The tuned model's generation defaults (the API's temperature, topP, topK); None keeps the
    studio's."""


def check_request(store: Store, data_dir: Path, request: JobRequest, limits: DatasetLimits) -> int:
    """Raise a StudioError naming what would stop ``request`` from training; else return the
    number of examples it trains on (before evaluation rows are split off)."""
    check_display_name(request.display_name)
    check_description(request.description)
    if request.tuned_model_id is not None:
        check_tuned_model_id(request.tuned_model_id)
    if request.new_dataset is not None:
        dataset = request.new_dataset.dataset
        _check_new_dataset(validate(dataset, limits))
    else:
        version = store.get_dataset_version(request.dataset_version_id)
        _check_dataset(version, validate(version.dataset, limits), "dataset")
        dataset = version.dataset
    examples = len(dataset.examples)
    eval_id, eval_rows = request.eval_dataset_version_id, request.config.eval_rows
    if eval_id is not None:
        if eval_rows:
            raise DatasetError.of("request.eval_both")
        _check_eval_dataset(store, eval_id, limits)
    request.config.check(has_eval_set=eval_id is not None or eval_rows > 0)
    if eval_rows and examples - eval_rows < limits.min_examples:
        raise DatasetError.of("request.eval_rows_too_many", eval_rows=eval_rows,
                              examples=examples, least=limits.min_examples)
    check_base_model(request.base_model, data_dir)
    return examples


def check_base_model(name: str, data_dir: Path) -> None:
    """ModelError when the base model cannot be found; the bundled model is not prepared here
    (that takes 20 s: the job does it when it starts)."""
    try:
        if name.strip() == models.BUNDLED_MODEL:
            if not models.bundled_folder(data_dir).is_dir():
                models.bundled_gguf_path()  # raises with the install command when missing
            return
        models.resolve_model(name, data_dir)
    except ModelError as error:
        error.field = "base_model"
        raise


def _check_eval_dataset(store: Store, version_id: int, limits: DatasetLimits) -> None:
    version = store.get_dataset_version(version_id)
    count, low, high = len(version.dataset.examples), limits.min_eval_examples, limits.max_eval_examples
    if not low <= count <= high:
        raise DatasetError.of("request.eval_dataset_size", name=version.name,
                              version=version.version, count=count, low=low, high=high)
    _check_dataset(version, validate(version.dataset, replace(limits, min_examples=0)),
                   "eval_dataset")


def _check_new_dataset(report: Report) -> None:
    if not report.ok:
        errors = report.errors
        more = say("request.more_problems", more=len(errors) - 1) if len(errors) > 1 else ""
        raise DatasetError(f"{errors[0].message}{more}", field="dataset")


def _check_dataset(version, report: Report, what: str) -> None:
    """DatasetError naming the first of the version's errors; ``what``: ``dataset`` or
    ``eval_dataset``."""
    if report.ok:
        return
    errors = report.errors
    raise DatasetError.of(f"request.{what}_error_{'one' if len(errors) == 1 else 'many'}",
                          name=version.name, version=version.version, count=len(errors),
                          first=errors[0].message)
