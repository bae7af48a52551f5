#!/usr/bin/env bash
# One-command set-up: create (or reuse) .venv, install the tested stack, then run the main job.
#
#   bash tools/setup_env.sh             # set up, then run tools/quickstart.py (the miniature world)
#   bash tools/setup_env.sh --no-run    # set up only
#   QUICKSTART_ARGS="--weights clip.pt --vfm-weights dinov2.pth" bash tools/setup_env.sh
#
# Env: VENV (default .venv), PYTHON (interpreter used to create the venv, default python3),
#      DECLIP_CACHE (mmcv wheel cache, default ~/.cache/declip_mm).
# Idempotent: a stamp in the venv records the installed requirement files, so a second run on the
# same machine only re-installs the package itself (seconds); the mmcv wheel is built once per torch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUN_MAIN=1
for arg in "$@"; do
  case $arg in
    --no-run) RUN_MAIN=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

VENV=${VENV:-.venv}
BASE_PY=${PYTHON:-python3}
log() { echo "[setup] $*"; }
# pip on this machine kind warns about absent local index folders; keep the log readable.
pipq() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV with $($BASE_PY --version 2>&1)"
  "$BASE_PY" -m venv "$VENV"
fi
PY="$VENV/bin/python"

stamp_file="$VENV/.declip_mm_stamp"
stamp=$(cat requirements/*.txt tools/install_mmcv.sh | sha256sum | cut -d' ' -f1)
if [[ -f $stamp_file && $(cat "$stamp_file") == "$stamp" ]] \
    && "$PY" -c "import torch, mmcv, mmseg, mmdet, open_clip, timm; from mmcv.ops import RoIAlign" 2>/dev/null; then
  log "requirements unchanged since the last set-up of $VENV"
else
  log "installing torch (requirements/torch.txt)"
  # setuptools<81: mmcv's setup.py imports pkg_resources (build-time only); no pip upgrade
  pipq install -q 'pip>=23' 'setuptools<81' wheel
  pipq install -q -r requirements/torch.txt -c requirements/constraints.txt
  log "installing runtime, mmdet, test and optional requirements"
  # the declared ranges, at the exact tested versions of requirements/constraints.txt
  pipq install -q -r requirements/runtime.txt -r requirements/tests.txt -r requirements/optional.txt \
    "$(grep -E '^mmdet' requirements/mminstall.txt)" -c requirements/constraints.txt
  log "installing mmcv with compiled ops (tools/install_mmcv.sh)"
  PYTHON="$PY" bash tools/install_mmcv.sh 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$stamp" > "$stamp_file"
fi
log "installing declip_mm (editable)"
pipq install -q --no-deps --no-build-isolation -e .
"$PY" -c "import declip_mm, mmseg.models, mmdet.models; from mmcv.ops import RoIAlign, nms; \
import torch, mmcv, mmseg, mmdet, mmengine; \
print('[setup] ok: torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmengine', mmengine.__version__, \
'| mmseg', mmseg.__version__, '| mmdet', mmdet.__version__, '| declip_mm', declip_mm.__version__)"

if [[ $RUN_MAIN == 1 ]]; then
  log "running the main job: tools/quickstart.py ${QUICKSTART_ARGS:-}"
  # shellcheck disable=SC2086
  "$PY" tools/quickstart.py ${QUICKSTART_ARGS:-}
fi
