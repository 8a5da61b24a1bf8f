// Products with fp16 weights and fp32 activations: the LM head of a 4-bit checkpoint, which
// AutoAWQ stores in fp16 and which decode reads once per token (half the bytes of fp32).
#pragma once

#include <cstdint>

namespace awq {

class ThreadPool;

// y[m, n] (+)= x[m, k] * float(w[n, k])^T, w as IEEE fp16 bits. Every weight converts to fp32
// exactly, so the result equals LinearF32 on the widened weights up to summation order. m == 1
// streams the weights once (AVX2 + F16C when the CPU has it); m > 1 widens panels of w into
// per-thread fp32 buffers and multiplies them with the serial sgemm. Call it from outside the
// pool's tasks.
void LinearF16(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw, float* y, int64_t ldy,
               int64_t m, int64_t n, int64_t k, bool accumulate, ThreadPool& pool);

// Scalar reference and the AVX2 GEMV, for tests and the dispatcher: rows [n0, n1) of
// y[0, n] (+)= x[0, k] * w^T.
void GemvF16Ref(const float* x, const uint16_t* w, int64_t ldw, float* y, int64_t n0, int64_t n1,
                int64_t k, bool accumulate);
void GemvF16Avx2(const float* x, const uint16_t* w, int64_t ldw, float* y, int64_t n0, int64_t n1,
                 int64_t k, bool accumulate);
// dst[i] = Fp32ToFp16(src[i]) for i < n, with F16C (round to nearest even, subnormals and
// overflow to infinity as Fp32ToFp16; a NaN keeps the top of its payload, where Fp32ToFp16 makes
// every NaN the same quiet one). Decode's KV cache stores: a scalar conversion per element was
// about 2% of a 7B-shaped decode step, run by one thread while the others waited.
void NarrowF16Avx2(const float* src, uint16_t* dst, int64_t n);
// dst[i] = float(src[i]) for i < n, with F16C.
void WidenF16Avx2(const uint16_t* src, float* dst, int64_t n);

}  // namespace awq
