// Writes the golden files of tests/ggml_quantize_test.cc: fixed pseudo-random rows quantized by
// ggml's own ggml_quantize_chunk (llama.cpp's quantizers), with and without an importance
// matrix. Built and run by tools/make_ggml_quant_golden.sh against ggml-base from a vendored
// llama.cpp; the awq.cpp build never needs it.
//
// Usage: ggml_quant_golden OUT_DIR
//
// Files (all little-endian; the test reads them, docs/GGUF.md describes them):
//   inputs.bin   "GGQI", u32 version = 1, u32 n_sets, then per set:
//                  u32 rows, u32 n, f32 importance[n], f32 x[rows][n]
//   <TYPE>.bin   "GGQO", u32 version = 1, u32 ggml type, u32 n_entries,
//                u64 FNV-1a 64 of inputs.bin's bytes, then per entry:
//                  u32 set, u32 rows, u32 n, u32 row_bytes, u32 has_weighted,
//                  u8 plain[rows][row_bytes]     ggml_quantize_chunk(type, x, ..., NULL)
//                  u8 weighted[rows][row_bytes]  the same with imatrix = importance (if
//                  has_weighted)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

#define VERSION 1u

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

// ---- the input sets ----
enum { kSets = 3 };

typedef struct {
  int rows;
  int n;
  float* importance;  // [n]
  float* x;           // [rows][n]
} Set;

static void FillImportance(float* w, int n) {
  // Log-uniform over five decades like real imatrix entries (mean squared activations), a few
  // dead columns, and one whole 16-column group of zeros.
  for (int i = 0; i < n; ++i) {
    w[i] = (float)pow(10.0, -3.0 + 5.0 * Uniform());
    if (Uniform() < 0.03) w[i] = 0.0f;
  }
  for (int i = 32; i < 48 && i < n; ++i) w[i] = 0.0f;
}

// Set 0: eight rows of 256 with the cases that steer the quantizers into their corners.
static void FillSet0(Set* s) {
  const int n = s->n;
  for (int r = 0; r < s->rows; ++r) {
    float* x = s->x + (size_t)r * n;
    for (int i = 0; i < n; ++i) {
      switch (r) {
        case 0:  // plain Gaussian
          x[i] = (float)Normal();
          break;
        case 1:  // weight-like scale with three large outliers
          x[i] = (float)(0.02 * Normal());
          if (i == 17 || i == 100 || i == 201) x[i] = (float)(0.8 * (i == 100 ? -1 : 1));
          break;
        case 2:  // all zeros
          x[i] = 0.0f;
          break;
        case 3:  // tiny values: 1e-6, 1e-20, subnormals (1/d overflows), a lone 1e-30
          if (i < 64) {
            x[i] = (float)(1e-6 * Normal());
          } else if (i < 128) {
            x[i] = (float)(1e-20 * Normal());
          } else if (i < 192) {
            x[i] = (float)(1e-39 * Normal());
          } else {
            x[i] = i == 200 ? 1e-30f : 0.0f;
          }
          break;
        case 4:  // negative only
          x[i] = (float)-fabs(Normal());
          break;
        case 5:  // positive only, a constant group and a group with a single non-zero value
          x[i] = (float)(0.5 + Uniform());
          if (i >= 64 && i < 96) x[i] = 1.0f;
          if (i >= 128 && i < 160) x[i] = i == 140 ? 3.0f : 0.0f;
          break;
        case 6:  // halves and integers: exact rounding ties
          x[i] = i < 32 ? (float)(i % 16 - 8) : (float)((int)(Next() % 32) - 16) * 0.5f;
          break;
        case 7:  // group scales from 1e-2 to 1e2, so the 4/6-bit scale codes hit zero
          x[i] = (float)(Normal() * pow(10.0, (i / 16) / 4.0 - 2.0));
          break;
      }
    }
  }
}

// Set 1: two rows of 512, heavy tailed and offset.
static void FillSet1(Set* s) {
  const int n = s->n;
  for (int i = 0; i < n; ++i) {  // Student-t with 3 degrees of freedom
    const double a = Normal(), b = Normal(), c = Normal();
    s->x[i] = (float)(Normal() / sqrt((a * a + b * b + c * c) / 3.0 + 1e-12));
  }
  for (int i = 0; i < n; ++i) {  // a mean offset and a single huge outlier
    s->x[n + i] = (float)(0.1 + 0.05 * Normal());
    if (i == 300) s->x[n + i] = 1e4f;
  }
}

