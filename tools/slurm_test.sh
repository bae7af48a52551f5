#!/usr/bin/env bash
# Testing under Slurm: one task per GPU, launched by srun (see tools/slurm_train.sh).
#
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG [CHECKPOINT] [test.py args]
#
# Env: as tools/slurm_train.sh. CHECKPOINT is taken when the fourth argument does not start with
# '-' (it is optional for training-free configs, as in tools/test.py).
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: [GPUS=N] bash $0 PARTITION JOB_NAME CONFIG [CHECKPOINT] [test.py args]" >&2
  exit 2
fi
PARTITION=$1 JOB_NAME=$2 CONFIG=$3
shift 3
EXTRA=()
if [[ $# -gt 0 && $1 != -* ]]; then EXTRA=("$1"); shift; fi
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a SRUN_EXTRA <<< "${SRUN_ARGS:-}"
export MASTER_PORT=${MASTER_PORT:-29500}
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$(dirname "$TOOLS")${PYTHONPATH:+:$PYTHONPATH}"
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 \
  "${SRUN_EXTRA[@]}" "${PYTHON:-python}" -u "$TOOLS/test.py" "$CONFIG" "${EXTRA[@]}" \
  --launcher slurm "$@"
