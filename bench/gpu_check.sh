#!/usr/bin/env bash
# GPU check, for a machine with CUDA (the device tool's, or a user's): one short script.
#   bash bench/gpu_check.sh [DATA_DIR]
# 1. bench/train_throughput.py on the first GPU: real tokens/s against the seed recipe, achieved
#    FLOP rate as a share of the GPU's measured bf16 matmul rate (MFU), 1 vs 2 processes.
# 2. With two or more GPUs visible: the same tuning job through `app.py tune` with 1 process, with
#    2 (DDP over NCCL) and with 2 sharing the model (FSDP, --fsdp), each printing tokens/s, peak GPU
#    memory and the MB of weights rank 0 holds, from its metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${1:-$(mktemp -d)/data}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'
CUDA_VISIBLE_DEVICES=0 "$PY" bench/train_throughput.py --data-dir "$DATA" --epochs 2
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ "$GPUS" -ge 2 ]; then
  for RUN in 1 2 2-fsdp; do
    N=${RUN%%-*}
    NAME="gpu-check-$RUN"
    FSDP=(); [ "$RUN" = 2-fsdp ] && FSDP=(--fsdp)
    "$PY" app.py tune --data statics/samples/support_tickets.csv --name "$NAME" --epochs 2 \
      --batch-size 16 --nproc-per-node "$N" "${FSDP[@]}" --data-dir "$DATA" > /dev/null
    "$PY" - "$DATA" "$NAME" "$RUN" <<'PYEOF'
import json, sys
from pathlib import Path
data, name, run = sys.argv[1:]
m = json.loads((Path(data) / "tuned" / name / "metrics.json").read_text())
print(f"app.py tune, {run} process(es) on {m['device']}: {m['tokens_per_s']} real tokens/s, "
      f"peak GPU memory {m['peak_memory_mb']} MB, weights held {m['weights_mb']} MB (rank 0), "
      f"{m['last_step']} steps, final loss {m['final_loss']:.4f}")
PYEOF
  done
else
  echo "one GPU visible: the 2-GPU DDP and FSDP jobs are skipped"
fi
