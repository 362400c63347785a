"""`python app.py export MODEL_ID`: a tuned model out of the studio, in the terminal, while the
studio may be serving: a GGUF file with its Ollama Modelfile (the default), the LoRA adapter, or
the merged model, of the final model or of a checkpoint, unpacked into ``--out``.

Progress goes to standard error, the folder written to standard output. Exit status: 0 when
written, 2 when the model, format, quantization or checkpoint cannot be used or a step fails (the
message names it), 130 after Ctrl-C (nothing is left half-written).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import TextIO

from training.core.errors import StudioError


def add_arguments(parser) -> None:
    """The `export` command's options (called by app.py's parse_args)."""
    from training.export.formats import FORMATS
    from training.export.gguf import DEFAULT_QUANTIZATION, QUANTIZATIONS

    parser.add_argument("model", help="a tuned model id (see My Library)")
    parser.add_argument("--format", default="gguf", choices=FORMATS,
                        help="gguf (llama.cpp, Ollama; the default), adapter (peft) or merged "
                             "(transformers)")
    parser.add_argument("--quantization", default=None, choices=tuple(QUANTIZATIONS),
                        help=f"GGUF only (default {DEFAULT_QUANTIZATION}): "
                             + "; ".join(f"{q.name}: {q.about}" for q in QUANTIZATIONS.values()))
    parser.add_argument("--checkpoint", default=None, help="an epoch's checkpoint, e.g. epoch-2 "
                                                           "(default: the final model)")
    parser.add_argument("--out", type=Path, default=Path("."),
                        help="folder to write the export into (default: the current folder)")


def run(args, data_dir: Path, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from storage.db import Store
    from training.export.formats import export_model
    from training.tuning.runtime import configure_threads

    configure_threads()

    def progress(done: float, what: str) -> None:
        print(f"{done:4.0%}  {what}", file=err, flush=True)

    try:
        with Store(data_dir) as store:
            archive = export_model(store, data_dir, args.model, args.format,
                                   quantization=args.quantization, checkpoint=args.checkpoint,
                                   progress=progress)
        written = _unpack(archive, args.out)
    except StudioError as error:
        print(str(error), file=err)
        return 2
    except KeyboardInterrupt:
        return 130
    print(written, file=out)
    return 0


def _unpack(archive: Path, folder: Path) -> Path:
    """The archive's one folder, unpacked into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as opened:
        root = opened.namelist()[0].split("/")[0]
        opened.extractall(folder)
    return (folder / root).resolve()
