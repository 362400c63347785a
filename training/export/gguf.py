"""A tuned model as one GGUF file for llama.cpp and Ollama, with an Ollama ``Modelfile``.

Three steps, each named when it fails: **merge** (the adapter merged into the base model, saved
with the prompt as its chat template: ``model_export.save_merged``), **convert** (llama.cpp's own
``convert_hf_to_gguf.py``, from the ``llama-cpp-python`` source package, in a child process: f32,
f16, bf16 or Q8_0, the chat template carried into the file) and, for Q4_K_M, **quantize**
(llama.cpp's quantizer through ``llama-cpp-python``, in a child process, from the f16 file).
Everything is written in a hidden staging folder and zipped by a rename: a failed or interrupted
export leaves no half-written file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from training.core.errors import ModelError
from training.core.layout import exports_dir
from training.core.messages import say
from training.export.archive import zip_folder
from training.export.model_card import ModelFacts, model_card
from training.export.model_export import CARD_FILE, export_name, gather_facts, save_merged, staging
from training.export.ollama import MODELFILE, modelfile

CONVERTER_ENV = "TUNING_STUDIO_LLAMA_CPP"
"""A folder holding llama.cpp's ``convert_hf_to_gguf.py`` (with its ``gguf-py`` and
``conversion``), instead of the one ``make`` unpacks into ``<venv>/share/llama.cpp``."""

CONVERTER = "convert_hf_to_gguf.py"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"


@dataclass(frozen=True)
class Quantization:
    name: str
    convert_to: str
    """The converter's ``--outtype``."""
    quantize_to: str | None = None
    """llama.cpp's file type to quantize the converted file to, when the converter has none."""
    about: str = ""


QUANTIZATIONS = {q.name: q for q in (
    Quantization("f16", "f16", about="16-bit floats: the merged weights, halved (lossless for "
                                      "most uses)"),
    Quantization("bf16", "bf16", about="bfloat16: as trained on recent GPUs"),
    Quantization("q8_0", "q8_0", about="8-bit: half of f16, answers nearly always the same"),
    Quantization("q4_k_m", "f16", "LLAMA_FTYPE_MOSTLY_Q4_K_M",
                 about="4-bit (llama.cpp's Q4_K_M): a quarter of f16, for small machines"),
    Quantization("f32", "f32", about="32-bit floats: exactly the studio's weights"),
)}
DEFAULT_QUANTIZATION = "q8_0"

Progress = Callable[[float, str], None]
"""``progress(fraction done, what is being done)``."""


def export_gguf(store, data_dir: Path, job_id: str, quantization: str = DEFAULT_QUANTIZATION,
                checkpoint: str | None = None, progress: Progress | None = None) -> Path:
    """``<data_dir>/exports/<id>[-epoch-N]-<quantization>-gguf.zip``: the GGUF file, its
    ``Modelfile`` and a model card; seconds for a small model, minutes for a large one."""
    chosen = _quantization(quantization)
    facts = gather_facts(store, data_dir, job_id, checkpoint)
    name = f"{export_name(facts)}-{chosen.name}-gguf"
    with staging(data_dir) as folder:
        save_gguf(facts, folder / name, chosen.name, progress)
        (progress or _silent)(0.97, say("gguf.step.package"))
        return zip_folder(folder / name, exports_dir(data_dir) / f"{name}.zip", name)


def save_gguf(facts: ModelFacts, folder: Path, quantization: str,
              progress: Progress | None = None) -> Path:
    """Into ``folder``: ``<name>-<quantization>.gguf``, ``Modelfile`` and ``README.md``; the
    path of the GGUF file. ModelError naming the step when one fails."""
    chosen, progress = _quantization(quantization), progress or _silent
    folder.mkdir(parents=True, exist_ok=True)
    gguf = folder / f"{export_name(facts)}-{chosen.name}.gguf"
    merged, converted = folder.parent / ".merged", folder.parent / ".converted.gguf"
    progress(0.0, say("gguf.step.merge"))
    _step("merge", lambda: save_merged(facts, merged))
    progress(0.35, say("gguf.step.convert"))
    _step("convert", lambda: convert(merged, converted if chosen.quantize_to else gguf,
                                     chosen.convert_to))
    if chosen.quantize_to:
        progress(0.75, say("gguf.step.quantize"))
        _step("quantize", lambda: quantize(converted, gguf, chosen.quantize_to))
    (folder / MODELFILE).write_text(modelfile(facts, gguf.name), encoding="utf-8")
    (folder / CARD_FILE).write_text(model_card(facts, "gguf", gguf_file=gguf.name),
                                    encoding="utf-8")
    return gguf


def converter_path() -> Path:
    """llama.cpp's converter script; ModelError saying how to install it when it is missing."""
    folders = [os.environ.get(CONVERTER_ENV, ""), str(Path(sys.prefix) / "share" / "llama.cpp")]
    for folder in filter(None, folders):
        script = Path(folder) / CONVERTER
        if script.is_file():
            return script
    raise ModelError.of("gguf.no_converter", folder=Path(sys.prefix) / "share" / "llama.cpp")


def convert(model_dir: Path, target: Path, outtype: str) -> None:
    """``convert_hf_to_gguf.py MODEL --outfile TARGET --outtype OUTTYPE`` in a child process."""
    command = [sys.executable, str(converter_path()), str(model_dir), "--outfile", str(target),
               "--outtype", outtype]
    _run(command, target)


def quantize(source: Path, target: Path, file_type: str) -> None:
    """llama.cpp's quantizer (``llama_model_quantize``) in a child process."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelError.of("gguf.no_llama_cpp", package=LLAMA_CPP_PYTHON) from None
    _run([sys.executable, "-m", "training.export.quantize", str(source), str(target), file_type],
         target)


def _run(command: list[str], target: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get(
        "PYTHONPATH")]))}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root)
    if result.returncode != 0 or not target.is_file():
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise RuntimeError(lines[-1][:300] if lines else f"exit code {result.returncode}")


def _step(step: str, run: Callable[[], None]) -> None:
    try:
        run()
    except ModelError as error:
        if error.key.startswith("gguf."):
            raise
        raise ModelError.of("gguf.failed", step=say(f"gguf.step_name.{step}"),
                            detail=error.said()) from error
    except Exception as error:  # the boundary: torch, the converter, the quantizer
        detail = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
        raise ModelError.of("gguf.failed", step=say(f"gguf.step_name.{step}"),
                            detail=detail) from error


def _quantization(name: str) -> Quantization:
    chosen = QUANTIZATIONS.get((name or "").strip().lower())
    if chosen is None:
        raise ModelError.of("gguf.unknown_quantization", name=name,
                            choices=", ".join(QUANTIZATIONS))
    return chosen


def _silent(fraction: float, what: str) -> None:
    pass