static float FromBits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// Set 2: float edge cases for F16 and BF16: rounding ties, subnormals, overflow, inf, nan.
static void FillSet2(Set* s) {
  const float fixed[] = {
      0.0f,
      -0.0f,
      1.0f,
      -1.0f,
      65504.0f,
      65519.99f,
      65520.0f,
      -65520.0f,
      1e5f,
      FromBits(0x7f800000u),
      FromBits(0xff800000u),
      FromBits(0x7fc00000u),
      FromBits(0xffc00001u),
      FromBits(0x7f800001u),  // signalling nan
      5.9604645e-8f,          // smallest fp16 subnormal
      2.9802322e-8f,          // half of it: a tie that rounds to zero
      2.9802326e-8f,
      8.940697e-8f,
      6.097555e-5f,
      6.1035156e-5f,
      1.0f + 1.0f / 2048.0f,  // fp16 tie, rounds to even (1.0)
      1.0f + 3.0f / 2048.0f,  // fp16 tie, rounds up
      1.0f + 1.0f / 256.0f,   // bf16 tie, rounds to even
      1.0f + 3.0f / 256.0f,   // bf16 tie, rounds up
      3.4028235e38f,
      1.17549435e-38f,
      1e-45f,
      -1e-45f,
      1e-40f,
      FromBits(0x7f7fffffu),
      FromBits(0x7f7f8000u),  // bf16 rounding into inf
  };
  const int nf = (int)(sizeof(fixed) / sizeof(fixed[0]));
  for (int i = 0; i < s->n; ++i) {
    if (i < nf) {
      s->x[i] = fixed[i];
    } else if (i < 160) {  // any bit pattern: nan payloads, subnormals, huge values
      s->x[i] = FromBits((uint32_t)Next());
    } else {  // exponents around fp16's range
      s->x[i] = (float)(Normal() * pow(2.0, -30.0 + 50.0 * Uniform()));
    }
  }
}

// ---- output ----
static uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

typedef struct {
  uint8_t* data;
  size_t size, cap;
} Buf;

static void Put(Buf* b, const void* p, size_t n) {
  if (b->size + n > b->cap) {
    b->cap = (b->size + n) * 2;
    b->data = realloc(b->data, b->cap);
    if (!b->data) abort();
  }
  memcpy(b->data + b->size, p, n);
  b->size += n;
}

static void PutU32(Buf* b, uint32_t v) { Put(b, &v, 4); }

static void WriteFile(const char* dir, const char* name, const Buf* b) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE* f = fopen(path, "wb");
  if (!f || fwrite(b->data, 1, b->size, f) != b->size || fclose(f) != 0) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  printf("%-12s %6zu bytes\n", name, b->size);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const uint32_t one = 1;
  if (*(const uint8_t*)&one != 1) {
    fprintf(stderr, "the golden files are little-endian; run this on a little-endian host\n");
    return 1;
  }
  const char* out = argv[1];

  Set sets[kSets] = {{8, 256, NULL, NULL}, {2, 512, NULL, NULL}, {1, 256, NULL, NULL}};
  g_state = 20250704;
  for (int k = 0; k < kSets; ++k) {
    sets[k].importance = malloc(sizeof(float) * sets[k].n);
    sets[k].x = malloc(sizeof(float) * sets[k].n * sets[k].rows);
    FillImportance(sets[k].importance, sets[k].n);
  }
  FillSet0(&sets[0]);
  FillSet1(&sets[1]);
  FillSet2(&sets[2]);

  Buf in = {0};
  Put(&in, "GGQI", 4);
  PutU32(&in, VERSION);
  PutU32(&in, kSets);
  for (int k = 0; k < kSets; ++k) {
    PutU32(&in, (uint32_t)sets[k].rows);
    PutU32(&in, (uint32_t)sets[k].n);
    Put(&in, sets[k].importance, sizeof(float) * sets[k].n);
    Put(&in, sets[k].x, sizeof(float) * sets[k].n * sets[k].rows);
  }
  WriteFile(out, "inputs.bin", &in);
  const uint64_t inputs_hash = Fnv1a(in.data, in.size);

  // The block types take sets 0 and 1 (with and without the importance matrix, except Q8_0,
  // which ignores it); the float types take sets 1 and 2, set 2 being theirs.
  const enum ggml_type types[] = {GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                                  GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K,
                                  GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
  for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); ++t) {
    const enum ggml_type type = types[t];
    const int is_float = type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
    const int weighted = !is_float && type != GGML_TYPE_Q8_0;
    const int first_set = is_float ? 1 : 0;
    const int n_entries = 2;
    Buf b = {0};
    Put(&b, "GGQO", 4);
    PutU32(&b, VERSION);
    PutU32(&b, (uint32_t)type);
    PutU32(&b, (uint32_t)n_entries);
    Put(&b, &inputs_hash, 8);
    for (int k = first_set; k < first_set + n_entries; ++k) {
      const Set* s = &sets[k];
      const size_t row_bytes = ggml_row_size(type, s->n);
      uint8_t* q = malloc(row_bytes * s->rows);
      PutU32(&b, (uint32_t)k);
      PutU32(&b, (uint32_t)s->rows);
      PutU32(&b, (uint32_t)s->n);
      PutU32(&b, (uint32_t)row_bytes);
      PutU32(&b, (uint32_t)weighted);
      size_t got = ggml_quantize_chunk(type, s->x, q, 0, s->rows, s->n, NULL);
      if (got != row_bytes * s->rows) abort();
      Put(&b, q, got);
      if (weighted) {
        got = ggml_quantize_chunk(type, s->x, q, 0, s->rows, s->n, s->importance);
        if (got != row_bytes * s->rows) abort();
        Put(&b, q, got);
      }
      free(q);
    }
    char name[64];
    snprintf(name, sizeof(name), "%s.bin", ggml_type_name(type));
    for (char* c = name; *c; ++c) {
      if (*c >= 'a' && *c <= 'z' && c < strrchr(name, '.')) *c = (char)(*c - 'a' + 'A');
    }
    WriteFile(out, name, &b);
    free(b.data);
  }
  free(in.data);
  return 0;
}
