"""Starting and reading a job's worker group from the runner: the torchrun command, its
environment, stopping it, and what to tell the user when it died without an outcome."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from training.core.errors import TrainingError

REPO = Path(__file__).resolve().parents[2]
"""The folder holding the ``training`` package (the workers' working folder)."""

TAIL_LINES = 3
"""Lines of the worker's output a death message quotes."""

_EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")
_LAUNCHER_REPORT = re.compile(r"torch\.distributed\.elastic|^\*{5,}|^={5,}|^W\d{4} ", re.M)


@dataclass(frozen=True)
class Nodes:
    """The machines a job trains on: this one alone, or ``count`` machines meeting at
    ``endpoint`` (``HOST:PORT`` on the first machine, which runs the studio: node 0)."""

    count: int = 1
    endpoint: str | None = None
    rank: int = 0

    def launcher(self, nproc_per_node: int) -> list[str]:
        """torchrun's options: a standalone machine, or a static rendezvous where the node rank
        fixes the ranks (rank 0, which reports and writes, is on the studio's machine)."""
        if self.count == 1:
            return ["--standalone", "--nnodes=1", f"--nproc-per-node={nproc_per_node}"]
        return [f"--nnodes={self.count}", f"--node-rank={self.rank}", "--rdzv-backend=static",
                f"--rdzv-endpoint={self.endpoint}", f"--nproc-per-node={nproc_per_node}"]


ONE_MACHINE = Nodes()


def worker_command(data_dir: Path, job_id: str | None, device: str | None = None,
                   nproc_per_node: int = 1, nodes: Nodes = ONE_MACHINE) -> list[str]:
    """``python -m torch.distributed.run ... -m training.jobs.worker ...``: this machine's part
    of a job's worker group (``job_id`` None on the other machines: rank 0 sends the job)."""
    command = [sys.executable, "-m", "torch.distributed.run", *nodes.launcher(nproc_per_node),
               "-m", "training.jobs.worker", "--data-dir", str(data_dir)]
    command += ["--job", job_id] if job_id else []
    return command + (["--device", device] if device else [])


def processes_per_node(asked: int, device: str | None = None) -> int:
    """``asked``, or for 0 one per visible GPU (one on the CPU, or when a device is chosen)."""
    if asked:
        return asked
    if device and device != "cuda":
        return 1
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


THREADS_ENV = "TUNING_STUDIO_THREADS"
"""The CPU threads a machine's worker group shares (its processes split them)."""


def worker_env() -> dict[str, str]:
    """This process's environment, with the studio's package importable from any folder and
    the thread budget (``OMP_NUM_THREADS``, else the physical cores) for the workers to share:
    torchrun would give each of several processes one thread."""
    from training.tuning.runtime import available_physical_cores

    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    threads = os.environ.get("OMP_NUM_THREADS") or str(available_physical_cores())
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), THREADS_ENV: threads}


def worker_threads() -> int:
    """This worker's share of its machine's thread budget."""
    budget = int(os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS") or 0)
    if not budget:
        from training.tuning.runtime import available_physical_cores

        budget = available_physical_cores()
    return max(1, budget // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def signal_group(process: subprocess.Popen, number: int) -> None:
    """Send ``number`` to the launcher and its workers (they share its process group)."""
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:  # already gone
        pass


def worker_death(launcher_code: int | None, log: Path) -> TrainingError:
    """The failure of a worker group that ended without writing its outcome: the worker's own
    exit code (from torchrun's report) or signal, and the last lines it wrote."""
    try:
        text = Path(log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    codes = _EXIT_CODE.findall(text)
    code = int(codes[-1]) if codes else launcher_code if launcher_code is not None else -1
    report = _LAUNCHER_REPORT.search(text)
    own = text[:report.start()] if report else text
    lines = [line.strip() for line in own.splitlines() if line.strip()][-TAIL_LINES:]
    tail = " | ".join(lines)[-600:] or "-"
    if "out of memory" in text.lower() or "cannot allocate memory" in text.lower():
        return TrainingError.of("worker.out_of_memory", code=code, tail=tail)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return TrainingError.of("worker.killed", signal=name, tail=tail)
    return TrainingError.of("worker.died", code=code, tail=tail)
