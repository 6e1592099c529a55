// SampleRng: the random stream of one sample.
//
// Random transforms (random_crop, random_horizontal_flip, ...) draw only from
// the SampleRng the caller passes to Pipeline::Run. A producer seeds it from
// (seed, epoch, sample index), so a sample's augmentation depends on those
// three numbers alone: not on the thread that ran it, the number of threads,
// or the order samples were processed in.
//
// The generator is splitmix64 (Steele, Lea, Flood 2014): 64 bits of state,
// every draw fully specified here, so streams are identical on every compiler
// and standard library (unlike std::uniform_*_distribution).
//
// Thread safety: a value type; one object must not be used by two threads at
// once. Copies are independent and continue the same stream.
#ifndef DATAFEED_PRODUCER_SAMPLE_RNG_H_
#define DATAFEED_PRODUCER_SAMPLE_RNG_H_

#include <cstdint>

namespace datafeed {

// The splitmix64 output function: a bijective 64-bit mix.
constexpr uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class SampleRng {
 public:
  // The stream of sample `index` in epoch `epoch` of a run seeded `seed`.
  // Nearby triples give unrelated streams.
  constexpr SampleRng(uint64_t seed, uint64_t epoch, uint64_t index)
      : state_(Mix64(Mix64(Mix64(seed + kGamma) ^ (epoch + 2 * kGamma)) ^
                     (index + 3 * kGamma))) {}
  // A stream started from raw state.
  constexpr explicit SampleRng(uint64_t state) : state_(state) {}

  // Next 64 uniformly distributed bits.
  constexpr uint64_t Next() {
    state_ += kGamma;
    return Mix64(state_);
  }
  // Uniform in [0, 1), 53 bits of precision.
  constexpr double NextDouble() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi); lo when lo == hi.
  constexpr double NextDouble(double lo, double hi) { return lo + (hi - lo) * NextDouble(); }
  // Uniform integer in [0, n); 0 when n == 0. Unbiased (rejection sampling).
  constexpr uint64_t NextBelow(uint64_t n) {
    if (n <= 1) return 0;
    // Reject the top partial copy of [0, n) so every value is equally likely.
    const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % n);
    uint64_t x = Next();
    while (x >= limit) x = Next();
    return x % n;
  }

  uint64_t state() const { return state_; }

 private:
  static constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ULL;
  uint64_t state_;
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_SAMPLE_RNG_H_
