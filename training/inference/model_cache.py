"""Models loaded for answering, kept in memory within a bound, least recently used dropped first.

Each entry is its own model, loaded fresh: a tuned model's LoRA adapter is *merged* into a copy
of its base weights (``merge_and_unload``), so answering costs what the base model costs (an
unmerged adapter adds 14-24 % per token, and more on a small CPU where its 200-odd extra small
matrix multiplies are overhead-bound). Nothing is shared between entries, so merging never
changes a model another target uses. ``merge=False`` keeps the adapter separate, as plain
transformers + peft run it: the exact reference (see ``training.inference.engine``).

Precision: the trainer's rule (``training.tuning.hardware.pick_precision`` with ``auto``): bfloat16 on
CUDA devices that support it and on CPUs where a bf16 matrix multiply measures faster, else
float32. Decoding reads every weight once per token, so bf16 halves the bytes, but on CPUs that
report ``avx512_bf16`` without AMX its kernels are no faster than float32's (the 2-vCPU Xeon this
was measured on: 53 against 51 ms per token for SmolLM2-135M with 2 spinning threads), and a
float32 answer is the one plain transformers + peft gives. Adapters are merged in float32 and
the result cast once.

The bound counts parameter and buffer bytes of the loaded models. A model bigger than the whole
bound is still loaded (alone). Entries in use by a generation in another thread stay alive
until it ends even when evicted (the generation holds its own reference).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.core.errors import ModelError
from training.core.layout import ADAPTER_WEIGHTS
from training.core.messages import say
from training.models import ModelRef, building, load_model, load_tokenizer

Precision = Literal["auto", "fp32", "bf16"]

MAX_DEFAULT_BYTES = 4 * 10**9
MIN_DEFAULT_BYTES = 10**9
RAM_SHARE = 0.25
"""The default bound: a quarter of the machine's memory, between 1 and 4 GB."""


@dataclass(frozen=True)
class CacheKey:
    base_path: str
    adapter_path: str | None
    adapter_stamp: int
    """Modification time of the adapter's weights: an adapter written again is loaded again."""
    dtype: str
    merged: bool


@dataclass(frozen=True)
class LoadedModel:
    model: object
    tokenizer: object
    nbytes: int
    label: str
    """What the status line calls it: the tuned model id or base model name."""
    dtype: str
    device: str


class ModelCache:
    """Thread-safe LRU cache of loaded models. ``get`` loads on a miss (seconds); two threads
    asking for the same model at once load it once."""

    def __init__(self, max_bytes: int | None = None, precision: Precision = "auto",
                 device: str | None = None):
        self.max_bytes = max_bytes if max_bytes is not None else default_max_bytes()
        self.precision = precision
        self._device = device
        self._dtype: str | None = None
        self._entries: OrderedDict[CacheKey, LoadedModel] = OrderedDict()
        self._loading: dict[CacheKey, threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        if self._device is None:
            from training.tuning.hardware import pick_device

            self._device = pick_device()
        return self._device

    @property
    def dtype(self) -> str:
        """``float32`` or ``bfloat16``: what models are loaded in."""
        if self._dtype is None:
            from training.core.config import TuningConfig
            from training.tuning.hardware import pick_precision

            chosen = pick_precision(TuningConfig(precision=self.precision), self.device)
            self._dtype = "bfloat16" if chosen == "bf16" else "float32"
        return self._dtype

    def key(self, base: ModelRef, adapter_dir: Path | None, merge: bool = True) -> CacheKey:
        adapter = str(Path(adapter_dir).resolve()) if adapter_dir is not None else None
        return CacheKey(base.path, adapter, _stamp(adapter_dir), self.dtype,
                        merge and adapter is not None)

    def get(self, base: ModelRef, adapter_dir: Path | None = None, *, merge: bool = True,
            label: str = "") -> LoadedModel:
        key = self.key(base, adapter_dir, merge)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    return self._entries[key]
            try:
                entry = self._load_or_make_room(base, adapter_dir, key, label or base.name)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                self._entries[key] = entry
                self._loading.pop(key, None)
                self._evict()
            return entry

    def labels(self) -> list[str]:
        """Loaded models, least recently used first."""
        with self._lock:
            return [entry.label for entry in self._entries.values()]

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(entry.nbytes for entry in self._entries.values())

    def status(self) -> str:
        """``2 models loaded, 1.1 GB of 4.0 GB`` (decimal gigabytes)."""
        with self._lock:
            count = len(self._entries)
            used = sum(entry.nbytes for entry in self._entries.values())
        room = _gb(self.max_bytes)
        if count == 0:
            return say("cache.empty", room=room)
        return say("cache.one" if count == 1 else "cache.many", count=count, used=_gb(used), room=room)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _evict(self) -> None:
        total = sum(entry.nbytes for entry in self._entries.values())
        while total > self.max_bytes and len(self._entries) > 1:
            _, entry = self._entries.popitem(last=False)
            total -= entry.nbytes

    def _load_or_make_room(self, base: ModelRef, adapter_dir: Path | None, key: CacheKey,
                           label: str) -> LoadedModel:
        """Load; when memory runs out, drop every cached model and try once more."""
        from training.tuning.hardware import is_out_of_memory

        try:
            return self._load(base, adapter_dir, key, label)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
        self.clear()
        try:
            return self._load(base, adapter_dir, key, label)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            raise ModelError.of("model.no_memory_gpu" if self.device.startswith("cuda") else
                                "model.no_memory", label=label) from error

    def _load(self, base: ModelRef, adapter_dir: Path | None, key: CacheKey, label: str) -> LoadedModel:
        model = load_model(base, dtype="float32")
        if adapter_dir is not None:
            model = apply_adapter(model, adapter_dir, key.merged, base, label)
        if key.dtype != "float32" or self.device != "cpu":
            import torch

            model = model.to(device=self.device, dtype=getattr(torch, key.dtype))
        model.eval()
        return LoadedModel(model, load_tokenizer(base), model_bytes(model), label, key.dtype,
                           self.device)


def apply_adapter(model, adapter_dir: Path, merge: bool, base: ModelRef, label: str):
    """The model with the LoRA adapter applied, merged into its weights when ``merge``; a
    ModelError saying what to choose instead when the adapter does not fit."""
    from peft import PeftModel

    try:
        with building():
            model = PeftModel.from_pretrained(model, str(adapter_dir))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "out of memory" in str(error).lower():
            raise
        line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ModelError.of("model.adapter_mismatch", label=label, folder=adapter_dir,
                            base=base.name, line=line) from error
    return model.merge_and_unload() if merge else model


def model_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (tied weights counted once)."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def default_max_bytes() -> int:
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return MIN_DEFAULT_BYTES * 2
    return int(min(MAX_DEFAULT_BYTES, max(MIN_DEFAULT_BYTES, ram * RAM_SHARE)))


def _stamp(adapter_dir: Path | None) -> int:
    if adapter_dir is None:
        return 0
    folder = Path(adapter_dir)
    stamps = [p.stat().st_mtime_ns for p in folder.glob(f"{Path(ADAPTER_WEIGHTS).stem}.*") if p.is_file()]
    return max(stamps, default=0)


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB"
