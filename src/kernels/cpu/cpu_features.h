// What the running CPU can execute, asked once per process: the one place that knows which
// instruction-set extensions each kernel file needs. Every function is false on a CPU of another
// architecture (the x86 kernels are built for x86-64 only, the NEON one for AArch64 only).
#pragma once

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace awq {

// AVX2 + FMA: the *_avx2.cc row kernels and bandwidth loops.
inline bool CpuHasAvx2Fma() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

// AVX2 + FMA + F16C: every *_avx2.cc kernel that reads fp16 (int4 scales, fp16 weights, the KV
// cache). F16C is read from CPUID leaf 1 (ECX bit 29): clang before 15 has no "f16c" for
// __builtin_cpu_supports.
inline bool CpuHasAvx2Fma16() {
#if defined(__x86_64__)
  static const bool has = CpuHasAvx2Fma() && [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  }();
  return has;
#else
  return false;
#endif
}

// AVX-512 F: oneDNN's sgemm then runs 512-bit FMAs.
inline bool CpuHasAvx512() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
#else
  return false;
#endif
}

// AVX-512 F/BW + VNNI (with AVX2/FMA/F16C): int4_int8_avx512.cc.
inline bool CpuHasAvx512Vnni() {
#if defined(__x86_64__)
  static const bool has = CpuHasAvx2Fma16() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vnni");
  return has;
#else
  return false;
#endif
}

// AVX-512 F/BW + BF16 (with AVX2/FMA/F16C): int4_bf16_avx512.cc. AVX512_BF16 is read from CPUID
// leaf 7 subleaf 1 (EAX bit 5): not every compiler the project builds with names it for
// __builtin_cpu_supports; the F and BW checks there include the OS's saving of the zmm state.
inline bool CpuHasAvx512Bf16() {
#if defined(__x86_64__)
  static const bool has =
      CpuHasAvx2Fma16() && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && [] {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        return __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 5)) != 0;
      }();
  return has;
#else
  return false;
#endif
}

// AArch64 NEON with the dot-product extension (asimddp): int4_int8_neon.cc.
inline bool CpuHasNeonDot() {
#if defined(__aarch64__)
  static const bool has = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  return has;
#else
  return false;
#endif
}

}  // namespace awq
