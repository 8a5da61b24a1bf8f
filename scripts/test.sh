#!/usr/bin/env bash
# The test command (README, .ci/run): set up (idempotent: deps, assets, build), then run the
# whole CTest suite, then the unit tests under ASan + UBSan (scripts/sanitize.sh, docs/FAULTS.md;
# AWQ_SANITIZE_TESTS=0 skips them). AWQ_LONG_TESTS=1 adds the slow checks (full 32k-token
# perplexity, ...).
# Arguments go to ctest: `bash scripts/test.sh -L unit` runs only the fast tests (labels unit,
# model, slow: tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
echo "== running the test suite (ctest -j${jobs}) =="
ctest --test-dir build --output-on-failure -j"${jobs}" "$@"
# The Python package's pytest suite runs inside ctest (python.pytest, on the module the build
# assembles). AWQ_PYTHON_TESTS=1 also checks the packaging: `pip install .` into a virtual
# environment (compiling the library a second time) and the same pytest run on the installed
# package (scripts/test_python.sh, docs/PYTHON.md).
if [[ "${AWQ_PYTHON_TESTS:-0}" == "1" ]]; then
  bash scripts/test_python.sh
fi
# The unit tests and fuzz replays once more, built with ASan + UBSan (build-asan, clang -O1);
# AWQ_SANITIZE_TESTS=0 leaves them out of a quick local run.
if [[ "${AWQ_SANITIZE_TESTS:-1}" == "1" ]]; then
  bash scripts/sanitize.sh
fi
