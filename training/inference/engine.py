"""Answering with a base or tuned model, the prompt rendered by the same template function as in
training (``training.core.template.render_prompt``), never re-implemented here.

What a request may be, by target (see ``training.inference.targets``):

- a tuned structured model: its input fields (``{"question": ..., "context": ...}``), or one
  text when it has a single input field;
- a tuned chat model: a conversation (``Message``s or ``{"role", "content"}`` dicts ending with
  a user turn), rendered through the fields ``system`` / ``history`` / ``user`` exactly as chat
  datasets are, or one text as the user's message;
- a base model: a text (completed as it is), or a conversation (the model's chat template).

The studio's path (``stream`` / ``generate``): the cached model with the adapter merged
(``training.inference.model_cache``) and the decode loop of ``training.inference.decoding`` (prompt lookup for
greedy answers). Its greedy answer is the plain transformers + peft greedy answer in float32; a
merged weight or a many-token matrix multiply rounds differently in the last bits, which could
only change the answer where two tokens tie to ~1e-6. ``exact=True`` runs the plain computation
itself (adapter unmerged, one token per step) for a reference.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal, Mapping, Sequence, Union

from training.core.dataset import CHAT_TEMPLATE, Dataset, Message, PromptTemplate, format_history
from training.core.errors import DatasetError
from training.core.generation import GenerationParams, TextStream
from training.core.messages import say
from training.core.template import render_prompt
from training.inference.decoding import MAX_NGRAM, DraftIndex, decode
from training.inference.model_cache import LoadedModel, ModelCache, apply_adapter
from training.inference.targets import Target, list_checkpoints, resolve_target, with_template
from training.models import ModelRef, load_model, load_tokenizer

__all__ = ["Target", "Usage", "resolve_target", "list_checkpoints", "with_template", "build_prompt",
           "stream", "generate", "default_cache", "load_for_inference", "answer"]

Request = Union[str, Mapping[str, str], Sequence[Message], Sequence[Mapping[str, str]]]

_default_cache: ModelCache | None = None
_default_cache_lock = threading.Lock()


def default_cache() -> ModelCache:
    """The process's shared model cache (default bound and precision)."""
    global _default_cache
    with _default_cache_lock:
        if _default_cache is None:
            _default_cache = ModelCache()
        return _default_cache


# --- prompts -----------------------------------------------------------------------------------


def build_prompt(target: Target, request: Request, tokenizer=None) -> str:
    """The exact text the model is given for ``request`` (the playground can show it). Raises
    DatasetError saying what to type instead when the request does not fit the model."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(target.base)
    template = target.template
    if template is None:
        if isinstance(request, str):
            if not request.strip():
                raise DatasetError(say("prompt.empty_continue"))
            return request
        if isinstance(request, Mapping):
            raise DatasetError(say("prompt.base_has_no_fields", model=target.name))
        return render_prompt(CHAT_TEMPLATE, chat_fields(request), tokenizer)
    if template.kind == "chat":
        if isinstance(request, str):
            request = [Message("user", request)]
        fields = dict(request) if isinstance(request, Mapping) else chat_fields(request)
        unknown = [key for key in fields if key not in template.input_keys]
        if unknown:
            raise DatasetError(say("prompt.chat_fields", field=unknown[0]))
        if not fields.get("user", "").strip():
            raise DatasetError(say("prompt.empty_message"))
        return render_prompt(template, fields, tokenizer)
    return render_prompt(template, _structured_fields(target, template, request), tokenizer)


def chat_fields(messages: Sequence) -> dict[str, str]:
    """A conversation as a chat dataset's fields: the system message, the earlier turns as a
    ``history`` transcript (``training.core.dataset.format_history``) and the last user message."""
    turns = [_message(m) for m in messages]
    system = "\n".join(m.content for m in turns if m.role == "system")
    rest = [m for m in turns if m.role != "system"]
    if not rest or rest[-1].role != "user" or not rest[-1].content.strip():
        raise DatasetError(say("prompt.end_with_user"))
    return {"system": system, "history": format_history(rest[:-1]), "user": rest[-1].content}


def _message(item) -> Message:
    if isinstance(item, Message):
        return item
    role, content = item.get("role"), item.get("content")
    if role not in ("system", "user", "assistant") or not isinstance(content, str):
        raise DatasetError(say("prompt.bad_role", role=repr(role)))
    return Message(role, content)


def _structured_fields(target: Target, template: PromptTemplate, request) -> dict[str, str]:
    keys = template.input_keys
    if isinstance(request, str):
        if len(keys) != 1:
            raise DatasetError(say("prompt.needs_fields", model=target.name, fields=", ".join(keys)))
        request = {keys[0]: request}
    if not isinstance(request, Mapping):
        raise DatasetError(say("prompt.not_chat", model=target.name, fields=", ".join(keys)))
    unknown = [key for key in request if key not in keys]
    if unknown:
        raise DatasetError(say("prompt.unknown_field", model=target.name, field=unknown[0],
                               fields=", ".join(keys)))
    fields = {key: str(request.get(key) or "") for key in keys}
    if not any(value.strip() for value in fields.values()):
        either = keys[0] if len(keys) == 1 else say("json.or", first=", ".join(keys[:-1]),
                                                       last=keys[-1])
        raise DatasetError(say("prompt.fields_empty", fields=either))
    return fields


# --- answering ---------------------------------------------------------------------------------


@dataclass
class Usage:
    """What one answer cost and why it ended, filled in by ``stream`` as it goes."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    finish_reason: Literal["", "STOP", "MAX_TOKENS"] = ""
    """Gemini's names: STOP (end of text or a stop sequence), MAX_TOKENS; empty until the end."""


