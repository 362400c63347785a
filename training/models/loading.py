"""Loading tokenizers and models: offline for folders, the Hub only for hub ids, one build at a
time (``building``). torch and transformers are imported inside the functions."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator

from training.core.errors import ModelError
from training.models.names import (
    BUNDLED_MODEL, HUB_TIMEOUT_S, TOKENIZER_CACHE_SIZE, ModelRef, first_line,
)

log = logging.getLogger(__name__)

_tokenizers: OrderedDict[str, object] = OrderedDict()
_tokenizers_lock = threading.Lock()
_building_lock = threading.RLock()


@contextmanager
def building() -> Iterator[None]:
    """Hold while a model is loaded or an adapter added to one. transformers' ``from_pretrained``
    changes process-wide state while it runs (torch's default dtype, ``torch.nn.init`` functions
    made no-ops, creation ops patched for the meta device), so a model built at the same moment in
    another thread (the bundled model being prepared, a job starting, the playground or the API
    loading one) can come out uninitialised or on the meta device ("Cannot copy out of meta
    tensor"). Builds therefore take turns."""
    with _building_lock:
        yield


def load_tokenizer(ref: ModelRef):
    """The model's tokenizer, loaded once per path and shared (thread-safe). Treat it as
    read-only: do not change its padding side or special tokens in place."""
    with _tokenizers_lock:
        if ref.path in _tokenizers:
            _tokenizers.move_to_end(ref.path)
            return _tokenizers[ref.path]
        from transformers import AutoTokenizer

        tokenizer = _from_pretrained(AutoTokenizer, ref)
        _tokenizers[ref.path] = tokenizer
        while len(_tokenizers) > TOKENIZER_CACHE_SIZE:
            _tokenizers.popitem(last=False)
        return tokenizer


def load_model(ref: ModelRef, dtype: str = "float32"):
    """A fresh causal language model (not cached: trainers change it), on the CPU, in ``dtype``
    (``float32`` or ``bfloat16``)."""
    from transformers import AutoModelForCausalLM

    with building():
        return _from_pretrained(AutoModelForCausalLM, ref, dtype=dtype)


def _from_pretrained(loader, ref: ModelRef, **kwargs):
    """``loader.from_pretrained`` offline for folders; for hub ids, the local cache first, then
    a download that fails with a ModelError instead of hanging or leaking library errors."""
    if ref.kind != "hub":
        try:
            return loader.from_pretrained(ref.path, local_files_only=True, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError.of("model.folder_unloadable", model=ref.name, path=ref.path,
                                error=first_line(exc)) from exc
    try:
        return loader.from_pretrained(ref.path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass  # not in the local cache
    if _hub_offline():
        raise _download_error(ref, "offline mode is on")
    try:
        from huggingface_hub import model_info

        model_info(ref.path, timeout=HUB_TIMEOUT_S)  # fail fast when the Hub is unreachable
        return loader.from_pretrained(ref.path, **kwargs)
    except Exception as exc:  # the boundary: network, HTTP and file errors of several libraries
        log.warning("Downloading %s failed", ref.path, exc_info=True)
        raise _download_error(ref, _hub_reason(exc)) from exc


def _hub_offline() -> bool:
    flags = (os.environ.get(n, "") for n in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if any(value.strip().upper() in ("1", "ON", "YES", "TRUE") for value in flags):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_reason(exc: Exception) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "GatedRepoError" in names:
        return "access to it is restricted; accept its terms on the Hub and log in"
    if "RepositoryNotFoundError" in names:
        return "it does not exist or is private"
    if names & {"ConnectionError", "TimeoutError", "ConnectError", "TimeoutException", "OfflineModeIsEnabled"}:
        return "the Hub could not be reached"
    return first_line(exc)


def _download_error(ref: ModelRef, reason: str) -> ModelError:
    return ModelError(
        f"The model '{ref.name}' could not be downloaded from the Hugging Face Hub ({reason}): "
        f"use a local model folder or the bundled model {BUNDLED_MODEL}."
    )
