"""Every way out of the studio behind one call, for My Library's buttons, the API's ``:export``
and ``app.py export``: the LoRA adapter, the merged model, or a GGUF file for llama.cpp and
Ollama; of the final model or of an epoch's checkpoint."""

from __future__ import annotations

from pathlib import Path

from training.core.errors import ModelError
from training.export.gguf import DEFAULT_QUANTIZATION, Progress, export_gguf
from training.export.model_export import export_adapter, export_merged

FORMATS = ("gguf", "adapter", "merged")


def export_model(store, data_dir: Path, job_id: str, fmt: str = "gguf", *,
                 quantization: str | None = None, checkpoint: str | None = None,
                 progress: Progress | None = None) -> Path:
    """The export as a zip in ``<data_dir>/exports``; ModelError saying what to choose when the
    format, quantization or checkpoint cannot be used."""
    fmt = (fmt or "").strip().lower()
    if fmt == "gguf":
        return export_gguf(store, data_dir, job_id, quantization or DEFAULT_QUANTIZATION,
                           checkpoint, progress)
    if fmt not in FORMATS:
        raise ModelError.of("export.model_format_unknown", fmt=fmt, choices=", ".join(FORMATS))
    if quantization:
        raise ModelError.of("export.quantization_gguf_only", fmt=fmt)
    export = export_adapter if fmt == "adapter" else export_merged
    return export(store, data_dir, job_id, checkpoint)
