"""`python app.py worker`: this machine's share of the studio's training jobs, for a second (third,
...) machine. Each job the studio starts is trained by the worker processes of every machine
together (``training.tuning.parallel``); this command takes part in one job after the other until
Ctrl-C. The studio's machine is node 0 and keeps the one database; this machine needs the base
model (the bundled one is prepared in ``--data-dir``, a folder is looked for at the same path)
and writes nothing but its log.

    head:   python app.py serve --nnodes 2 --rdzv-endpoint 10.0.0.1:29400
    second: python app.py worker --nnodes 2 --node-rank 1 --rdzv-endpoint 10.0.0.1:29400

Plain torchrun does the same: ``torchrun --nnodes 2 --node-rank 1 --rdzv-backend static
--rdzv-endpoint 10.0.0.1:29400 --nproc-per-node N -m training.jobs.worker --data-dir DATA``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

RETRY_S = 2.0
"""Pause between one job's end and joining the next."""


def add_arguments(parser) -> None:
    """The `worker` command's options (called by app.py's parse_args)."""
    parser.add_argument("--nnodes", type=int, required=True, help="machines in all, the studio's included")
    parser.add_argument("--node-rank", type=int, required=True,
                        help="this machine's number, 1 to NNODES-1 (the studio's machine is 0)")
    parser.add_argument("--rdzv-endpoint", required=True, metavar="HOST:PORT",
                        help="the studio machine's address and the port given to `serve`")
    parser.add_argument("--nproc-per-node", type=int, default=0,
                        help="processes on this machine: as many as on the studio's (default 0: "
                             "one per visible GPU, one on the CPU)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="stop after this many jobs (default 0: until Ctrl-C)")


def run(args, data_dir: Path, err: TextIO = sys.stderr) -> int:
    from training.jobs.workers import REPO, Nodes, processes_per_node, worker_command, worker_env

    if not 1 <= args.node_rank < args.nnodes:
        print(f"--node-rank {args.node_rank} must be 1 to {args.nnodes - 1}: node 0 is the "
              "studio's machine.", file=err)
        return 2
    nodes = Nodes(args.nnodes, args.rdzv_endpoint, args.node_rank)
    command = worker_command(data_dir, None, args.device,
                             processes_per_node(args.nproc_per_node, args.device), nodes)
    done = 0
    try:
        while not args.jobs or done < args.jobs:
            print(f"waiting for a job at {args.rdzv_endpoint} (node {args.node_rank} of "
                  f"{args.nnodes})", file=err, flush=True)
            code = subprocess.call(command, cwd=REPO, env=worker_env())
            done += 1
            print(f"job ended (exit code {code})", file=err, flush=True)
            time.sleep(RETRY_S)
    except KeyboardInterrupt:
        return 130
    return 0
