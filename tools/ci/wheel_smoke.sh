#!/usr/bin/env bash
# CI step: build the sdist and the wheel (python -m build: the wheel is built from the sdist), install
# the wheel into a fresh virtual environment and smoke-test it from a folder outside the checkout
# (tools/ci/wheel_smoke.py). Run after tools/setup_env.sh: the fresh environment takes torch from the
# same local wheel files and mmcv from the wheel tools/install_mmcv.sh cached (via the installed
# `declip-install-mmcv`), pure-Python packages at the tested versions (requirements/constraints.txt).
#
#   bash tools/ci/wheel_smoke.sh
# Env: BUILD_PYTHON (interpreter with `build`, default .venv/bin/python), KEEP_SMOKE=1 keeps the temp folder,
#      SMOKE_VENV (reuse this environment instead of a fresh one; for development only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
PY=${BUILD_PYTHON:-.venv/bin/python}
start=$(date +%s)
log() { echo "[wheel-smoke] $* ($(( $(date +%s) - start )) s)"; }
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

WORK=$(mktemp -d /tmp/declip_wheel_smoke.XXXXXX)
cleanup() { if [[ ${KEEP_SMOKE:-0} != 1 ]]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

quiet_pip "$PY" -m build --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
sdists=("$WORK"/dist/declip_mm-*.tar.gz)
wheels=("$WORK"/dist/declip_mm-*.whl)
log "built $(basename "${sdists[0]}") and $(basename "${wheels[0]}")"
# the sdist carries what setup.py and the wheel need
tar -tzf "${sdists[0]}" > "$WORK/sdist.txt"
for f in requirements/runtime.txt LICENSE model-index.yml configs/class_names/ade20k.txt tools/train.py; do
  grep -qx "declip_mm-[^/]*/$f" "$WORK/sdist.txt" || { echo "sdist lacks $f" >&2; exit 1; }
done

VENV=${SMOKE_VENV:-$WORK/venv}
BASE_PY=$("$PY" -c 'import sys; print(sys._base_executable)')
if [[ ! -x $VENV/bin/python ]]; then "$BASE_PY" -m venv "$VENV"; fi
VPY=$VENV/bin/python
quiet_pip "$VPY" -m pip install -q -r requirements/torch.txt -c requirements/constraints.txt
log "torch installed in the fresh environment $VENV"
quiet_pip "$VPY" -m pip install -q "${wheels[0]}" -c requirements/constraints.txt
log "wheel and its requirements installed"
# mmcv is not a pip requirement: the shipped installer takes the cached wheel (or builds it)
PYTHON="$VPY" "$VENV/bin/declip-install-mmcv" > "$WORK/mmcv.log" 2>&1 || { cat "$WORK/mmcv.log"; exit 1; }
log "mmcv with ops via declip-install-mmcv"
# setuptools<81 is a build-time need of mmcv only: the smoke runs with a setuptools that has no
# pkg_resources (torch requires setuptools, so a user's environment gets the newest one)
quiet_pip "$VPY" -m pip install -q 'setuptools>=81'
if "$VPY" -c 'import pkg_resources' 2>/dev/null; then echo "pkg_resources still importable" >&2; exit 1; fi
"$VPY" -m pip check

mkdir -p "$WORK/outside"
cp tools/ci/wheel_smoke.py "$WORK/outside/"
(cd "$WORK/outside" && OMP_NUM_THREADS=1 "$VPY" wheel_smoke.py "$REPO")
log "wheel smoke check passed; step took"
