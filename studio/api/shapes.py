"""The local API's JSON, in the shape of Google's Gemini API (v1beta): pure conversions between
the studio's objects and Google's resources, and the checks that name a request's bad field.

Resources (camelCase, as Google's REST reference writes them):

- ``TunedModel``: ``tunedModels/{id}``, state CREATING / ACTIVE / FAILED, timestamps, the
  generation defaults (temperature, topP, topK) and ``tuningTask`` with the hyperparameters and
  one snapshot per training step (step, epoch, meanLoss, computeTime), as Gemini reports them.
- ``Operation``: the long-running creation of a tuned model,
  ``tunedModels/{id}/operations/{op}``; ``metadata`` is a ``CreateTunedModelMetadata``
  (totalSteps, completedSteps, completedPercent, snapshots, tunedModel), ``response`` the
  TunedModel once done, ``error`` when it failed or was cancelled.
- ``Model``: a base model, ``models/{id}``.

Requests are read by ``studio.api.bodies`` (``ApiError`` naming the field); generateContent is in
``studio.api.content``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from storage.jobs import Job
from studio.api.bodies import RPC_CODE, camel, check_keys, checked_numbers, invalid, text_value
from training.core.config import TuningConfig
from training.core.dataset import Dataset, Example
from training.core.generation import GenerationParams
from training.core.progress import StepMetrics
from training.core.states import MAX_DESCRIPTION_CHARS, MAX_DISPLAY_NAME_CHARS
from training.data.json_formats import GEMINI_PAIRS_TEMPLATE

API_PREFIX = "/v1beta"
TYPE_PREFIX = "type.googleapis.com/google.ai.generativelanguage.v1beta."
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
"""Gemini's list defaults: 10 tuned models per page, at most 1000."""


# --- creating a tuned model --------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRequest:
    display_name: str
    description: str
    base_model: str
    """The studio's name of the base model (``models/`` removed)."""
    config: TuningConfig
    dataset: Dataset
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


TUNED_MODEL_FIELDS = ("displayName", "description", "baseModel", "tuningTask", "temperature",
                      "topP", "topK", "tunedModelSource", "readerProjectNumbers")
_OUTPUT_ONLY = ("name", "state", "createTime", "updateTime")
_HYPERPARAMETERS = {  # Gemini name -> (TuningConfig field, whole number)
    "epochCount": ("epochs", True),
    "batchSize": ("batch_size", True),
    "learningRate": ("learning_rate", False),
    "learningRateMultiplier": ("learning_rate_multiplier", False),
    "processes": ("processes", True),  # an extension: training processes per machine
}


def parse_create(body, tuned_model_id: str | None) -> CreateRequest:
    """A ``tunedModels.create`` body (a TunedModel) as what the studio needs to queue the job."""
    body = check_keys(body, "", TUNED_MODEL_FIELDS, ignored=_OUTPUT_ONLY)
    if body.get("tunedModelSource") is not None:
        raise invalid("tunedModelSource: tuning a tuned model further is not supported here; "
                      "set baseModel to a base model (GET /v1beta/models lists them).")
    base = text_value(body, "baseModel", "", required=True).strip()
    if not base.startswith("models/") or base == "models/":
        raise invalid(f"baseModel is '{base}': write it as models/ID, e.g. "
                      "models/SmolLM2-135M-Instruct (GET /v1beta/models lists them).")
    display_name = (text_value(body, "displayName", "") or "").strip()
    if len(display_name) > MAX_DISPLAY_NAME_CHARS:
        raise invalid(f"displayName is {len(display_name)} characters long: use at most "
                      f"{MAX_DISPLAY_NAME_CHARS}.")
    task = body.get("tuningTask")
    if task is None:
        raise invalid("tuningTask is missing: it is required (hyperparameters and trainingData).")
    task = check_keys(task, "tuningTask", ("trainingData", "hyperparameters"),
                      ignored=("startTime", "completeTime", "snapshots"))
    defaults = _generation_defaults(body, "")
    return CreateRequest(
        display_name=display_name or tuned_model_id or "Tuned model",
        description=text_value(body, "description", "", max_chars=MAX_DESCRIPTION_CHARS) or "",
        base_model=base.removeprefix("models/"),
        config=_hyperparameters(task.get("hyperparameters")),
        dataset=_training_data(task.get("trainingData")),
        temperature=defaults.get("temperature"), top_p=defaults.get("top_p"),
        top_k=defaults.get("top_k"))


