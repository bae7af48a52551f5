#!/usr/bin/env bash
# Distributed training: bash tools/dist_train.sh CONFIG GPUS [--resume ...]
# Without CUDA the processes use the gloo backend on the CPU. Interpreter: $PYTHON if set, else the
# active virtualenv, else this checkout's .venv/bin/python, else python3 (tools/python_for_tools.sh).
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
source "$(dirname "$0")/python_for_tools.sh"  # PYTHON: $PYTHON, active venv, .venv, python3
PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@"
