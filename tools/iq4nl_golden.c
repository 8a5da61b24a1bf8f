// Writes tests/data/ggml_quant/IQ4_NL.bin, the golden file of tests/iq4nl_test.cc: fixed
// pseudo-random rows quantized to IQ4_NL by ggml's own ggml_quantize_chunk (llama.cpp's
// quantize_iq4_nl), with and without an importance vector, and dequantized by ggml's to_float.
// Built and run by tools/make_iq4nl_golden.sh against ggml-base from a vendored llama.cpp; the
// awq.cpp build never needs it.
//
// Usage: iq4nl_golden OUT_FILE
//
// Format (little-endian):
//   "IQ4G", u32 version = 1, u32 rows, u32 n, u32 row_bytes,
//   f32 importance[n]                 one weight per column, shared by every row
//   f32 x[rows][n]                    the inputs
//   u8  plain[rows][row_bytes]        ggml_quantize_chunk(GGML_TYPE_IQ4_NL, x, ..., NULL)
//   u8  weighted[rows][row_bytes]     the same with imatrix = importance
//   f32 dequantized[rows][n]          ggml's to_float(plain)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

#define VERSION 1u
enum { kRows = 8, kN = 256 };

// ---- a seeded generator (splitmix64), so the rows are the same on every machine ----
static uint64_t g_state;