def _hyperparameters(obj) -> TuningConfig:
    path = "tuningTask.hyperparameters"
    if obj is None:
        return TuningConfig()
    obj = check_keys(obj, path, (*_HYPERPARAMETERS, "shardModel"))
    if obj.get("learningRate") is not None and obj.get("learningRateMultiplier") is not None:
        raise invalid(f"{path}: set learningRate or learningRateMultiplier, not both.")
    numbers = {key: value for key, value in obj.items() if key != "shardModel"}
    config = replace(TuningConfig(), **checked_numbers(numbers, path, _HYPERPARAMETERS, TuningConfig()))
    shard = obj.get("shardModel")  # an extension: split the model between the processes (FSDP)
    if shard is not None and not isinstance(shard, bool):
        raise invalid(f"{path}.shardModel must be true or false, not {json.dumps(shard)}.")
    return replace(config, shard_model=bool(shard))


def _training_data(obj) -> Dataset:
    path = "tuningTask.trainingData"
    if obj is None:
        raise invalid(f"{path} is missing: give the examples inline as "
                      f"{path}.examples.examples[] of {{textInput, output}}.")
    obj = check_keys(obj, path, ("examples",))
    holder = check_keys(obj.get("examples"), f"{path}.examples", ("examples",))
    items = holder.get("examples")
    path = f"{path}.examples.examples"
    if not isinstance(items, list) or not items:
        raise invalid(f"{path} must be a non-empty list of {{textInput, output}} objects.")
    examples = []
    for index, item in enumerate(items):
        where = f"{path}[{index}]"
        item = check_keys(item, where, ("textInput", "output"))
        text = text_value(item, "textInput", where, required=True)
        output = text_value(item, "output", where, required=True)
        examples.append(Example({"text_input": text}, output, source=f"example {index + 1}"))
    return Dataset(GEMINI_PAIRS_TEMPLATE, tuple(examples))


_GENERATION_DEFAULTS = {  # Gemini name -> (GenerationParams field, whole number)
    "temperature": ("temperature", False), "topP": ("top_p", False), "topK": ("top_k", True),
}


def _generation_defaults(obj: Mapping, path: str) -> dict:
    """temperature / topP / topK of a TunedModel (create or patch), each checked."""
    return checked_numbers(obj, path, _GENERATION_DEFAULTS, GenerationParams())


def parse_patch(body, update_mask: str | None) -> dict:
    """A ``tunedModels.patch``: the fields to change, by the studio's names (display_name,
    description, temperature, top_p, top_k). Without ``updateMask`` every given field changes."""
    body = check_keys(body, "", TUNED_MODEL_FIELDS, ignored=_OUTPUT_ONLY)
    editable = ("displayName", "description", "temperature", "topP", "topK")
    if update_mask:
        mask = [part.strip() for part in update_mask.split(",") if part.strip()]
        mask = [camel(part) for part in mask]
        for part in mask:
            if part not in editable:
                raise invalid(f"updateMask names '{part}': only {', '.join(editable)} can be "
                              "changed.")
    else:
        mask = [key for key in editable if key in body]
        fixed = [key for key in body if key not in editable and key not in _OUTPUT_ONLY]
        if fixed:
            raise invalid(f"{fixed[0]} cannot be changed after creation: only "
                          f"{', '.join(editable)} can.")
    changes = {}
    if "displayName" in mask:
        name = (text_value(body, "displayName", "") or "").strip()
        if not name or len(name) > MAX_DISPLAY_NAME_CHARS:
            raise invalid(f"displayName must be 1 to {MAX_DISPLAY_NAME_CHARS} characters.")
        changes["display_name"] = name
    if "description" in mask:
        changes["description"] = text_value(body, "description", "",
                                            max_chars=MAX_DESCRIPTION_CHARS) or ""
    defaults = _generation_defaults(body, "")
    for key, (name, _) in _GENERATION_DEFAULTS.items():
        if key in mask:
            if name not in defaults:
                raise invalid(f"updateMask names {key} but the body has no {key}.")
            changes[name] = defaults[name]
    return changes


# --- tuned models and operations ---------------------------------------------------------------


def tuned_model_json(job: Job, steps: Sequence[StepMetrics], defaults: GenerationParams) -> dict:
    """A job as Gemini's TunedModel."""
    hyper = {"epochCount": job.config.epochs, "batchSize": job.config.batch_size}
    if job.config.learning_rate_multiplier != 1.0:  # one of the two: they are a oneof in the proto
        hyper["learningRateMultiplier"] = job.config.learning_rate_multiplier
    else:
        hyper["learningRate"] = job.config.learning_rate
    task = {"hyperparameters": hyper, "snapshots": snapshots_json(job, steps)}
    if job.started_at:
        task["startTime"] = job.started_at
    if job.finished_at and job.state == "succeeded":
        task["completeTime"] = job.finished_at
    model = {
        "name": f"tunedModels/{job.id}",
        "displayName": job.display_name,
        "description": job.description,
        "state": job.gemini_state,
        "createTime": job.created_at,
        "updateTime": job.updated_at,
        "baseModel": f"models/{job.base_model}",
        "temperature": defaults.temperature,
        "topP": defaults.top_p,
        "topK": defaults.top_k,
        "tuningTask": task,
    }
    return model


