"""The work behind each /v1beta route, blocking (``studio.api.routes`` runs it in worker threads): the
job runner creates, cancels and deletes; the store lists; ``training.inference.engine`` answers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from studio.api import content, shapes
from studio.api.bodies import ApiError, check_keys, invalid, text_value
from studio.context import StudioContext
from training import models
from training.core.config import ConfigError
from training.core.errors import ModelError, StudioError
from training.core.generation import (
    BASE_DEFAULTS, TUNED_DEFAULTS, GenerationParams, load_generation_defaults,
    save_generation_defaults,
)
from training.core.layout import tuned_dir
from training.export.formats import export_model
from training.inference import engine as inference
from training.inference.targets import Target
from training.jobs.request import JobRequest, NewDataset

DELETE_WAIT_S = 30.0
"""How long DELETE of a training model waits for it to stop (it stops within one step)."""


class ApiService:
    """The blocking work behind each route (run in worker threads)."""

    def __init__(self, ctx: StudioContext, hub_models: tuple[str, ...] = ()):
        self.ctx = ctx
        self.hub_models = hub_models
        """Hugging Face ids the API may name as base models (``--hub-model``)."""

    @property
    def runner(self):
        if self.ctx.runner is None:
            raise ApiError("UNAVAILABLE", "This studio runs no training jobs.")
        return self.ctx.runner

    # ---- tuned models ----

    def create(self, body, tuned_model_id: str | None) -> dict:
        """Queue a tuning job on the inline examples. Everything is checked before anything is
        written, and the examples and the job are saved together: a refused request leaves no
        dataset behind."""
        request = shapes.parse_create(body, tuned_model_id)
        base = self._base_ref(request.base_model, field="baseModel")
        defaults = {k: v for k, v in (("temperature", request.temperature),
                                      ("top_p", request.top_p), ("top_k", request.top_k))
                    if v is not None}
        try:
            job = self.runner.submit(JobRequest(
                display_name=request.display_name, description=request.description,
                base_model=base.name, dataset_version_id=None, config=request.config,
                tuned_model_id=tuned_model_id,
                new_dataset=NewDataset(f"{request.display_name} (API)", request.dataset,
                                       format="gemini_api",
                                       note="examples sent to POST /v1beta/tunedModels"),
                generation_defaults=replace(TUNED_DEFAULTS, **defaults) if defaults else None))
        except StudioError as error:
            where = _CREATE_FIELDS.get(error.field)
            if where is None:
                raise
            raise invalid(f"{where}: {error}") from None
        return shapes.operation_json(job, [], self._defaults(job.id))

    def list_tuned(self, page_size, page_token, filter_text) -> dict:
        jobs = self.ctx.store.list_jobs()
        if filter_text:
            jobs = _filtered(jobs, filter_text)
        return shapes.listing("tunedModels", jobs, page_size, page_token, self._tuned_json)

    def get_tuned(self, model_id: str) -> dict:
        return self._tuned_json(self.ctx.store.get_job(model_id))

    def patch_tuned(self, model_id: str, body, update_mask: str | None) -> dict:
        job = self.ctx.store.get_job(model_id)
        changes = shapes.parse_patch(body, update_mask)
        names = {k: changes.pop(k) for k in ("display_name", "description") if k in changes}
        if names:
            self.ctx.store.update_job(job.id, **names)
        if changes:
            self._save_defaults(job.id, changes)
        return self.get_tuned(job.id)

    def _save_defaults(self, job_id: str, changes: dict) -> None:
        """Change the tuned model's generation defaults (kept beside its adapter)."""
        save_generation_defaults(tuned_dir(self.ctx.data_dir, job_id),
                                 replace(self._defaults(job_id), **changes))

    def delete_tuned(self, model_id: str) -> dict:
        """Delete the tuned model; one still training is cancelled first (it stops within one
        step) and then deleted."""
        job = self.ctx.store.get_job(model_id)
        if job.state in ("queued", "running"):
            job = self.runner.cancel(job.id)
        if job.state == "cancelling":
            try:
                job = self.runner.wait(job.id, timeout_s=DELETE_WAIT_S)
            except TimeoutError:
                raise ApiError("FAILED_PRECONDITION", (
                    f"tunedModels/{job.id} is still stopping: delete it again in a moment.")) from None
        self.runner.delete(job.id)
        return {}

    def list_operations(self, model_id: str | None, page_size, page_token) -> dict:
        jobs = [self.ctx.store.get_job(model_id)] if model_id else self.ctx.store.list_jobs()
        return shapes.listing("operations", jobs, page_size, page_token, self._operation_json)

    def get_operation(self, model_id: str, operation: str) -> dict:
        job = self.ctx.store.get_job(model_id)
        if operation != shapes.operation_id(job):
            raise ApiError("NOT_FOUND", (
                f"There is no operation tunedModels/{model_id}/operations/{operation}: the "
                f"operation that created this model is {shapes.operation_name(job)}."))
        return self._operation_json(job)

    def _tuned_json(self, job) -> dict:
        return shapes.tuned_model_json(job, self.ctx.store.metrics_after(job.id), self._defaults(job.id))

    def _operation_json(self, job) -> dict:
        return shapes.operation_json(job, self.ctx.store.metrics_after(job.id), self._defaults(job.id))

    def _defaults(self, job_id: str) -> GenerationParams:
        try:
            return load_generation_defaults(tuned_dir(self.ctx.data_dir, job_id))
        except ConfigError:
            return GenerationParams()

    # ---- base models ----

    def list_models(self, page_size, page_token) -> dict:
        refs = self.base_refs()
        return shapes.listing("models", refs, page_size, page_token, self._model_json)

    def get_model(self, model_id: str) -> dict:
        return self._model_json(self._base_ref(model_id))

    def base_refs(self) -> list[models.ModelRef]:
        """The base models the API offers: the bundled one, the folders in data/models, and the
        hub ids the studio was started with. Never an arbitrary path: that stays a choice of the
        machine's owner in the UI and the command line."""
        refs = models.list_base_models(self.ctx.data_dir)
        known = {ref.name.lower() for ref in refs}
        refs += [models.ModelRef(hub_id, hub_id, "hub") for hub_id in self.hub_models
                 if hub_id.lower() not in known]
        return refs

    def _base_ref(self, model_id: str, field: str | None = None) -> models.ModelRef:
        refs = self.base_refs()
        for ref in refs:
            if ref.name.lower() == model_id.lower():
                return ref
        shown = model_id if len(model_id) <= 100 else model_id[:100] + "..."
        message = (f"'{shown}' is not a base model of this studio: use one of "
                   f"{', '.join(ref.name for ref in refs)} (GET /v1beta/models lists them).")
        if field:
            raise invalid(f"{field} 'models/{shown}': {message}")
        raise ApiError("NOT_FOUND", f"There is no base model models/{shown}: {message}")

    def _model_json(self, ref: models.ModelRef) -> dict:
        kind = {"bundled": "bundled with the studio", "local": "a local folder",
                "hub": "from the Hugging Face Hub"}[ref.kind]
        positions = _max_positions(ref)
        return shapes.model_json(ref.name, display_name=ref.name,
                                 description=f"Base model, {kind}.", input_tokens=positions,
                                 defaults=BASE_DEFAULTS)

    def export(self, model_id: str, body) -> Path:
        """The zip of ``POST /v1beta/tunedModels/ID:export`` (``format``: gguf, adapter or
        merged; ``quantization`` for gguf; ``checkpoint``: ``epoch-N``)."""
        body = check_keys(body, "", ("format", "quantization", "checkpoint"))
        values = {key: text_value(body, key, "", max_chars=40) for key in body}
        job = self.ctx.store.get_job(model_id)
        return export_model(self.ctx.store, self.ctx.data_dir, job.id,
                            values.get("format") or "gguf", quantization=values.get("quantization"),
                            checkpoint=values.get("checkpoint"))

    # ---- generating ----

    def tuned_target(self, model_id: str) -> Target:
        job = self.ctx.store.get_job(model_id)
        try:
            return inference.resolve_target(self.ctx.store, self.ctx.data_dir, job.id)
        except ModelError as error:
            raise ApiError("FAILED_PRECONDITION", f"tunedModels/{job.id} is {job.gemini_state}: "
                                                  f"{error}") from None

    def base_target(self, model_id: str) -> Target:
        ref = self._base_ref(model_id)
        if ref.kind == "bundled" and not models.bundled_folder(self.ctx.data_dir).is_dir():
            models.prepare_bundled_model(self.ctx.data_dir)
        return Target(ref.name, ref, None, None, BASE_DEFAULTS)

    def generate(self, target: Target, body) -> dict:
        request, params, name = self._generation(target, body)
        usage = inference.Usage()
        text = "".join(inference.stream(target, request, params, usage=usage))
        return content.generate_response(text, name, finish_reason=usage.finish_reason,
                                        prompt_tokens=usage.prompt_tokens,
                                        output_tokens=usage.output_tokens)

    def stream_chunks(self, target: Target, body) -> Iterator[dict]:
        request, params, name = self._generation(target, body)
        usage = inference.Usage()
        pieces = inference.stream(target, request, params, usage=usage)

        def chunks():
            try:
                for piece in pieces:
                    yield content.generate_response(piece, name)
                yield content.generate_response("", name, finish_reason=usage.finish_reason,
                                               prompt_tokens=usage.prompt_tokens,
                                               output_tokens=usage.output_tokens)
            finally:
                pieces.close()

        return chunks()

    def _generation(self, target: Target, body):
        conversation, config = content.parse_generate(body)
        params = content.parse_generation_config(config, target.defaults)
        name = f"tunedModels/{target.name}" if target.is_tuned else f"models/{target.name}"
        return content.request_for(target, conversation, name), params, name


