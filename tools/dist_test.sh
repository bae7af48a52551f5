#!/usr/bin/env bash
# Distributed test: bash tools/dist_test.sh CONFIG [CHECKPOINT] GPUS [--tta ...]
# Interpreter: $PYTHON, else the active virtualenv, else .venv/bin/python, else python3.
CONFIG=$1
if [[ $# -ge 3 && $3 =~ ^[0-9]+$ ]]; then CHECKPOINT=$2; GPUS=$3; shift 3; else CHECKPOINT=""; GPUS=$2; shift 2; fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
source "$(dirname "$0")/python_for_tools.sh"  # PYTHON: $PYTHON, active venv, .venv, python3
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/test.py" "$CONFIG" $CHECKPOINT --launcher pytorch "$@"
