#!/usr/bin/env bash
# Build and install mmcv 2.1.0 *with its compiled ops* against the torch already installed in the
# active Python environment, caching the wheel outside the clone so the next install takes seconds.
#
# PyPI only has the mmcv 2.1.0 source distribution, and prebuilt wheels exist only for old torch
# releases. Building it against torch >= 2.6 needs three fixes (all seen failing without them):
#   1. torch installed first and `--no-build-isolation` (mmcv's setup.py imports torch);
#   2. setuptools < 81 (setup.py imports pkg_resources);
#   3. the C++ standard raised from c++17 to c++20 (torch >= 2.10 headers require it).
#
# Usage: PYTHON=.venv/bin/python bash tools/install_mmcv.sh
# Env:   PYTHON           interpreter of the target environment (default: python)
#        DECLIP_CACHE     cache root (default: ~/.cache/declip_mm)
#        MMCV_VERSION     (default 2.1.0)
#        MAX_JOBS         parallel compile jobs (default: nproc)
#        MMCV_FORCE_BUILD=1  ignore a cached wheel
set -euo pipefail

PYTHON=${PYTHON:-python}
MMCV_VERSION=${MMCV_VERSION:-2.1.0}
CACHE_ROOT=${DECLIP_CACHE:-$HOME/.cache/declip_mm}

log() { echo "[install_mmcv] $*"; }

# Absolute path: the build below runs from inside the unpacked source tree.
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "[install_mmcv] error: torch is not importable by $PYTHON; install torch first" >&2
  exit 1
fi

# Already installed with ops?  Nothing to do.
if "$PYTHON" - "$MMCV_VERSION" <<'PY' 2>/dev/null
import sys
import mmcv
from mmcv.ops import RoIAlign, nms  # noqa: F401  (fails without the compiled _ext)
sys.exit(0 if mmcv.__version__ == sys.argv[1] else 1)
PY
then
  log "mmcv $MMCV_VERSION with compiled ops is already installed"
  exit 0
fi

# Decide CPU or CUDA build and the cache key.
read -r TORCH_VER PY_TAG CUDA_TAG < <("$PYTHON" - <<'PY'
import shutil, sys, torch
ver = torch.__version__.split('+')[0]
py = f'cp{sys.version_info.major}{sys.version_info.minor}'
cuda = 'cpu'
if torch.version.cuda and torch.cuda.is_available() and shutil.which('nvcc'):
    cuda = 'cu' + torch.version.cuda.replace('.', '')
print(ver, py, cuda)
PY
)
WHEEL_DIR="$CACHE_ROOT/wheels/torch-$TORCH_VER-$PY_TAG-$CUDA_TAG"
mkdir -p "$WHEEL_DIR"
shopt -s nullglob
cached=("$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl)
if [[ ${#cached[@]} -gt 0 && "${MMCV_FORCE_BUILD:-0}" != 1 ]]; then
  log "installing cached wheel ${cached[0]}"
  "$PYTHON" -m pip install --no-deps --force-reinstall -q "${cached[0]}"
  "$PYTHON" -m pip install -q 'addict' 'yapf<=0.40.1' 'packaging' 'Pillow' 'pyyaml' 'opencv-python' 'numpy'
  "$PYTHON" -c "from mmcv.ops import RoIAlign, nms; print('[install_mmcv] mmcv ops OK')"
  exit 0
fi

log "building mmcv $MMCV_VERSION ($CUDA_TAG) against torch $TORCH_VER; this takes 10-25 minutes on 2 cores"
"$PYTHON" -m pip install -q 'setuptools<81' wheel ninja 'addict' 'yapf<=0.40.1' 'packaging' 'Pillow' \
  'pyyaml' 'opencv-python' 'numpy'

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# --no-build-isolation: new pip prepares the sdist metadata in an isolated env with a setuptools
# that lacks pkg_resources; the venv has setuptools<81 and torch.
"$PYTHON" -m pip download --no-deps --no-binary :all: --no-build-isolation -q -d "$WORK" \
  "mmcv==$MMCV_VERSION"
tar -xzf "$WORK"/mmcv-"$MMCV_VERSION".tar.gz -C "$WORK"
SRC="$WORK/mmcv-$MMCV_VERSION"
# torch >= 2.10 headers: "#error C++20 or later compatible compiler is required to use ATen".
sed -i 's/-std=c++17/-std=c++20/g; s/std=c++14/std=c++20/g' "$SRC/setup.py"

if [[ $CUDA_TAG == cpu ]]; then export FORCE_CUDA=0; else export FORCE_CUDA=1; fi
export MMCV_WITH_OPS=1
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export CFLAGS="${CFLAGS:--g0}" CXXFLAGS="${CXXFLAGS:--g0}"
(cd "$SRC" && "$PYTHON" -m pip wheel --no-build-isolation --no-deps -w "$WORK/dist" . )
built=("$WORK"/dist/mmcv-*.whl)
cp "${built[0]}" "$WHEEL_DIR/"
log "cached $(basename "${built[0]}") in $WHEEL_DIR"
"$PYTHON" -m pip install --no-deps --force-reinstall -q "${built[0]}"
"$PYTHON" -c "from mmcv.ops import RoIAlign, nms; print('[install_mmcv] mmcv ops OK')"
