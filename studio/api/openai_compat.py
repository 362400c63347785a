"""An OpenAI-compatible endpoint on the studio's own server: ``GET /v1/models`` and
``POST /v1/chat/completions`` (whole or streamed), so that anything that speaks the OpenAI chat
API (the ``openai`` client, LangChain, editors' assistants) uses the studio's base and tuned models.

Models are named by id: a tuned model by its id in My Library (``tunedModels/ID`` also works), a
base model by its name (``models/NAME`` also works); a tuned model wins when both have the name.
A structured-prompt model takes its fields as /v1beta does: the last user message is the text of
its one input field, or a JSON object of its fields; it is prompted with its training template.

The API key rule is /v1beta's: when the studio was started with ``--api-key``, every request
carries it, here as ``Authorization: Bearer KEY``. Refusals are OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``, with its HTTP statuses (400, 401, 404).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from dataclasses import replace
from typing import Iterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from studio.api import content
from studio.api.bodies import ApiError, check_keys, checked_numbers, invalid, parse_body
from studio.api.service import ApiService
from studio.context import StudioContext
from training.core.dataset import Message
from training.core.errors import NotFoundError, StudioError
from training.core.generation import GenerationParams
from training.inference import engine as inference
from training.inference.targets import Target

log = logging.getLogger("studio.api.openai")

PREFIX = "/v1"
OWNER = "tuning-studio"

_NUMBERS = {  # OpenAI name -> (GenerationParams field, whole number)
    "temperature": ("temperature", False),
    "top_p": ("top_p", False),
    "top_k": ("top_k", True),  # an extension, as vLLM and llama.cpp's server take it
    "max_tokens": ("max_output_tokens", True),
    "max_completion_tokens": ("max_output_tokens", True),
    "seed": ("seed", True),
}
_FIELDS = ("model", "messages", "stream", "stream_options", "stop", "n", *_NUMBERS)
_IGNORED = ("tools", "functions", "frequency_penalty", "presence_penalty", "user", "metadata", "store", "logprobs",
            "top_logprobs", "parallel_tool_calls", "service_tier", "reasoning_effort",
            "response_format", "tool_choice", "logit_bias", "prompt_cache_key", "safety_identifier")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
_STATUS = {"INVALID_ARGUMENT": (400, "invalid_request_error"),
           "FAILED_PRECONDITION": (400, "invalid_request_error"),
           "NOT_FOUND": (404, "invalid_request_error"),
           "PERMISSION_DENIED": (401, "invalid_request_error"),
           "RESOURCE_EXHAUSTED": (507, "server_error"),
           "UNAVAILABLE": (503, "server_error"),
           "INTERNAL": (500, "server_error")}


class OpenAIError(Exception):
    """A refusal in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind,
                                       "param": self.param, "code": self.code}},
                            status_code=self.status)


def install(app: FastAPI, ctx: StudioContext, settings) -> None:
    """Add /v1/models and /v1/chat/completions to ``app`` (``settings``: the /v1beta API's
    ``ApiSettings``: its key and hub models)."""
    app.include_router(build_router(ctx, settings))

    @app.exception_handler(OpenAIError)
    async def openai_error(request: Request, error: OpenAIError):
        return error.response()


