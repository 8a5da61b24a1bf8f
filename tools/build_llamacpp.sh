#!/usr/bin/env bash
# Builds the llama.cpp tools that tools/llamacpp_reference.sh measures awq.cpp against:
# llama-quantize, llama-imatrix, llama-perplexity, llama-bench, llama-cli and llama-tokenize
# (the last to compare token ids with awq.cpp's tokenizer). llama.cpp is a measuring reference
# only: neither awq.cpp's build nor its tests use any of this.
#
#   bash tools/build_llamacpp.sh          # idempotent: skips the download, unpack and build when done
#   JOBS=4 bash tools/build_llamacpp.sh   # more parallel compile jobs (default 2)
#
# Source: the llama.cpp that llama-cpp-python 0.3.16 vendors, a public snapshot on PyPI
#   pip download --no-deps --no-binary :all: llama-cpp-python==0.3.16 -d assets/peers/
# unpacked to assets/peers/llama.cpp-src and built (Release, -DGGML_NATIVE=ON, static, no curl,
# no tests) in assets/peers/llama.cpp-build. assets/ is git-ignored. The binaries land in
# assets/peers/llama.cpp-build/bin/.
#
# The sdist carries no git history, so llama.cpp's own build-info would say "unknown" (or, worse,
# pick up awq.cpp's commit from the enclosing repository); the commit is read from the sdist's
# CHANGELOG ("Update llama.cpp to ggerganov/llama.cpp@<sha>") and passed to CMake.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/assets/peers"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.16}"
SDIST="$PEERS/llama_cpp_python-$VERSION.tar.gz"
# SHA-256 of the 0.3.16 sdist the documented figures were made with (a different file is
# reported, not refused).
SDIST_SHA256=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
SRC="$PEERS/llama.cpp-src"
BUILD="$PEERS/llama.cpp-build"
JOBS="${JOBS:-2}"
TARGETS=(llama-quantize llama-imatrix llama-perplexity llama-bench llama-cli llama-tokenize)

mkdir -p "$PEERS"

# 1. the sdist
if [[ ! -f "$SDIST" ]]; then
  echo "== downloading llama-cpp-python $VERSION (sdist) into $PEERS"
  python3 -m pip download --no-deps --no-binary :all: -d "$PEERS" "llama-cpp-python==$VERSION"
fi
got_sha=$(sha256sum "$SDIST" | cut -d' ' -f1)
if [[ "$VERSION" == 0.3.16 && "$got_sha" != "$SDIST_SHA256" ]]; then
  echo "note: $SDIST has SHA-256 $got_sha, the documented figures came from $SDIST_SHA256"
fi

# 2. unpack vendor/llama.cpp (atomically: a half-unpacked tree is never taken for a done one)
if [[ ! -f "$SRC/.unpacked" ]]; then
  echo "== unpacking vendor/llama.cpp into $SRC"
  rm -rf "$SRC" "$SRC.tmp"
  mkdir -p "$SRC.tmp"
  tar -xzf "$SDIST" -C "$SRC.tmp" --strip-components=3 \
    "llama_cpp_python-$VERSION/vendor/llama.cpp"
  tar -xzOf "$SDIST" "llama_cpp_python-$VERSION/CHANGELOG.md" > "$SRC.tmp/LLAMA_CPP_PYTHON_CHANGELOG.md"
  # vendor/llama.cpp/.git is a submodule pointer into a .git/modules the sdist lacks; keep it so
  # git fails inside the tree instead of finding the enclosing awq.cpp repository.
  touch "$SRC.tmp/.unpacked"
  mv "$SRC.tmp" "$SRC"
fi

# 3. which llama.cpp this is
COMMIT=$(awk -v v="## [$VERSION]" '
  index($0, v) == 1 { on = 1; next }
  on && /^## \[/ { exit }
  on && match($0, /llama\.cpp@[0-9a-f]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }
' "$SRC/LLAMA_CPP_PYTHON_CHANGELOG.md")
COMMIT="${COMMIT:-unknown}"
SHORT="${COMMIT:0:7}"
# llama.cpp's build number is its commit count (release tag b<N>); the sdist has no history to
# count, so it is only known when given (LLAMA_BUILD_NUMBER=N); 0 means "not known".
NUMBER="${LLAMA_BUILD_NUMBER:-0}"
echo "== llama.cpp from llama-cpp-python $VERSION: commit $COMMIT, build number $NUMBER" \
  "$([[ $NUMBER == 0 ]] && echo '(not recorded in the sdist)')"

# 4. configure and build
if [[ "$SRC/.unpacked" -nt "$BUILD/.configured" ]] || [[ ! -f "$BUILD/CMakeCache.txt" ]] ||
  [[ "$(cat "$BUILD/.configured" 2>/dev/null)" != "$SHORT $NUMBER" ]]; then
  echo "== configuring $BUILD"
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_COMMIT="$SHORT" -DLLAMA_BUILD_NUMBER="$NUMBER" > "$BUILD.configure.log" 2>&1 ||
    { tail -30 "$BUILD.configure.log"; exit 1; }
  echo "$SHORT $NUMBER" > "$BUILD/.configured"
fi

missing=0
for t in "${TARGETS[@]}"; do [[ -x "$BUILD/bin/$t" ]] || missing=1; done
if [[ $missing == 1 ]] || ninja -C "$BUILD" -n "${TARGETS[@]}" 2>/dev/null | grep -q '^\['; then
  echo "== building ${TARGETS[*]} with -j$JOBS (log: $BUILD.log)"
  start=$(date +%s)
  cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" > "$BUILD.log" 2>&1 ||
    { tail -30 "$BUILD.log"; exit 1; }
  echo "== built in $(($(date +%s) - start)) s"
else
  echo "== ${TARGETS[*]} are up to date"
fi
"$BUILD/bin/llama-cli" --version 2>&1 | head -2 || true
echo "== binaries in $BUILD/bin"
