#!/usr/bin/env bash
# The awqcpp Python package's tests (tests/python, docs/PYTHON.md), called by scripts/test.sh.
# `pip install .` compiles the whole library again (about 10 minutes on a busy 2-core machine), so
# they are opt-in: AWQ_PYTHON_TESTS=1 installs the package into a virtual environment
# ($AWQ_PYTHON_VENV, default build-py/venv; reused, so later runs recompile only what changed)
# and runs pytest there. Without it they run only when `python3 -c "import awqcpp"` already works
# (the package installed by hand), else this prints how to turn them on and succeeds.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${AWQ_PYTHON:-python3}"
if [[ "${AWQ_PYTHON_TESTS:-0}" == "1" ]]; then
  venv="${AWQ_PYTHON_VENV:-build-py/venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "== creating $venv =="
    "$python" -m venv "$venv"
  fi
  python="$venv/bin/python"
  # The build requirements in the environment itself (no build isolation): the CMake build
  # folder then keeps the same paths from run to run and only rebuilds what changed.
  "$python" -m pip install -q "scikit-build-core>=0.10" "nanobind>=2.0" numpy pytest
  echo "== pip install . (awqcpp) =="
  "$python" -m pip install -q --no-build-isolation .
elif ! "$python" -c "import awqcpp" 2>/dev/null; then
  echo "== Python tests skipped: awqcpp is not installed (AWQ_PYTHON_TESTS=1 builds and runs them) =="
  exit 0
fi
echo "== running the Python tests (pytest tests/python) =="
"$python" -m pytest -q tests/python "$@"
