// Decode attention over the fp16 head-major KV cache: the AVX2 partial softmax against its scalar
// reference, the split-and-merge DecodeAttention against the prompt path (CausalAttention on the
// same fp16-rounded keys and values), and the cache's store/load round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "awq/half.h"
#include "awq/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/decode_attention.h"
#include "model/attention.h"
#include "test_util.h"

namespace awq {
namespace {

std::vector<float> Random(size_t n, uint64_t seed, float scale = 1.0f) {
  return test::RandomNormal(n, seed, scale);
}

std::vector<uint16_t> ToF16(const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = Fp32ToFp16(x[i]);
  return h;
}

bool HasAvx2() { return CpuHasAvx2Fma16(); }

TEST(AttendPartial, Avx2MatchesScalarReferenceOnAwkwardShapes) {
  if (!HasAvx2()) GTEST_SKIP() << "no AVX2 + FMA + F16C on this CPU";
  for (int64_t hd : {8, 64, 72, 128}) {
    for (int group : {1, 3, 4}) {
      for (int64_t n : {1, 7, 8, 9, 63, 577}) {
        // Scores spread over tens of units, as in a trained model, so that exp's range matters.
        const auto q = Random(static_cast<size_t>(group * hd), 1, 3.0f);
        const auto k = ToF16(Random(static_cast<size_t>(n * hd), 2));
        const auto v = ToF16(Random(static_cast<size_t>(n * hd), 3));
        const AttendArgs a{q.data(), group, k.data(), v.data(), hd, n, 1.0f / std::sqrt(8.0f)};
        std::vector<float> s(static_cast<size_t>(group * n)), m(group), l(group),
            o(static_cast<size_t>(group * hd));
        std::vector<float> s2 = s, m2 = m, l2 = l, o2 = o;
        AttendPartialRef(a, s.data(), m.data(), l.data(), o.data());
        AttendPartialAvx2(a, s2.data(), m2.data(), l2.data(), o2.data());
        for (int i = 0; i < group; ++i) {
          ASSERT_NEAR(m2[i], m[i], 1e-5f * (1 + std::fabs(m[i]))) << hd << " " << n;
          ASSERT_NEAR(l2[i], l[i], 1e-5f * l[i]) << hd << " " << n;
        }
        for (size_t i = 0; i < o.size(); ++i) {
          // o is a sum of n weights in (0, 1] times N(0,1) values; weight errors are relative.
          ASSERT_NEAR(o2[i], o[i], 2e-5f * (1 + l[i / static_cast<size_t>(hd)]))
              << "hd=" << hd << " group=" << group << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST(DecodeAttention, EqualsThePromptPathOnTheSameCache) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (AttentionShape s : {AttentionShape{9, 3, 64}, AttentionShape{4, 4, 16},
                             AttentionShape{2, 1, 8}, AttentionShape{8, 8, 128}}) {
      for (int64_t n_keys : {1, 5, 64, 129, 600, 4000}) {
        const int64_t hd = s.head_dim, qd = s.n_heads * hd, kvd = s.n_kv_heads * hd;
        const int64_t capacity = n_keys + 3;  // head stride larger than the filled positions
        const auto q = Random(static_cast<size_t>(qd), 7, 2.0f);
        auto k = Random(static_cast<size_t>(n_keys * kvd), 8);
        auto v = Random(static_cast<size_t>(n_keys * kvd), 9);
        std::vector<uint16_t> kc(static_cast<size_t>(s.n_kv_heads * capacity * hd)), vc(kc.size());
        StoreKvRows(k.data(), kvd, n_keys, 0, kc.data(), capacity * hd, s);
        StoreKvRows(v.data(), kvd, n_keys, 0, vc.data(), capacity * hd, s);
        // The prompt path on the fp16-rounded rows, as the last of n_keys query rows.
        LoadKvRows(kc.data(), capacity * hd, n_keys, k.data(), s);
        LoadKvRows(vc.data(), capacity * hd, n_keys, v.data(), s);
        std::vector<float> ref(static_cast<size_t>(qd)), out(ref.size());
        CausalAttention(q.data(), qd, k.data(), v.data(), kvd, ref.data(), qd, 1, n_keys - 1, s,
                        pool);
        DecodeAttention(q.data(), kc.data(), vc.data(), capacity * hd, n_keys, out.data(), s, pool);
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], ref[i], 2e-5)
              << "threads=" << threads << " heads=" << s.n_heads << " n_keys=" << n_keys;
        }
      }
    }
  }
}

TEST(KvCacheRows, StoreThenLoadRoundsToFp16Only) {
  const AttentionShape s{6, 2, 24};
  const int64_t kvd = 48, n = 11, capacity = 16;
  const auto x = Random(static_cast<size_t>(n * kvd), 5);
  std::vector<uint16_t> cache(static_cast<size_t>(2 * capacity * 24));
  // Rows stored in two calls (a prompt, then one token) land where a single call puts them.
  StoreKvRows(x.data(), kvd, n - 1, 0, cache.data(), capacity * 24, s);
  StoreKvRows(x.data() + (n - 1) * kvd, kvd, 1, n - 1, cache.data(), capacity * 24, s);
  std::vector<float> back(x.size());
  LoadKvRows(cache.data(), capacity * 24, n, back.data(), s);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], Fp16ToFp32(Fp32ToFp16(x[i]))) << i;
  // Head-major: kv head 1's position 0 sits one head stride after head 0's.
  EXPECT_EQ(cache[static_cast<size_t>(capacity * 24)], Fp32ToFp16(x[24]));
}

}  // namespace
}  // namespace awq
