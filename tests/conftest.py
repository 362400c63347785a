"""Shared test set-up: offline, one thread, and the models every test file may use.

``bundled_model_dir`` is the real default model, converted once into ``<repo>/.cache`` (git-ignored)
and reused by later runs; ``tiny_model_dir`` is a 2-layer random Llama with the same tokenizer,
built in-process, for fast training tests.
"""

import os
import sys
from pathlib import Path

# Before anything imports torch, transformers or huggingface_hub: they read these at import.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pytest  # noqa: E402

TEST_MODELS_DIR = REPO_ROOT / ".cache" / "test-models"
"""A data_dir whose ``models/`` holds the converted bundled model between test runs."""

TINY_LLAMA = dict(
    num_hidden_layers=2,
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    max_position_embeddings=2048,
)
"""The fast test model's shape (about 3.2 M parameters, nearly all in the embedding)."""


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """The bundled SmolLM2-135M-Instruct as a transformers folder (about 20 s the first time)."""
    from training.models import prepare_bundled_model

    return prepare_bundled_model(TEST_MODELS_DIR)


@pytest.fixture(scope="session")
def tokenizer(bundled_model_dir):
    """The bundled model's tokenizer (EOS ``<|im_end|>``, with a chat template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_model_dir, local_files_only=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A seeded, randomly initialised 2-layer LlamaForCausalLM saved with the bundled tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **TINY_LLAMA,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """The studio's data folder for one test (not created: code under test creates it)."""
    return tmp_path / "data"
