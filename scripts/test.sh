#!/usr/bin/env bash
# The test command (README, .ci/run): set up (idempotent: deps, assets, build), then run the
# whole CTest suite. AWQ_LONG_TESTS=1 adds the slow checks (full 32k-token perplexity, ...);
# AWQ_SANITIZE_TESTS=1 then also runs the unit and fault tests under ASan + UBSan
# (scripts/sanitize.sh, docs/FAULTS.md).
# Arguments go to ctest: `bash scripts/test.sh -L unit` runs only the fast tests (labels unit,
# model, slow: tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
echo "== running the test suite (ctest -j${jobs}) =="
ctest --test-dir build --output-on-failure -j"${jobs}" "$@"
# The Python package's tests (docs/PYTHON.md): opt-in with AWQ_PYTHON_TESTS=1, because
# `pip install .` compiles the library a second time; they also run when awqcpp is installed.
bash scripts/test_python.sh
# The ASan + UBSan build and run is opt-in: building the library and the tests a second time with
# the sanitizers takes longer than the whole suite on two cores.
if [[ "${AWQ_SANITIZE_TESTS:-0}" == "1" ]]; then
  bash scripts/sanitize.sh
fi
