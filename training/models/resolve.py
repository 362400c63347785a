"""Turning what the user chose (the bundled id, a folder, a hub id) into a ``ModelRef``."""

from __future__ import annotations

import re
from pathlib import Path

from training.core.errors import ModelError
from training.core.layout import models_dir
from training.core.messages import say
from training.models.bundled import prepare_bundled_model
from training.models.names import (
    BUNDLED_MODEL, HUB_EXAMPLE, HUB_ID_RE, TOKENIZER_FILES, WEIGHT_PATTERNS, ModelRef,
)


def resolve_model(name: str, data_dir: Path) -> ModelRef:
    """Turn what the user chose into a ModelRef, preparing the bundled model if needed.

    Accepted, in this order: the bundled id; a folder name under ``<data_dir>/models``; a path
    to a model folder; a hub id ``org/name``. Raises ModelError saying what is wrong otherwise."""
    text = (name or "").strip()
    if not text:
        raise ModelError(say("model.none_chosen", choices=_choices()))
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
    if HUB_ID_RE.match(text) and ".." not in text and "--" not in text:
        return ModelRef(text, text, "hub")
    raise ModelError(say("model.not_a_model", name=text, choices=_choices()))


def check_model_folder(folder: Path) -> None:
    """Raise ModelError naming what a local model folder lacks."""
    if not folder.exists():
        raise ModelError(say("model.no_folder", folder=folder))
    if not folder.is_dir():
        raise ModelError(say("model.is_file", folder=folder))
    if not (folder / "config.json").is_file():
        raise ModelError(say("model.no_config", folder=folder))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(say("model.no_tokenizer", folder=folder))
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        raise ModelError(say("model.no_weights", folder=folder))


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


def _choices() -> str:
    return say("model.choices", bundled=BUNDLED_MODEL, example=HUB_EXAMPLE)
