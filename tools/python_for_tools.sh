# Sourced by tools/dist_train.sh and tools/dist_test.sh: sets PYTHON to the interpreter to run.
#   1. $PYTHON when set;  2. the active virtualenv ($VIRTUAL_ENV/bin/python);
#   3. this checkout's .venv/bin/python (what tools/setup_env.sh creates);  4. python3 on the PATH.
_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
  elif [[ -x "$_ROOT/.venv/bin/python" ]]; then
    PYTHON="$_ROOT/.venv/bin/python"
  else
    PYTHON=python3
  fi
fi
