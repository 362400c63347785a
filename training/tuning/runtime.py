"""Process-wide compute settings, chosen once and on purpose.

Why: torch's default is one OpenMP thread per *logical* CPU, with threads that spin while they
wait. On a small machine that is also busy (the web server, the browser, other jobs) spinning
threads fight for the same cores and a training step can stall for seconds; on the 2-vCPU
machines this was measured on, a second thread adds only 10-18 % anyway. So the studio asks for
one thread per *physical* core it may run on, and for passive waiting (``OMP_WAIT_POLICY``).

``OMP_WAIT_POLICY`` is read when the OpenMP runtime loads, i.e. when torch is first imported, so
call ``configure_threads`` at start-up before anything imports torch. An explicit
``OMP_NUM_THREADS`` (tests set 1) is honoured.

This module does not import torch at import time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

SYSFS_CPU = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (``threads``, else ``OMP_NUM_THREADS``, else the
    physical cores available to this process) and passive OpenMP waiting. Returns the count."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    count = max(1, threads or _env_threads() or available_physical_cores())
    import torch

    torch.set_num_threads(count)
    return count


def available_physical_cores(sysfs_cpu: Path = SYSFS_CPU, cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Physical cores among the CPUs this process may run on, capped by a cgroup CPU quota; at
    least 1. Hyper-threads of one core count once."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        return max(1, os.cpu_count() or 1)
    cores = physical_core_count(cpus, sysfs_cpu)
    quota = cgroup_cpu_quota(cgroup_cpu_max)
    return max(1, min(cores, quota) if quota else cores)


def physical_core_count(cpus: list[int], sysfs_cpu: Path = SYSFS_CPU) -> int:
    """Distinct (package, core) pairs of the given logical CPUs; CPUs whose topology cannot be
    read count as one core each."""
    cores: set[tuple[str, ...]] = set()
    for cpu in cpus:
        topology = sysfs_cpu / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
            cores.add((package, core))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def cgroup_cpu_quota(cpu_max: Path = CGROUP_CPU_MAX) -> int | None:
    """Whole CPUs allowed by a cgroup v2 quota (``cpu.max`` holds ``quota period`` or ``max``),
    rounded up; None when there is no quota."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def _env_threads() -> int | None:
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value > 0 else None
