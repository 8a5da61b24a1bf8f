// The streaming loops of MeasureMemoryBandwidth, per ISA.
#pragma once

#include <cstdint>

namespace awq {

// a[i] = b[i] + s * c[i] for i < n.
void TriadAvx2(float* a, const float* b, const float* c, float s, int64_t n);
// The sum of p[0..n).
float SumAvx2(const float* p, int64_t n);

}  // namespace awq
