// Short deterministic fuzz run for CTest: replays every seed in a folder, then feeds a fixed
// number of mutations of them (bit flips, truncations, splices, overwritten integers) to the
// target. Any crash, sanitizer report or escaping exception fails the test.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<uint8_t> Mutate(const std::vector<uint8_t>& in, std::mt19937_64& rng) {
  std::vector<uint8_t> out = in;
  const int n_ops = 1 + static_cast<int>(rng() % 4);
  for (int op = 0; op < n_ops; ++op) {
    const size_t n = out.size();
    switch (rng() % 6) {
      case 0:  // flip a bit
        if (n) out[rng() % n] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1:  // truncate
        if (n) out.resize(rng() % n);
        break;
      case 2:  // overwrite 8 bytes with an "interesting" integer
        if (n >= 8) {
          static const uint64_t kVals[] = {0,
                                           1,
                                           0xff,
                                           0x7fffffff,
                                           0xffffffff,
                                           0x80000000,
                                           0xffffffffffffffffull,
                                           0x7fffffffffffffffull,
                                           1ull << 40};
          const uint64_t v = kVals[rng() % (sizeof(kVals) / sizeof(kVals[0]))];
          const size_t at = rng() % (n - 7);
          const int width = (rng() % 2) ? 8 : 4;
          for (int b = 0; b < width; ++b) out[at + b] = static_cast<uint8_t>(v >> (8 * b));
        }
        break;
      case 3:  // random byte
        if (n) out[rng() % n] = static_cast<uint8_t>(rng());
        break;
      case 4: {  // duplicate a slice of the original seed somewhere in the mutant
        if (!in.empty() && n) {
          const size_t a = rng() % in.size(), len = rng() % (in.size() - a + 1) % 64;
          out.insert(out.begin() + static_cast<long>(rng() % n), in.begin() + static_cast<long>(a),
                     in.begin() + static_cast<long>(a + len));
        }
        break;
      }
      default:  // delete a slice
        if (n) {
          const size_t a = rng() % n, len = std::min<size_t>(n - a, rng() % 32);
          out.erase(out.begin() + static_cast<long>(a), out.begin() + static_cast<long>(a + len));
        }
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s SEED_DIR [N_MUTATIONS]\n", argv[0]);
    return 2;
  }
  const long n_mut = argc > 2 ? std::atol(argv[2]) : 10000;
  std::vector<std::vector<uint8_t>> seeds;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(argv[1], ec)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    seeds.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  if (ec || seeds.empty()) {
    std::fprintf(stderr, "no seeds in %s\n", argv[1]);
    return 2;
  }
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(s.data(), s.size());
  std::mt19937_64 rng(12345);
  for (long i = 0; i < n_mut; ++i) {
    const auto m = Mutate(seeds[rng() % seeds.size()], rng);
    LLVMFuzzerTestOneInput(m.data(), m.size());
  }
  std::printf("%zu seeds and %ld mutations ran without a crash\n", seeds.size(), n_mut);
  return 0;
}