_CREATE_FIELDS = {"dataset": "tuningTask.trainingData", "base_model": "baseModel",
                  "description": "description", "config": "tuningTask.hyperparameters"}
"""The request field a job check's ``StudioError.field`` stands for."""


def _filtered(jobs: list, filter_text: str) -> list:
    """``state=ACTIVE`` (or CREATING / FAILED) and ``baseModel=models/ID``, joined by AND."""
    kept = jobs
    for clause in filter_text.replace(" AND ", " and ").split(" and "):
        key, sep, value = clause.strip().partition("=")
        key, value = key.strip(), value.strip().strip('"')
        if not sep or key not in ("state", "baseModel"):
            raise invalid(f"filter '{filter_text}' is not understood: use state=ACTIVE, "
                          "state=CREATING, state=FAILED or baseModel=models/ID, joined by AND.")
        if key == "state":
            if value not in ("ACTIVE", "CREATING", "FAILED"):
                raise invalid(f"filter: state is '{value}': use ACTIVE, CREATING or FAILED.")
            kept = [job for job in kept if job.gemini_state == value]
        else:
            kept = [job for job in kept if f"models/{job.base_model}" == value]
    return kept


def _max_positions(ref: models.ModelRef) -> int | None:
    try:
        config = json.loads((Path(ref.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    return config.get("max_position_embeddings")
