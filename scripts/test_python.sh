#!/usr/bin/env bash
# The awqcpp package as pip installs it (docs/PYTHON.md): `pip install .` into a virtual
# environment ($AWQ_PYTHON_VENV, default build-py/venv; reused, so later runs recompile only what
# changed), then the pytest suite (tests/python) on the installed package. scripts/test.sh runs
# this with AWQ_PYTHON_TESTS=1; the default test run already runs the same suite through ctest
# (python.pytest) on the module of the main build. With AWQ_PYTHON_TESTS unset this runs pytest
# only when `python3 -c "import awqcpp"` already works (the package installed by hand).
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
