#!/usr/bin/env bash
# Regenerates tests/data/ggml_quant/IQ4_NL.bin (the golden file of tests/iq4nl_test.cc): runs
# tools/iq4nl_golden.c against ggml-base from the llama.cpp that llama-cpp-python 0.3.16 vendors
# (mid-2025), the same source tools/make_ggml_quant_golden.sh uses.
#
#   bash tools/make_iq4nl_golden.sh                  # writes tests/data/ggml_quant/IQ4_NL.bin
#   OUT=/tmp/IQ4_NL.bin bash tools/make_iq4nl_golden.sh
#   LLAMA_CPP_DIR=/path/to/llama.cpp bash tools/make_iq4nl_golden.sh
#
# ggml-base (which holds quantize_iq4_nl and dequantize_row_iq4_nl) is reused from
# assets/peers/ggml-build when make_ggml_quant_golden.sh has built it, else built here into
# assets/peers/ggml-build-iq4 for the baseline ISA (-DGGML_NATIVE=OFF). The source is cached in
# assets/peers/ (git-ignored) and fetched, when missing, with
#   pip download --no-deps --no-binary :all: llama-cpp-python==0.3.16
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/assets/peers"
VERSION=0.3.16
SDIST="$PEERS/llama_cpp_python-$VERSION.tar.gz"
OUT="${OUT:-$ROOT/tests/data/ggml_quant/IQ4_NL.bin}"
JOBS="${JOBS:-2}"

mkdir -p "$PEERS"
if [[ -n "${LLAMA_CPP_DIR:-}" ]]; then
  GGML="$LLAMA_CPP_DIR/ggml"
else
  SRC="$PEERS/llama_cpp_python-$VERSION"
  if [[ ! -d "$SRC/vendor/llama.cpp/ggml/src" ]]; then
    if [[ ! -f "$SDIST" ]]; then
      echo "== downloading llama-cpp-python $VERSION (sdist) into $PEERS"
      python3 -m pip download --no-deps --no-binary :all: --dest "$PEERS" \
        "llama-cpp-python==$VERSION"
    fi
    tar -xzf "$SDIST" -C "$PEERS" "llama_cpp_python-$VERSION/vendor/llama.cpp/ggml"
  fi
  GGML="$SRC/vendor/llama.cpp/ggml"
fi

# A ggml-base already built from this source by make_ggml_quant_golden.sh is reused; with
# another LLAMA_CPP_DIR, or none built, build our own.
BUILD="$PEERS/ggml-build"
if [[ -n "${LLAMA_CPP_DIR:-}" || ! -f "$BUILD/src/libggml-base.a" ]]; then
  BUILD="$PEERS/ggml-build-iq4"
  # The sdist leaves out ggml's pkg-config template, which ggml's CMakeLists configures
  # unconditionally; an empty one is enough for building the library.
  [[ -f "$GGML/ggml.pc.in" ]] || : > "$GGML/ggml.pc.in"
  echo "== building ggml-base from $GGML in $BUILD"
  cmake -S "$GGML" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
    -DBUILD_SHARED_LIBS=OFF -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF > "$BUILD.log"
  cmake --build "$BUILD" -j "$JOBS" --target ggml-base >> "$BUILD.log"
else
  echo "== reusing ggml-base in $BUILD"
fi

echo "== building and running tools/iq4nl_golden.c"
BIN="$BUILD/iq4nl_golden"
# C++ runtime and threads: ggml-base has C++ sources (gguf.cpp, ggml-backend.cpp).
c++ -x c -std=gnu11 -O2 -Wall -Wextra -I "$GGML/include" "$ROOT/tools/iq4nl_golden.c" \
  -x none "$BUILD/src/libggml-base.a" -lm -lpthread -o "$BIN"
mkdir -p "$(dirname "$OUT")"
"$BIN" "$OUT"
echo "== wrote $OUT ($(stat -c %s "$OUT") bytes)"
