#!/usr/bin/env bash
# Training under Slurm: one task per GPU, launched by srun (mmengine's "slurm" launcher reads
# SLURM_PROCID / SLURM_NTASKS / SLURM_NODELIST and takes the first node as master).
#
#   GPUS=16 GPUS_PER_NODE=8 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args]
#
# Env: GPUS (total tasks, default 4), GPUS_PER_NODE (default min(GPUS, 8)), CPUS_PER_TASK (default 5),
#      MASTER_PORT (default 29500), SRUN_ARGS (extra srun options, word-split), PYTHON (default python).
# WORK_DIR is taken when the fourth argument does not start with '-'.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: [GPUS=N] bash $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args]" >&2
  exit 2
fi
PARTITION=$1 JOB_NAME=$2 CONFIG=$3
shift 3
EXTRA=()
if [[ $# -gt 0 && $1 != -* ]]; then EXTRA=(--work-dir "$1"); shift; fi
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a SRUN_EXTRA <<< "${SRUN_ARGS:-}"
export MASTER_PORT=${MASTER_PORT:-29500}
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$(dirname "$TOOLS")${PYTHONPATH:+:$PYTHONPATH}"
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
  "${SRUN_EXTRA[@]}" "${PYTHON:-python}" -u "$TOOLS/train.py" "$CONFIG" --launcher slurm \
  "${EXTRA[@]}" "$@"