def build_router(ctx: StudioContext, settings) -> APIRouter:
    def check_key(request: Request) -> None:
        if not settings.api_key:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise OpenAIError(401, "This studio requires an API key: send it as 'Authorization: "
                                   "Bearer KEY' (the key the studio was started with, --api-key "
                                   "or TUNING_STUDIO_API_KEY).", code="missing_api_key")
        if not hmac.compare_digest(given.strip().encode(), settings.api_key.encode()):
            raise OpenAIError(401, "API key not valid: pass the key the studio was started with "
                                   "(--api-key or TUNING_STUDIO_API_KEY).", code="invalid_api_key")

    router = APIRouter(prefix=PREFIX, dependencies=[Depends(check_key)])
    models = OpenAIModels(ctx, ApiService(ctx, settings.hub_models))

    @router.get("/models")
    async def list_models():
        return await _call(models.listing)

    @router.get("/models/{model_id:path}")
    async def get_model(model_id: str):
        return await _call(models.describe, model_id)

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        body = await _call(parse_body, await request.body())
        chat = await _call(models.chat, body)
        if not chat.stream:
            return await _call(chat.whole)
        chunks = await _call(chat.chunks)
        first = await _call(next, chunks, None)  # a refusal before the stream starts is an error

        def events() -> Iterator[bytes]:
            try:
                for chunk in ([first] if first is not None else []):
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
                for chunk in chunks:
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
                yield b"data: [DONE]\n\n"
            finally:
                chunks.close()

        return StreamingResponse(events(), media_type="text/event-stream")

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    async def unknown(rest: str, request: Request):
        raise OpenAIError(404, f"There is no {request.method} {request.url.path}: the studio "
                               "serves GET /v1/models and POST /v1/chat/completions.",
                          code="unknown_url")

    return router


async def _call(function, *args):
    """Run a blocking step in a worker thread; the studio's and /v1beta's refusals become
    OpenAI's, and an unexpected failure a 500 that points to the log."""
    try:
        return await run_in_threadpool(function, *args)
    except OpenAIError:
        raise
    except ApiError as error:
        status, kind = _STATUS.get(error.status, (error.http_status, "invalid_request_error"))
        raise OpenAIError(status, error.message, kind=kind) from None
    except NotFoundError as error:
        raise OpenAIError(404, str(error), code="model_not_found") from None
    except StudioError as error:
        raise OpenAIError(400, str(error)) from None
    except Exception as error:  # the boundary: log it, answer without a traceback
        log.exception("OpenAI-compatible request failed")
        raise OpenAIError(500, f"The studio could not answer ({type(error).__name__}); the "
                               "details are in studio.log in the data folder.",
                          kind="server_error") from None


class OpenAIModels:
    """The studio's models as OpenAI names them, and chat completions with them."""

    def __init__(self, ctx: StudioContext, api: ApiService):
        self.ctx, self.api = ctx, api

    def listing(self) -> dict:
        tuned = [job for job in self.ctx.store.list_jobs() if job.gemini_state == "ACTIVE"]
        data = [_model(job.id, _epoch(job.created_at)) for job in tuned]
        data += [_model(ref.name, 0) for ref in self.api.base_refs()]
        return {"object": "list", "data": data}

    def describe(self, model_id: str) -> dict:
        target = self.target(model_id)
        return _model(target.name, 0)

    def target(self, model_id) -> Target:
        if not isinstance(model_id, str) or not model_id.strip():
            raise OpenAIError(400, "model is missing: name a model listed by GET /v1/models.",
                              param="model")
        name = model_id.strip()
        if name.startswith("models/"):
            return self._base(name.removeprefix("models/"), model_id)
        try:
            return self.api.tuned_target(name.removeprefix("tunedModels/"))
        except NotFoundError:
            if name.startswith("tunedModels/"):
                raise
        return self._base(name, model_id)

    def _base(self, name: str, asked: str) -> Target:
        try:
            return self.api.base_target(name)
        except ApiError as error:
            if error.status != "NOT_FOUND":
                raise
            raise OpenAIError(404, f"The model '{asked}' does not exist: use an id listed by GET "
                                   "/v1/models (a tuned model's id from My Library, or a base "
                                   "model's name).", param="model",
                              code="model_not_found") from None

    def chat(self, body) -> "Chat":
        body = check_keys(body, "", _FIELDS, ignored=_IGNORED, proto=False)
        if body.get("tools") or body.get("functions"):
            raise invalid("tools: function calling is not supported by the studio's models.")
        target = self.target(body.get("model"))
        conversation = _conversation(body.get("messages"))
        params = _params(body, target.defaults)
        name = target.name
        request = content.request_for(target, conversation, name, fields_at="messages[-1].content",
                                      one_turn="send one user message and no system message")
        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise invalid("stream must be true or false.")
        options = body.get("stream_options") or {}
        usage_too = bool(check_keys(options, "stream_options", ("include_usage",),
                                    ignored=("include_obfuscation",), proto=False).get("include_usage"))
        return Chat(target, request, params, stream, usage_too)


