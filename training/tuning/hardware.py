"""Where and in which precision to train, and what running out of memory means to the user.

Precision ``auto`` picks bf16 where the hardware runs it fast: CUDA devices that support it, and
CPUs with AVX-512 BF16 or AMX *on which a bf16 matrix multiply measures faster than float32*.
The measurement matters: on 2-vCPU AMD Zen 4 machines bf16 ran 180-226 GFLOP/s against 85-110
for float32, but on an Intel Xeon VM that reports ``avx512_bf16`` without AMX, bf16 ran about
100 GFLOP/s against 190 for float32 (training 1.6x slower). fp16 is never chosen on a CPU
(0.4 GFLOP/s measured).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from training.core.config import TuningConfig
from training.core.errors import TrainingError

CPUINFO = Path("/proc/cpuinfo")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_MIN_SPEEDUP = 1.1
"""bf16 must beat float32 by this factor in the probe to be chosen on a CPU."""

PROBE_SHAPE = (512, 576, 1536)
"""(rows, inner, columns) of the probe's matrix multiply: one MLP projection of the bundled model
for a batch of about 512 tokens."""

PROBE_REPEATS = 4


def pick_device() -> str:
    """``cuda`` when a CUDA device is present, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_precision(config: TuningConfig, device: str) -> str:
    """``bf16`` or ``fp32``: the configured precision, or for ``auto`` the faster one here."""
    if config.precision != "auto":
        return config.precision
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    cpuinfo = _read_cpuinfo() if device == "cpu" else ""
    if cpu_has_bf16_flags(cpuinfo):
        # AMX runs bf16 several times faster (1987 against 345 GFLOP/s measured here): no timing,
        # so that every process on the machine (studio, workers) chooses alike however busy
        # it is; AVX-512 BF16 alone is timed.
        if cpu_has_amx_bf16(cpuinfo) or cpu_bf16_is_faster():
            return "bf16"
    return "fp32"


def _cpu_flags(cpuinfo: str) -> set[str]:
    """The flags of /proc/cpuinfo's first ``flags`` line (none when there is none)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_bf16_flags(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's flags name an x86 bf16 matrix instruction set."""
    return bool(_cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS))


def cpu_has_amx_bf16(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's flags name AMX's bf16 tiles."""
    return "amx_bf16" in _cpu_flags(cpuinfo)


def _read_cpuinfo() -> str:
    try:
        return CPUINFO.read_text()
    except OSError:  # not Linux
        return ""


@functools.lru_cache(maxsize=1)
def cpu_bf16_is_faster() -> bool:
    """Time a bf16 and a float32 matrix multiply of the probe's shape (best of a few runs each,
    interleaved so a busy machine slows both alike): about 0.1 s, once per process."""
    import torch

    rows, inner, columns = PROBE_SHAPE
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(rows, inner).to(dtype)
        b = torch.randn(inner, columns).to(dtype)
        a @ b  # first call: kernel selection and allocation
        best[dtype] = (a, b, float("inf"))
    for _ in range(PROBE_REPEATS):
        for dtype, (a, b, fastest) in best.items():
            start = time.perf_counter()
            a @ b
            best[dtype] = (a, b, min(fastest, time.perf_counter() - start))
    return best[torch.float32][2] > BF16_MIN_SPEEDUP * best[torch.bfloat16][2]


# --- running out of memory ---------------------------------------------------------------------


def is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError, Python's MemoryError, or an allocator's RuntimeError."""
    import torch

    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


def out_of_memory_error(config: TuningConfig, device: str, longest_tokens: int) -> TrainingError:
    """What to lower when a step does not fit in memory."""
    return TrainingError.of(
        "training.out_of_memory_gpu" if device.startswith("cuda") else "training.out_of_memory",
        batch_size=config.batch_size, longest=longest_tokens, half=max(1, config.batch_size // 2),
        max_input=config.max_input_tokens)
