#!/usr/bin/env bash
# Regenerates tests/data/ggml_quant/ (the golden files of tests/ggml_quantize_test.cc): builds
# ggml-base, the library holding llama.cpp's quantizers, from the llama.cpp that
# llama-cpp-python 0.3.16 vendors (mid-2025), and runs tools/ggml_quant_golden.c against it.
#
#   bash tools/make_ggml_quant_golden.sh            # writes tests/data/ggml_quant/*.bin
#   OUT=/tmp/g bash tools/make_ggml_quant_golden.sh # somewhere else (to compare)
#   LLAMA_CPP_DIR=/path/to/llama.cpp bash tools/make_ggml_quant_golden.sh
#                                                   # another llama.cpp checkout
#
# The source is cached under assets/peers/ (git-ignored) and obtained, when missing, with
#   pip download --no-deps --no-binary :all: llama-cpp-python==0.3.16
# Only ggml-base is built (a few minutes on two cores), for the baseline ISA (-DGGML_NATIVE=OFF),
# which is how every llama.cpp build compiles its quantizers. Neither the awq.cpp build nor its
# tests need any of this: they read the committed files.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/assets/peers"
VERSION=0.3.16
SDIST="$PEERS/llama_cpp_python-$VERSION.tar.gz"
# SHA-256 of the sdist the committed files were made from (informational: a different file is
# reported, not refused).
SDIST_SHA256=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
OUT="${OUT:-$ROOT/tests/data/ggml_quant}"
JOBS="${JOBS:-2}"

mkdir -p "$PEERS"
if [[ -n "${LLAMA_CPP_DIR:-}" ]]; then
  GGML="$LLAMA_CPP_DIR/ggml"
else
  if [[ ! -f "$SDIST" ]]; then
    echo "== downloading llama-cpp-python $VERSION (sdist) into $PEERS"
    python3 -m pip download --no-deps --no-binary :all: --dest "$PEERS" \
      "llama-cpp-python==$VERSION"
  fi
  got_sha=$(sha256sum "$SDIST" | cut -d' ' -f1)
  if [[ "$got_sha" != "$SDIST_SHA256" ]]; then
    echo "note: $SDIST has SHA-256 $got_sha, the committed files came from $SDIST_SHA256"
  fi
  SRC="$PEERS/llama_cpp_python-$VERSION"
  if [[ ! -d "$SRC/vendor/llama.cpp/ggml/src" ]]; then
    tar -xzf "$SDIST" -C "$PEERS" "llama_cpp_python-$VERSION/vendor/llama.cpp/ggml"
  fi
  GGML="$SRC/vendor/llama.cpp/ggml"
fi

# The sdist leaves out ggml's pkg-config template, which ggml's CMakeLists configures
# unconditionally; an empty one is enough for building the library.
[[ -f "$GGML/ggml.pc.in" ]] || : > "$GGML/ggml.pc.in"

BUILD="$PEERS/ggml-build"
echo "== building ggml-base from $GGML in $BUILD"
cmake -S "$GGML" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
  -DBUILD_SHARED_LIBS=OFF -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF > "$BUILD.log"
cmake --build "$BUILD" -j "$JOBS" --target ggml-base >> "$BUILD.log"

echo "== building and running tools/ggml_quant_golden.c"
BIN="$BUILD/ggml_quant_golden"
# C++ runtime and threads: ggml-base has C++ sources (gguf.cpp, ggml-backend.cpp).
c++ -x c -std=gnu11 -O2 -Wall -Wextra -I "$GGML/include" "$ROOT/tools/ggml_quant_golden.c" \
  -x none "$BUILD/src/libggml-base.a" -lm -lpthread -o "$BIN"
mkdir -p "$OUT"
"$BIN" "$OUT"
echo "== wrote $OUT (total $(du -cb "$OUT"/*.bin | tail -1 | cut -f1) bytes)"