class Chat:
    """One chat completion, ready to run whole or streamed."""

    def __init__(self, target: Target, request, params: GenerationParams, stream: bool,
                 usage_too: bool):
        self.target, self.request, self.params = target, request, params
        self.stream, self.usage_too = stream, usage_too
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.target.name}

    def whole(self) -> dict:
        usage = inference.Usage()
        text = "".join(inference.stream(self.target, self.request, self.params, usage=usage))
        return {**self._head("chat.completion"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": _FINISH.get(usage.finish_reason, "stop"),
                             "logprobs": None}],
                "usage": _usage(usage)}

    def chunks(self) -> Iterator[dict]:
        usage = inference.Usage()
        pieces = inference.stream(self.target, self.request, self.params, usage=usage)

        def chunk(delta: dict, finish: str | None = None) -> dict:
            return {**self._head("chat.completion.chunk"),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                 "logprobs": None}]}

        def run():
            try:
                first = next(pieces, None)  # runs the prompt checks before the stream starts
                yield chunk({"role": "assistant", "content": ""})
                if first is not None:
                    yield chunk({"content": first})
                for piece in pieces:
                    yield chunk({"content": piece})
                yield chunk({}, _FINISH.get(usage.finish_reason, "stop"))
                if self.usage_too:
                    yield {**self._head("chat.completion.chunk"), "choices": [],
                           "usage": _usage(usage)}
            finally:
                pieces.close()

        return run()


def _conversation(messages) -> content.Conversation:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list of {role, content} objects.")
    found = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        message = check_keys(message, where, ("role", "content", "name"), proto=False)
        role = _ROLES.get(message.get("role"))
        if role is None:
            raise invalid(f"{where}.role is {json.dumps(message.get('role'))}: use system, "
                          "developer, user or assistant.")
        found.append(Message(role, _text(message.get("content"), f"{where}.content")))
    if found[-1].role != "user":
        raise invalid(f"messages[{len(found) - 1}] is not a user message: the conversation must "
                      "end with the user's turn for the model to answer.")
    if not found[-1].content.strip():
        raise invalid(f"messages[{len(found) - 1}].content is empty: give the model something to "
                      "answer.")
    return content.Conversation(tuple(found))


def _text(value, where: str) -> str:
    """A message's content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        texts = []
        for index, part in enumerate(value):
            part = check_keys(part, f"{where}[{index}]", ("type", "text"), proto=False)
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"{where}[{index}] is not a text part: the studio's models read "
                              "text only.")
            texts.append(part["text"])
        return "".join(texts)
    raise invalid(f"{where} must be a string or a list of text parts.")


def _params(body: dict, defaults: GenerationParams) -> GenerationParams:
    if body.get("n") not in (None, 1):
        raise invalid(f"n is {body.get('n')}: the studio answers with 1 choice.")
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise invalid("Give max_tokens or max_completion_tokens, not both.")
    params = replace(defaults, **checked_numbers(body, "", _NUMBERS, GenerationParams()))
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("stop must be a string or a list of strings.")
        problems = GenerationParams(stop_sequences=tuple(stops)).problems()
        if problems:
            raise invalid(f"stop: {problems[0]}")
        params = replace(params, stop_sequences=tuple(stops))
    return params


def _usage(usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.prompt_tokens + usage.output_tokens}


def _model(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNER}


def _epoch(timestamp: str) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())
    except (ValueError, AttributeError):
        return 0