def snapshots_json(job: Job, steps: Sequence[StepMetrics]) -> list[dict]:
    """One snapshot per training step, as Gemini reports them: the step, its (1-based) epoch,
    the step's mean loss, and when it was computed (the start time plus the steps' durations)."""
    start = _parse_time(job.started_at) if job.started_at else None
    elapsed = 0.0
    found = []
    for m in steps:
        elapsed += m.step_time_s
        snap = {"step": m.step, "epoch": max(1, math.ceil(m.epoch - 1e-9)), "meanLoss": m.loss}
        if start is not None:
            snap["computeTime"] = _format_time(start + timedelta(seconds=elapsed))
        found.append(snap)
    return found


def operation_id(job: Job) -> str:
    """A stable id for the job's creation (a new job under a reused id gets a new one)."""
    return hashlib.sha256(f"{job.id}@{job.created_at}".encode()).hexdigest()[:12]


def operation_name(job: Job) -> str:
    return f"tunedModels/{job.id}/operations/{operation_id(job)}"


def operation_json(job: Job, steps: Sequence[StepMetrics], defaults: GenerationParams) -> dict:
    """The long-running operation that creates the tuned model."""
    snapshots = snapshots_json(job, steps)
    total, done_steps = job.total_steps, job.completed_steps
    percent = 100.0 if job.state == "succeeded" else (
        round(100.0 * done_steps / total, 2) if total else 0.0)
    metadata = {"@type": TYPE_PREFIX + "CreateTunedModelMetadata",
                "tunedModel": f"tunedModels/{job.id}", "totalSteps": total,
                "completedSteps": done_steps, "completedPercent": percent,
                "snapshots": snapshots}
    operation = {"name": operation_name(job), "metadata": metadata, "done": job.is_final}
    if job.state == "succeeded":
        model = tuned_model_json(job, steps, defaults)
        operation["response"] = {"@type": TYPE_PREFIX + "TunedModel", **model}
    elif job.state == "failed":
        operation["error"] = {"code": RPC_CODE["INTERNAL"],
                              "message": job.error or "Tuning failed: see the job's log."}
    elif job.state == "cancelled":
        operation["error"] = {"code": RPC_CODE["CANCELLED"],
                              "message": "Tuning was cancelled."}
    return operation


def model_json(name: str, *, display_name: str, description: str, input_tokens: int | None,
               defaults: GenerationParams) -> dict:
    """A base model as Gemini's Model."""
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "001",
        "displayName": display_name,
        "description": description,
        "inputTokenLimit": input_tokens or 0,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent",
                                       "createTunedModel"],
        "temperature": defaults.temperature,
        "topP": defaults.top_p,
        "topK": defaults.top_k,
        "maxTemperature": 2.0,
    }


# --- paging ------------------------------------------------------------------------------------


def listing(key: str, items: list, page_size, page_token: str | None, to_json) -> dict:
    """A list response: one page of ``items`` as JSON under ``key``, and ``nextPageToken``
    unless it is the last page."""
    shown, token = page(items, page_size, page_token)
    found = {key: [to_json(item) for item in shown]}
    if token:
        found["nextPageToken"] = token
    return found


def page(items: list, page_size, page_token: str | None) -> tuple[list, str | None]:
    """One page of ``items`` and the token of the next (None on the last page)."""
    size = DEFAULT_PAGE_SIZE if page_size in (None, "", 0, "0") else page_size
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise invalid(f"pageSize is '{page_size}': use a whole number from 1 to {MAX_PAGE_SIZE}.")
    if size < 0:
        raise invalid(f"pageSize is {size}: use a whole number from 1 to {MAX_PAGE_SIZE}.")
    size = min(size, MAX_PAGE_SIZE)
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("o:"))
            if start < 0:
                raise ValueError(start)
        except (ValueError, UnicodeDecodeError):
            raise invalid(f"pageToken '{page_token}' is not one this server gave: use the "
                          "nextPageToken of the previous page, or leave it out.") from None
    end = start + size
    token = base64.urlsafe_b64encode(f"o:{end}".encode()).decode() if end < len(items) else None
    return items[start:end], token


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _format_time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
