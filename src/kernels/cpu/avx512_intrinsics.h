// The intrinsics of the AVX-512 kernel sources: <immintrin.h>, or SIMDe's portable versions of
// the same names where the source is built for the tests on any CPU (AWQ_EMULATE_SIMD; the
// source then puts its code in namespace awq::emulated).
#pragma once

#if defined(AWQ_EMULATE_SIMD)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#else
#include <immintrin.h>
#endif
