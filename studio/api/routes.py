"""The local API under /v1beta, in the shape of Google's Gemini API, on the studio's own server.

Code written for the hosted tuning API runs against the studio by changing the endpoint: create a
tuned model from inline examples (a long-running operation to poll), list / get / patch / delete
tuned models, and generate with tuned or base models, whole or streamed (``alt=sse``). Jobs are
the studio's: one made here shows in My Library and one made in the UI shows here.

Handlers are thin: ``studio.api.shapes`` reads requests and writes Google's JSON, the job runner
and ``training.inference.engine`` do the work. Every refusal is Google's error shape
``{"error": {"code", "message", "status"}}``; an unexpected failure is INTERNAL with a pointer to
the log, never a traceback.

An API key (``--api-key`` or ``TUNING_STUDIO_API_KEY``), when set, must come in the
``x-goog-api-key`` header or the ``key`` query parameter.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from typing import Iterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from studio.api import shapes
from studio.api.bodies import ApiError, parse_body
from studio.api.service import ApiService
from studio.context import StudioContext
from training.core.config import ConfigError
from training.core.errors import (
    ConflictError, DatasetError, InvalidRequestError, ModelError, NotFoundError, StorageFullError,
    StudioError,
)
from training.core.states import IllegalTransition
from training.inference.targets import Target

log = logging.getLogger("studio.api.routes")


@dataclass(frozen=True)
class ApiSettings:
    api_key: str | None = None
    """When set, every request must carry it (``x-goog-api-key`` header or ``key`` parameter)."""
    hub_models: tuple[str, ...] = ()
    """Hugging Face model ids the API offers as base models besides the local ones."""


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
    api = ApiService(ctx, settings.hub_models)

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

    def generation_routes(path: str, resolve) -> None:
        """generateContent and streamGenerateContent for the models ``resolve`` finds."""

        @router.post(path + ":generateContent")
        async def generate(model_id: str, request: Request):
            body = await _json_body(request)
            return await _call(api.generate, await _call(resolve, model_id), body)

        @router.post(path + ":streamGenerateContent")
        async def stream(model_id: str, request: Request, alt: str | None = None):
            body = await _json_body(request)
            target = await _call(resolve, model_id)
            return await _stream(api, target, body, sse=alt == "sse")

    generation_routes("/tunedModels/{model_id}", api.tuned_target)

    @router.post("/tunedModels/{model_id}:export")
    async def export_tuned_model(model_id: str, request: Request):
        """An extension: the tuned model as a zip download (GGUF with its Ollama Modelfile, the
        adapter or the merged model)."""
        body = await _json_body(request)
        archive = await _call(api.export, model_id, body)
        return FileResponse(archive, media_type="application/zip", filename=archive.name)

    # ---- base models ----

    @router.get("/models")
    async def list_models(pageSize: str | None = None, pageToken: str | None = None):
        return await _call(api.list_models, pageSize, pageToken)

    generation_routes("/models/{model_id:path}", api.base_target)

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str):
        return await _call(api.get_model, model_id)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD",
                                               "OPTIONS"],
                      include_in_schema=False)
    async def unknown(rest: str, request: Request):
        raise ApiError("NOT_FOUND", f"There is no {request.method} {request.url.path}: the API's "
                                    "methods are listed in the README (API section).")

    return router


async def _json_body(request: Request):
    return parse_body(await request.body())


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
    if isinstance(error, StorageFullError):
        return ApiError("RESOURCE_EXHAUSTED", str(error), http_status=507)
    if isinstance(error, (DatasetError, ConfigError, ModelError, InvalidRequestError)):
        return ApiError("INVALID_ARGUMENT", str(error))
    return ApiError("FAILED_PRECONDITION", str(error))


async def _stream(api: ApiService, target: Target, body, *, sse: bool):
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
