"""llama.cpp's quantizer, run as ``python -m training.export.quantize SOURCE TARGET FILE_TYPE``
(``FILE_TYPE``: a ``llama_cpp`` constant such as ``LLAMA_FTYPE_MOSTLY_Q4_K_M``). A child process
of the export, so that a crash in native code cannot take the studio down."""

from __future__ import annotations

import ctypes
import os
import sys


def main(argv: list[str]) -> int:
    import llama_cpp

    source, target, file_type = argv
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, file_type)
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(source.encode(), target.encode(), ctypes.byref(params))
    if code != 0:
        print(f"llama_model_quantize returned {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
