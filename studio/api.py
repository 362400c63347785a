"""The local API under /v1beta, in the shape of Google's Gemini API, on the studio's own server.

Code written for the hosted tuning API runs against the studio by changing the endpoint: create a
tuned model from inline examples (a long-running operation to poll), list / get / patch / delete
tuned models, and generate with tuned or base models, whole or streamed (``alt=sse``). Jobs are
the studio's: one made here shows in My Library and one made in the UI shows here.

Handlers are thin: ``studio.api_shapes`` reads requests and writes Google's JSON, the job runner
and ``training.inference`` do the work. Every refusal is Google's error shape
``{"error": {"code", "message", "status"}}``; an unexpected failure is INTERNAL with a pointer to
the log, never a traceback.

An API key (``--api-key`` or ``TUNING_STUDIO_API_KEY``), when set, must come in the
``x-goog-api-key`` header or the ``key`` query parameter.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from studio import api_shapes as shapes
from studio.api_shapes import ApiError, invalid
from studio.context import StudioContext
from training import inference, models
from training.config import ConfigError
from training.errors import ConflictError, DatasetError, ModelError, NotFoundError, StudioError
from training.generation import (
    BASE_DEFAULTS, GenerationParams, load_generation_defaults, save_generation_defaults,
)
from training.jobs import IllegalTransition
from training.runner import JobRequest
from training.targets import Target, tuned_dir

log = logging.getLogger("studio.api")

DELETE_WAIT_S = 30.0
"""How long DELETE of a training model waits for it to stop (it stops within one step)."""


@dataclass(frozen=True)
class ApiSettings:
    api_key: str | None = None
    """When set, every request must carry it (``x-goog-api-key`` header or ``key`` parameter)."""


def install(app: FastAPI, ctx: StudioContext, settings: ApiSettings = ApiSettings()) -> None:
    """Add the /v1beta routes and Google-shaped error handlers to ``app``."""
    app.include_router(build_router(ctx, settings))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return JSONResponse(error.to_json(), status_code=error.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        if not request.url.path.startswith(shapes.API_PREFIX):
            return JSONResponse({"detail": error.detail}, status_code=error.status_code)
        return JSONResponse(ApiError("NOT_FOUND", (
            f"There is no {request.method} {request.url.path}: the API's methods are listed in "
            "the README (API section).")).to_json(), status_code=404)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        log.exception("API request %s %s failed", request.method, request.url.path)
        return JSONResponse(ApiError("INTERNAL", (
            f"The studio could not answer ({type(error).__name__}); the details are in "
            "studio.log in the data folder.")).to_json(), status_code=500)


def build_router(ctx: StudioContext, settings: ApiSettings) -> APIRouter:
    def check_key(request: Request) -> None:
        if not settings.api_key:
            return
        given = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not given:
            raise ApiError("PERMISSION_DENIED", (
                "This studio requires an API key: send it in the x-goog-api-key header or the "
                "key query parameter (it is the key the studio was started with, --api-key or "
                "TUNING_STUDIO_API_KEY)."))
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise ApiError("INVALID_ARGUMENT", "API key not valid: pass the key the studio was "
                                               "started with (--api-key or TUNING_STUDIO_API_KEY).")

    router = APIRouter(prefix=shapes.API_PREFIX, dependencies=[Depends(check_key)])
    api = _Api(ctx)

    # ---- tuned models ----

    @router.post("/tunedModels")
    async def create_tuned_model(request: Request, tunedModelId: str | None = None):
        body = await _json_body(request)
        return await _call(api.create, body, tunedModelId)

    @router.get("/tunedModels")
    async def list_tuned_models(pageSize: str | None = None, pageToken: str | None = None,
                                filter: str | None = None):
        return await _call(api.list_tuned, pageSize, pageToken, filter)

    @router.get("/tunedModels/{model_id}")
    async def get_tuned_model(model_id: str):
        return await _call(api.get_tuned, model_id)

    @router.patch("/tunedModels/{model_id}")
    async def patch_tuned_model(model_id: str, request: Request, updateMask: str | None = None):
        body = await _json_body(request)
        return await _call(api.patch_tuned, model_id, body, updateMask)

    @router.delete("/tunedModels/{model_id}")
    async def delete_tuned_model(model_id: str):
        return await _call(api.delete_tuned, model_id)

    @router.get("/tunedModels/{model_id}/operations")
    async def list_model_operations(model_id: str, pageSize: str | None = None,
                                    pageToken: str | None = None):
        return await _call(api.list_operations, model_id, pageSize, pageToken)

    @router.get("/tunedModels/{model_id}/operations/{operation}")
    async def get_operation(model_id: str, operation: str):
        return await _call(api.get_operation, model_id, operation)

    @router.get("/operations")
    async def list_operations(pageSize: str | None = None, pageToken: str | None = None):
        return await _call(api.list_operations, None, pageSize, pageToken)

    @router.post("/tunedModels/{model_id}:generateContent")
    async def generate_tuned(model_id: str, request: Request):
        body = await _json_body(request)
        return await _call(api.generate, await _call(api.tuned_target, model_id), body)

    @router.post("/tunedModels/{model_id}:streamGenerateContent")
    async def stream_tuned(model_id: str, request: Request, alt: str | None = None):
        body = await _json_body(request)
        target = await _call(api.tuned_target, model_id)
        return await _stream(api, target, body, sse=alt == "sse")

    # ---- base models ----

    @router.get("/models")
    async def list_models(pageSize: str | None = None, pageToken: str | None = None):
        return await _call(api.list_models, pageSize, pageToken)

    @router.post("/models/{model_id:path}:generateContent")
    async def generate_base(model_id: str, request: Request):
        body = await _json_body(request)
        return await _call(api.generate, await _call(api.base_target, model_id), body)

    @router.post("/models/{model_id:path}:streamGenerateContent")
    async def stream_base(model_id: str, request: Request, alt: str | None = None):
        body = await _json_body(request)
        target = await _call(api.base_target, model_id)
        return await _stream(api, target, body, sse=alt == "sse")

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str):
        return await _call(api.get_model, model_id)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    async def unknown(rest: str, request: Request):
        raise ApiError("NOT_FOUND", f"There is no {request.method} {request.url.path}: the API's "
                                    "methods are listed in the README (API section).")

    return router


async def _json_body(request: Request):
    data = await request.body()
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid(f"Invalid JSON payload received: {error}. Send a JSON object with "
                      "Content-Type: application/json.") from None


async def _call(function, *args):
    """Run a blocking handler in a worker thread, the studio's errors turned into Google's."""
    try:
        return await run_in_threadpool(function, *args)
    except ApiError:
        raise
    except StudioError as error:
        raise _as_api_error(error) from None


def _as_api_error(error: StudioError) -> ApiError:
    if isinstance(error, NotFoundError):
        return ApiError("NOT_FOUND", str(error))
    if isinstance(error, ConflictError):
        return ApiError("ALREADY_EXISTS", str(error))
    if isinstance(error, IllegalTransition):
        return ApiError("FAILED_PRECONDITION", str(error))
    if isinstance(error, (DatasetError, ConfigError, ModelError)):
        return ApiError("INVALID_ARGUMENT", str(error))
    return ApiError("FAILED_PRECONDITION", str(error))


async def _stream(api: "_Api", target: Target, body, *, sse: bool):
    """streamGenerateContent: server-sent events with ``alt=sse``, else a JSON array written as
    it grows (as Google does). The first piece is computed before the response starts, so a bad
    request or an unusable model is an error response, not a broken stream."""
    chunks = await _call(api.stream_chunks, target, body)
    first = await _call(next, chunks, None)

    def events() -> Iterator[bytes]:
        pending = [first] if first is not None else []
        try:
            index = 0
            for chunk in [*pending, *chunks]:
                text = json.dumps(chunk, ensure_ascii=False)
                if sse:
                    yield f"data: {text}\r\n\r\n".encode()
                else:
                    yield (("[" if index == 0 else "\n,") + text).encode()
                index += 1
            if not sse:
                yield ("]" if index else "[]").encode()
        finally:
            chunks.close()

    media = "text/event-stream" if sse else "application/json"
    return StreamingResponse(events(), media_type=media)


class _Api:
    """The blocking work behind each route (run in worker threads)."""

    def __init__(self, ctx: StudioContext):
        self.ctx = ctx

    @property
    def runner(self):
        if self.ctx.runner is None:
            raise ApiError("UNAVAILABLE", "This studio runs no training jobs.")
        return self.ctx.runner

    # ---- tuned models ----

    def create(self, body, tuned_model_id: str | None) -> dict:
        request = shapes.parse_create(body, tuned_model_id)
        self._check_dataset(request)
        request.config.check(has_eval_set=False)
        store = self.ctx.store
        if tuned_model_id is not None:
            try:
                store.get_job(tuned_model_id)
                raise ConflictError(f"tunedModels/{tuned_model_id} already exists: choose another "
                                    "tunedModelId, or delete that model first.")
            except NotFoundError:
                pass
        version = store.save_dataset(f"{request.display_name} (API)", request.dataset,
                                     format="gemini_api", note="examples sent to POST /v1beta/tunedModels")
        job = self.runner.submit(JobRequest(
            display_name=request.display_name, description=request.description,
            base_model=request.base_model, dataset_version_id=version.id, config=request.config,
            tuned_model_id=tuned_model_id))
        defaults = {k: v for k, v in (("temperature", request.temperature),
                                      ("top_p", request.top_p), ("top_k", request.top_k))
                    if v is not None}
        if defaults:
            self._save_defaults(job.id, defaults)
        return shapes.operation_json(job, [], self._defaults(job.id))

    def _check_dataset(self, request: shapes.CreateRequest) -> None:
        from training.validation import validate

        report = validate(request.dataset, self.ctx.limits)
        if not report.ok:
            errors = report.errors
            more = f" ({len(errors) - 1} more problem(s) after it)" if len(errors) > 1 else ""
            raise invalid(f"tuningTask.trainingData: {errors[0].message}{more}")
        from training.job_request import check_base_model

        try:
            check_base_model(request.base_model, self.ctx.data_dir)
        except StudioError as error:
            raise invalid(f"baseModel 'models/{request.base_model}': {error}") from None

    def list_tuned(self, page_size, page_token, filter_text) -> dict:
        jobs = self.ctx.store.list_jobs()
        if filter_text:
            jobs = _filtered(jobs, filter_text)
        items, token = shapes.page(jobs, page_size, page_token)
        found = {"tunedModels": [self._tuned_json(job) for job in items]}
        if token:
            found["nextPageToken"] = token
        return found

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
        items, token = shapes.page(jobs, page_size, page_token)
        found = {"operations": [self._operation_json(job) for job in items]}
        if token:
            found["nextPageToken"] = token
        return found

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
        refs = models.list_base_models(self.ctx.data_dir)
        items, token = shapes.page(refs, page_size, page_token)
        found = {"models": [self._model_json(ref) for ref in items]}
        if token:
            found["nextPageToken"] = token
        return found

    def get_model(self, model_id: str) -> dict:
        return self._model_json(self._base_ref(model_id))

    def _base_ref(self, model_id: str) -> models.ModelRef:
        for ref in models.list_base_models(self.ctx.data_dir):
            if ref.name.lower() == model_id.lower():
                return ref
        try:
            return models.resolve_model(model_id, self.ctx.data_dir)
        except StudioError as error:
            raise ApiError("NOT_FOUND", f"There is no base model models/{model_id}: {error}") from None

    def _model_json(self, ref: models.ModelRef) -> dict:
        kind = {"bundled": "bundled with the studio", "local": "a local folder",
                "hub": "from the Hugging Face Hub"}[ref.kind]
        positions = _max_positions(ref)
        return shapes.model_json(ref.name, display_name=ref.name,
                                 description=f"Base model, {kind}.", input_tokens=positions,
                                 defaults=BASE_DEFAULTS)

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
        if ref.kind == "bundled" and not (models.models_dir(self.ctx.data_dir) / ref.name).is_dir():
            models.prepare_bundled_model(self.ctx.data_dir)
        return Target(ref.name, ref, None, None, BASE_DEFAULTS)

    def generate(self, target: Target, body) -> dict:
        request, params, name = self._generation(target, body)
        usage = inference.Usage()
        text = "".join(inference.stream(target, request, params, usage=usage))
        return shapes.generate_response(text, name, finish_reason=usage.finish_reason,
                                        prompt_tokens=usage.prompt_tokens,
                                        output_tokens=usage.output_tokens)

    def stream_chunks(self, target: Target, body) -> Iterator[dict]:
        request, params, name = self._generation(target, body)
        usage = inference.Usage()
        pieces = inference.stream(target, request, params, usage=usage)

        def chunks():
            try:
                for piece in pieces:
                    yield shapes.generate_response(piece, name)
                yield shapes.generate_response("", name, finish_reason=usage.finish_reason,
                                               prompt_tokens=usage.prompt_tokens,
                                               output_tokens=usage.output_tokens)
            finally:
                pieces.close()

        return chunks()

    def _generation(self, target: Target, body):
        conversation, config = shapes.parse_generate(body)
        params = shapes.parse_generation_config(config, target.defaults)
        name = f"tunedModels/{target.name}" if target.is_tuned else f"models/{target.name}"
        return _request_for(target, conversation, name), params, name


def _request_for(target: Target, conversation: shapes.Conversation, name: str):
    """What ``inference`` takes for this model: the conversation for chat and base models; for
    a structured-prompt model one text (a single input field) or its fields as a JSON object."""
    template = target.template
    if template is None or template.kind == "chat":
        return list(conversation.messages)
    if conversation.turns > 1 or any(m.role == "system" for m in conversation.messages):
        raise invalid(f"{name} was tuned on single prompts, not conversations: send one user turn "
                      "in contents and no systemInstruction (the preamble it was tuned with is "
                      "added for you).")
    keys = template.input_keys
    text = conversation.last_text
    if len(keys) == 1:
        return text
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        example = json.dumps({key: "..." for key in keys})
        raise invalid(f"contents[0].parts[0].text: {name} takes the input fields "
                      f"{', '.join(keys)}: send them as a JSON object, e.g. {example}.")
    return fields


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
