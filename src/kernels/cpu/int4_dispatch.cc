// Int4Linear: argument checks and the choice of kernel by ISA, once per call.
#include <chrono>
#include <cstdlib>
#include <string>

#include "awq/error.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/int4_layout.h"
#include "kernels/cpu/kernel_race.h"

namespace awq {

namespace {
// What a kernel needs of the CPU, for the message that refuses it.
const char* Int4KernelNeeds(Int4Kernel k) {
  switch (k) {
    case Int4Kernel::kAvx2:
    case Int4Kernel::kAvx2Sgemm:
    case Int4Kernel::kAvx2Int8:
      return "an x86-64 CPU with AVX2, FMA and F16C";
    case Int4Kernel::kAvx512Int8:
      return "an x86-64 CPU with AVX-512 F/BW and VNNI (and AVX2, FMA, F16C)";
    case Int4Kernel::kNeonInt8:
      return "an AArch64 CPU with the dot-product extension (asimddp)";
    case Int4Kernel::kAvx512Bf16:
      return "an x86-64 CPU with AVX-512 F/BW and BF16 (and AVX2, FMA, F16C)";
    default:
      return "nothing";
  }
}

// The names this CPU runs, for error messages.
std::string AvailableKernelNames() {
  std::string names;
  for (const Int4Kernel k : {Int4Kernel::kAuto, Int4Kernel::kAutoInt8, Int4Kernel::kReference,
                             Int4Kernel::kAvx2, Int4Kernel::kAvx2Sgemm, Int4Kernel::kReferenceInt8,
                             Int4Kernel::kAvx2Int8, Int4Kernel::kAvx512Int8, Int4Kernel::kNeonInt8,
                             Int4Kernel::kReferenceBf16, Int4Kernel::kAvx512Bf16}) {
    if (Int4KernelAvailable(k))
      names += (names.empty() ? "" : ", ") + std::string(Int4KernelName(k));
  }
  return names;
}

// AWQ_INT4_KERNEL, read and checked once: an unknown name or a kernel this CPU cannot run is an
// error naming the variable, at the first product rather than deep inside a kernel. kAuto when
// unset.
Int4Kernel EnvKernel() {
  static const Int4Kernel k = [] {
    const char* env = std::getenv("AWQ_INT4_KERNEL");
    if (env == nullptr || *env == 0) return Int4Kernel::kAuto;
    Int4Kernel parsed;
    try {
      parsed = ParseInt4Kernel(env);
    } catch (const Error& e) {
      throw Error(std::string("AWQ_INT4_KERNEL: ") + e.what());
    }
    if (!Int4KernelAvailable(parsed)) {
      throw Error(std::string("AWQ_INT4_KERNEL=") + env + ": this CPU cannot run that kernel (it " +
                  "needs " + Int4KernelNeeds(parsed) +
                  "); kernels that run here: " + AvailableKernelNames());
    }
    return parsed;
  }();
  return k;
}

// kAuto's (int8_prompts false) or kAutoInt8's (true) choice for m rows on this CPU.
Int4Kernel AutoKernel(int64_t m, bool int8_prompts) {
  if (int8_prompts && m > 1 && CpuHasAvx2Fma16()) {
    return CpuHasAvx512Vnni() ? Int4Kernel::kAvx512Int8 : Int4Kernel::kAvx2Int8;
  }
  if (CpuHasNeonDot()) return m == 1 ? Int4Kernel::kNeonInt8 : Int4Kernel::kReference;
  if (!CpuHasAvx2Fma16()) return Int4Kernel::kReference;
  if (m == 1) return CpuHasAvx512Vnni() ? Int4Kernel::kAvx512Int8 : Int4Kernel::kAvx2Int8;
  return CpuHasAvx512() ? Int4Kernel::kAvx2Sgemm : Int4Kernel::kAvx2;
}
}  // namespace

Int4Kernel ResolveInt4Kernel(Int4Kernel requested, int64_t m, Int4Kernel override_kernel) {
  if (requested != Int4Kernel::kAuto && requested != Int4Kernel::kAutoInt8) return requested;
  // The override takes the place of the automatic choice only. Its value kAutoInt8 is itself an
  // automatic choice: resolved below like a caller's kAutoInt8, never passed on as a kernel.
  if (override_kernel != Int4Kernel::kAuto) requested = override_kernel;
  if (requested != Int4Kernel::kAuto && requested != Int4Kernel::kAutoInt8) return requested;
  return AutoKernel(m, requested == Int4Kernel::kAutoInt8);
}

Int4Kernel ResolveInt4Kernel(Int4Kernel requested, int64_t m) {
  return ResolveInt4Kernel(requested, m, EnvKernel());
}

bool Int4KernelAvailable(Int4Kernel k) {
  switch (k) {
    case Int4Kernel::kAuto:
    case Int4Kernel::kAutoInt8:
    case Int4Kernel::kReference:
    case Int4Kernel::kReferenceInt8:
    case Int4Kernel::kReferenceBf16:
      return true;
    case Int4Kernel::kAvx2:
    case Int4Kernel::kAvx2Sgemm:
    case Int4Kernel::kAvx2Int8:
      return CpuHasAvx2Fma16();
    case Int4Kernel::kAvx512Int8:
      return CpuHasAvx512Vnni();
    case Int4Kernel::kNeonInt8:
      return CpuHasNeonDot();
    case Int4Kernel::kAvx512Bf16:
      return CpuHasAvx512Bf16();
  }
  return false;
}

const char* Int4KernelName(Int4Kernel k) {
  switch (k) {
    case Int4Kernel::kAuto:
      return "auto";
    case Int4Kernel::kReference:
      return "reference";
    case Int4Kernel::kAvx2:
      return "avx2";
    case Int4Kernel::kAvx2Sgemm:
      return "avx2-sgemm";
    case Int4Kernel::kReferenceInt8:
      return "reference-int8";
    case Int4Kernel::kAvx2Int8:
      return "avx2-int8";
    case Int4Kernel::kAvx512Int8:
      return "avx512-int8";
    case Int4Kernel::kNeonInt8:
      return "neon-int8";
    case Int4Kernel::kAutoInt8:
      return "auto-int8";
    case Int4Kernel::kReferenceBf16:
      return "reference-bf16";
    case Int4Kernel::kAvx512Bf16:
      return "avx512-bf16";
  }
  return "?";
}

Int4Kernel ParseInt4Kernel(const std::string& name) {
  std::string known;
  for (const Int4Kernel k :
       {Int4Kernel::kAuto, Int4Kernel::kReference, Int4Kernel::kAvx2, Int4Kernel::kAvx2Sgemm,
        Int4Kernel::kReferenceInt8, Int4Kernel::kAvx2Int8, Int4Kernel::kAvx512Int8,
        Int4Kernel::kNeonInt8, Int4Kernel::kAutoInt8, Int4Kernel::kReferenceBf16,
        Int4Kernel::kAvx512Bf16}) {
    if (name == Int4KernelName(k)) return k;
    known += (known.empty() ? "" : ", ") + std::string(Int4KernelName(k));
  }
  // The list comes from the same names, so a new kernel cannot be missing from the message.
  throw Error("unknown int4 kernel '" + name + "' (known: " + known + ")");
}

namespace {

// The decode GEMV's tunings an automatic choice races, the default first: the distances around
// the Zen 3 host's 512 bytes (where 256-1024 measured alike and 2 KiB slower) and two streams per
// core instead of four (5-10% slower there), since other hosts' memory systems may prefer others.
constexpr GemvTuning kDecodeTunings[] = {{4, 512}, {4, 256}, {4, 1024}, {4, 2048}, {2, 512}};

// The races of an automatic choice (KernelRace); every arm of a race computes the same bits, so
// the fastest on this host may run. Decode (m == 1) races the int8 GEMV's tunings, each with the
// VNNI and the AVX2 kernel where both run; prompts race the VNNI against the AVX2 int8 GEMM. A
// kernel named by the caller or by AWQ_INT4_KERNEL runs as named, with the default tuning.
KernelRace& DecodeRace() {
  static KernelRace race([] {
    std::vector<Int4Kernel> kernels;
    if (Int4KernelAvailable(Int4Kernel::kAvx512Int8)) kernels.push_back(Int4Kernel::kAvx512Int8);
    kernels.push_back(Int4Kernel::kAvx2Int8);
    std::vector<RaceArm> arms;
    for (const GemvTuning& t : kDecodeTunings) {
      for (const Int4Kernel k : kernels) arms.push_back({k, t});
    }
    return arms;
  }());
  return race;
}
KernelRace& PromptRace() {
  static KernelRace race(
      {{Int4Kernel::kAvx512Int8, GemvTuning{}}, {Int4Kernel::kAvx2Int8, GemvTuning{}}});
  return race;
}
KernelRace* RaceFor(Int4Kernel requested, Int4Kernel resolved, int64_t m) {
  const auto automatic = [](Int4Kernel k) {
    return k == Int4Kernel::kAuto || k == Int4Kernel::kAutoInt8;
  };
  if (!automatic(requested) || !automatic(EnvKernel()) ||
      !Int4KernelAvailable(Int4Kernel::kAvx2Int8)) {
    return nullptr;
  }
  if (m == 1) {
    const bool int8 = resolved == Int4Kernel::kAvx2Int8 || resolved == Int4Kernel::kAvx512Int8;
    return int8 ? &DecodeRace() : nullptr;
  }
  return resolved == Int4Kernel::kAvx512Int8 ? &PromptRace() : nullptr;
}

void RunKernel(Int4Kernel kernel, GemvTuning tuning, const Int4Matrix& w, const float* x,
               int64_t ldx, int64_t m, float* y, int64_t ldy, bool accumulate, ThreadPool& pool) {
  switch (kernel) {
#if defined(__x86_64__)
    case Int4Kernel::kAvx2:
      Int4LinearAvx2(w, x, ldx, m, y, ldy, accumulate, pool);
      return;
    case Int4Kernel::kAvx2Sgemm:
      Int4LinearAvx2Sgemm(w, x, ldx, m, y, ldy, accumulate, pool);
      return;
    case Int4Kernel::kAvx2Int8:
      Int4LinearInt8Avx2Tuned(w, x, ldx, m, y, ldy, accumulate, pool, tuning);
      return;
    case Int4Kernel::kAvx512Int8:
      Int4LinearInt8Avx512Tuned(w, x, ldx, m, y, ldy, accumulate, pool, tuning);
      return;
    case Int4Kernel::kAvx512Bf16:
      Int4LinearBf16Avx512(w, x, ldx, m, y, ldy, accumulate, pool);
      return;
#endif
#if defined(__aarch64__)
    case Int4Kernel::kNeonInt8:
      Int4LinearInt8Neon(w, x, ldx, m, y, ldy, accumulate, pool);
      return;
#endif
    case Int4Kernel::kReferenceInt8:
      Int4LinearInt8Ref(w, x, ldx, m, y, ldy, accumulate, pool);
      return;
    case Int4Kernel::kReferenceBf16:
      Int4LinearBf16Ref(w, x, ldx, m, y, ldy, accumulate, pool);
      return;
    case Int4Kernel::kReference:
      Int4LinearRef(w, x, ldx, m, y, ldy, accumulate, pool);
      return;
    default:
      break;
  }
  // Resolution never leaves kAuto/kAutoInt8, and an available kernel is compiled in: reaching
  // here is a broken invariant, not a slow fallback to hide.
  AWQ_CHECK(false && "int4 kernel resolved to one this build has no implementation of");
}

}  // namespace

std::string Int4KernelRaces() {
  if (!Int4KernelAvailable(Int4Kernel::kAvx2Int8)) return "";
  std::string s = "decode " + DecodeRace().Summary();
  if (Int4KernelAvailable(Int4Kernel::kAvx512Int8)) s += "; prompts " + PromptRace().Summary();
  return s;
}

void Int4Linear(const Int4Matrix& w, const float* x, int64_t ldx, int64_t m, float* y, int64_t ldy,
                bool accumulate, ThreadPool& pool, Int4Kernel kernel) {
  AWQ_CHECK(m >= 0 && ldx >= w.in && ldy >= w.out);
  AWQ_CHECK(w.group_size > 0 && w.group_size % kInt4Inputs == 0 && w.in % w.group_size == 0);
  AWQ_CHECK(w.slots.size() == static_cast<size_t>(w.row_blocks() * w.slots_per_block()));
  if (m == 0 || w.out == 0) return;
  const Int4Kernel requested = kernel;
  kernel = ResolveInt4Kernel(kernel, m);
  if (!Int4KernelAvailable(kernel)) {
    throw Error(std::string("int4 kernels: the ") + Int4KernelName(kernel) +
                " kernel does not run on this CPU (it needs " + Int4KernelNeeds(kernel) +
                "); kernels that run here: " + AvailableKernelNames());
  }
  if (KernelRace* race = RaceFor(requested, kernel, m)) {
    bool timed = false;
    const int i = race->Next(w.slots.data(), &timed);
    const RaceArm arm = race->arm(i);
    if (!timed) return RunKernel(arm.kernel, arm.tuning, w, x, ldx, m, y, ldy, accumulate, pool);
    const auto t0 = std::chrono::steady_clock::now();
    RunKernel(arm.kernel, arm.tuning, w, x, ldx, m, y, ldy, accumulate, pool);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t shape = (w.out << 24) ^ (w.in << 4) ^ w.group_size;
    race->Record(shape, i, s / (static_cast<double>(m) * static_cast<double>(w.bytes())));
    return;
  }
  RunKernel(kernel, GemvTuning{}, w, x, ldx, m, y, ldy, accumulate, pool);
}

}  // namespace awq