static uint64_t Next(void) {
  uint64_t z = (g_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1).
static double Uniform(void) { return (double)(Next() >> 11) * (1.0 / 9007199254740992.0); }

// Standard normal by Box-Muller (the floats are stored, so libm's last bits do not matter).
static double Normal(void) {
  double u1 = Uniform();
  const double u2 = Uniform();
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// Log-uniform over five decades like real imatrix entries, 3% dead columns, one whole block of 32
// zeros (columns 32..63), where llama.cpp's weighted fit divides 0 by 0, and a block with every
// fourth column dead.
static void FillImportance(float* w) {
  for (int i = 0; i < kN; ++i) {
    w[i] = (float)pow(10.0, -3.0 + 5.0 * Uniform());
    if (Uniform() < 0.03) w[i] = 0.0f;
  }
  for (int i = 32; i < 64; ++i) w[i] = 0.0f;
  // Block 3 (columns 96..127): every fourth column dead, the others alive, for row 6's ties.
  for (int i = 96; i < 128; ++i) {
    if (i % 4 == 1) {
      w[i] = 0.0f;
    } else if (w[i] == 0.0f) {
      w[i] = 1.0f;
    }
  }
}

// Eight rows, one per corner of the quantizer (each block of 32 is quantized on its own).
static void FillRows(float* x) {
  for (int r = 0; r < kRows; ++r) {
    float* row = x + (size_t)r * kN;
    for (int i = 0; i < kN; ++i) {
      const int block = i / 32;
      switch (r) {
        case 0:  // plain Gaussian
          row[i] = (float)Normal();
          break;
        case 1:  // weight-like scale with large outliers of both signs
          row[i] = (float)(0.02 * Normal());
          if (i == 17 || i == 100 || i == 201) row[i] = (float)(0.8 * (i == 100 ? -1 : 1));
          break;
        case 2:  // all zeros
          row[i] = 0.0f;
          break;
        case 3: {  // tiny: fp16 subnormal and underflowing d, maxima around the 1e-15 threshold
          static const double kScale[8] = {1e-3, 1e-4, 1e-6, 2e-15, 1e-16, 1e-20, 1e-39, 0};
          row[i] = (float)(kScale[block] * Normal());
          if (i == 250) row[i] = 1e-15f;  // a lone value at the threshold
          break;
        }
        case 4:  // negative only: the largest magnitude is negative
          row[i] = (float)-fabs(Normal());
          break;
        case 5:  // positive only, a constant block and a block with a single non-zero value
          row[i] = (float)(0.5 + Uniform());
          if (block == 2) row[i] = 1.0f;
          if (block == 4) row[i] = i == 140 ? 3.0f : 0.0f;
          break;
        case 6: {  // exact ties: integers, halves, and the midpoints between the levels in a block
                   // whose largest value is 127, so that the first scale tried is exactly 1
                   // (and the candidate t = 0 exactly -1): every midpoint is a tie of the level
                   // search
          static const float kMid[15] = {-115.5f, -93.5f, -74,   -57,   -42, -28.5f, -16, -4.5f,
                                         7,       19,     31.5f, 45.5f, 61,  79,     101};
          if (block == 0) {
            row[i] = (float)(i % 16 - 8);
          } else if (block == 1 || block == 2) {
            const float v = i % 32 == 31 ? 127.0f : kMid[(i % 32) % 15];
            row[i] = block == 1 ? v : -v;
          } else if (block == 3) {
            // Levels (-127 first, the largest) on the live columns: the weighted fit is exact, so
            // the scale is exactly 1 and the midpoints on the dead columns are final-pass ties.
            static const float kLevel[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                             1,    13,   25,  38,  53,  69,  89,  113};
            row[i] = i % 4 == 1 ? kMid[(i / 4) % 15] : kLevel[i % 16];
          } else {
            row[i] = (float)((int)(Next() % 64) - 32) * 0.5f;
          }
          break;
        }
        case 7: {  // block scales from 1e-3 to 1e7; the last block's d overflows fp16 to inf
          static const double kScale[8] = {1e-3, 1e-2, 1e-1, 1, 10, 100, 1e3, 1e7};
          row[i] = (float)(kScale[block] * Normal());
          break;
        }
      }
    }
  }
}

static void Write(FILE* f, const void* p, size_t n) {
  if (fwrite(p, 1, n, f) != n) {
    fprintf(stderr, "write failed\n");
    exit(1);
  }
}

static void WriteU32(FILE* f, uint32_t v) { Write(f, &v, 4); }

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT_FILE\n", argv[0]);
    return 2;
  }
  const uint32_t one = 1;
  if (*(const uint8_t*)&one != 1) {
    fprintf(stderr, "the golden file is little-endian; run this on a little-endian host\n");
    return 1;
  }
  static float importance[kN], x[kRows * kN], deq[kRows * kN];
  g_state = 20250705;
  FillImportance(importance);
  FillRows(x);

  const enum ggml_type type = GGML_TYPE_IQ4_NL;
  const size_t row_bytes = ggml_row_size(type, kN);
  uint8_t* plain = malloc(row_bytes * kRows);
  uint8_t* weighted = malloc(row_bytes * kRows);
  if (!plain || !weighted) abort();
  if (ggml_quantize_chunk(type, x, plain, 0, kRows, kN, NULL) != row_bytes * kRows) abort();
  if (ggml_quantize_chunk(type, x, weighted, 0, kRows, kN, importance) != row_bytes * kRows) {
    abort();
  }
  const struct ggml_type_traits* traits = ggml_get_type_traits(type);
  for (int r = 0; r < kRows; ++r) {
    traits->to_float(plain + (size_t)r * row_bytes, deq + (size_t)r * kN, kN);
  }

  FILE* f = fopen(argv[1], "wb");
  if (!f) {
    fprintf(stderr, "cannot write %s\n", argv[1]);
    return 1;
  }
  Write(f, "IQ4G", 4);
  WriteU32(f, VERSION);
  WriteU32(f, kRows);
  WriteU32(f, kN);
  WriteU32(f, (uint32_t)row_bytes);
  Write(f, importance, sizeof(importance));
  Write(f, x, sizeof(x));
  Write(f, plain, row_bytes * kRows);
  Write(f, weighted, row_bytes * kRows);
  Write(f, deq, sizeof(deq));
  if (fclose(f) != 0) {
    fprintf(stderr, "cannot write %s\n", argv[1]);
    return 1;
  }
  printf("%s: %d rows of %d, %zu bytes per row\n", argv[1], kRows, kN, row_bytes);
  free(plain);
  free(weighted);
  return 0;
}