def stream(target: Target, request: Request, params: GenerationParams | None = None, *,
           cache: ModelCache | None = None, exact: bool = False,
           ignore_eos: bool = False, usage: Usage | None = None) -> Iterator[str]:
    """The answer as text increments, as it is generated (their concatenation is ``generate``'s
    answer). ``params``: the target's defaults when None. Stops at an end-of-text token, the
    first stop sequence (not included) or ``max_output_tokens``; closing the iterator stops
    generation. ``ignore_eos`` generates exactly ``max_output_tokens`` (benchmarks). ``usage``,
    when given, receives the token counts and the finish reason."""
    params = (params if params is not None else target.defaults).check()
    usage = usage if usage is not None else Usage()
    loaded = load(target, cache, exact=exact)
    prompt_ids = prompt_token_ids(target, loaded, request)
    usage.prompt_tokens = len(prompt_ids)
    tokenizer = loaded.tokenizer
    text = TextStream(lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                      params.stop_sequences)
    answers = draft_index(target, loaded) if not exact and params.greedy else None
    chunks = decode(loaded.model, prompt_ids, params, eos_token_ids(loaded),
                    ignore_eos=ignore_eos, lookup=not exact, answers=answers)
    try:
        for chunk in chunks:
            piece = text.add(chunk)
            usage.output_tokens = text.token_count
            if piece:
                yield piece
            if text.stopped:
                usage.finish_reason = "STOP"
                return
        usage.finish_reason = "MAX_TOKENS" if text.token_count >= params.max_output_tokens else "STOP"
        rest = text.finish()
        if rest:
            yield rest
    finally:
        chunks.close()


def generate(target: Target, request: Request, params: GenerationParams | None = None, *,
             cache: ModelCache | None = None, exact: bool = False) -> str:
    """The whole answer (see ``stream``)."""
    return "".join(stream(target, request, params, cache=cache, exact=exact))


MAX_DRAFT_EXAMPLES = 2_000
"""Training outputs indexed for drafting (the first ones of a bigger dataset)."""

_draft_indexes: OrderedDict[tuple, DraftIndex] = OrderedDict()
_draft_indexes_lock = threading.Lock()


def draft_index(target: Target, loaded: LoadedModel) -> DraftIndex | None:
    """The tuned model's training outputs, tokenized as in training with the end of their
    prompt, for drafting (``training.inference.decoding.DraftIndex``); None for a base model."""
    if target.training_set is None or target.template is None:
        return None
    key = (target.training_version, target.template, loaded.tokenizer.name_or_path)
    with _draft_indexes_lock:
        if key in _draft_indexes:
            _draft_indexes.move_to_end(key)
            return _draft_indexes[key]
    from training.core.config import TuningConfig
    from training.tuning.batching import IGNORE_INDEX, tokenize_examples

    examples = Dataset(target.template, target.training_set.examples[:MAX_DRAFT_EXAMPLES])
    answers = []
    for example in tokenize_examples(examples, loaded.tokenizer, TuningConfig()):
        first = next((i for i, label in enumerate(example.labels) if label != IGNORE_INDEX), None)
        if first is not None:
            answers.append(example.input_ids[max(0, first - MAX_NGRAM):])
    index = DraftIndex(answers, eos_token_ids(loaded))
    with _draft_indexes_lock:
        _draft_indexes[key] = index
        while len(_draft_indexes) > 4:
            _draft_indexes.popitem(last=False)
    return index


def load(target: Target, cache: ModelCache | None = None, *, exact: bool = False) -> LoadedModel:
    """The target's model from ``cache`` (the shared one by default), loading it on a miss."""
    cache = cache if cache is not None else default_cache()
    return cache.get(target.base, target.adapter_dir, merge=not exact, label=target.label)


def prompt_token_ids(target: Target, loaded: LoadedModel, request: Request) -> list[int]:
    """The rendered prompt's tokens, without special tokens added (as in training). Raises
    DatasetError when the prompt is longer than the model takes."""
    prompt = build_prompt(target, request, loaded.tokenizer)
    ids = loaded.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise DatasetError(say("prompt.empty_answer"))
    limit = target.max_input_tokens
    if limit is not None and len(ids) > limit:
        raise DatasetError(say("prompt.too_long_tuned", tokens=len(ids), model=target.name,
                               limit=limit))
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if positions and len(ids) >= positions:
        raise DatasetError(say("prompt.too_long_base", tokens=len(ids), model=target.base.name,
                               limit=positions))
    return ids


def eos_token_ids(loaded: LoadedModel) -> list[int]:
    """The tokenizer's end token and the model's generation-config end tokens."""
    ids = set()
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    config = getattr(loaded.model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return sorted(ids)


# --- the minimal interface the task-accuracy bench uses -----------------------------------------


def load_for_inference(base: ModelRef, adapter_dir: Path | None = None):
    """(model, tokenizer): the base model, with the LoRA adapter applied (unmerged) when given."""
    model = load_model(base)
    if adapter_dir is not None:
        model = apply_adapter(model, adapter_dir, False, base, str(adapter_dir))
    model.eval()
    return model, load_tokenizer(base)


def answer(model, tokenizer, template: PromptTemplate, fields, max_new_tokens: int = 64) -> str:
    """Greedy answer to one example's input fields with plain ``generate``, prompted exactly as
    in training."""
    import torch

    prompt = render_prompt(template, fields, tokenizer)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
