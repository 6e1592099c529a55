// Fingerprinter: a 64-bit digest of what makes a run's batches what they are.
//
// Every batch a producer publishes carries a run fingerprint (the delivery
// contract: a batch's identity is (fingerprint, epoch, index in epoch), and
// its bytes are a pure function of that identity). The fingerprint covers
// the dataset (Dataset::Fingerprint: its content or, for large trees, its
// file list with sizes and modification times), the pipeline spec, the
// seed, the batch size and every sampler knob that changes which samples go
// into which batch. A producer restarted with --state-dir refuses a journal
// written under another fingerprint, and a consumer refuses to resume a
// checkpoint taken against another one.
//
// Not a cryptographic hash: it detects accidents (another dataset, another
// pipeline), not adversaries. Values are identical on every platform: the
// mixing is fully specified here (FNV-1a over bytes, splitmix64 finaliser).
//
// Thread safety: a value type.
#ifndef DATAFEED_PRODUCER_FINGERPRINT_H_
#define DATAFEED_PRODUCER_FINGERPRINT_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "datafeed/producer/sample_rng.h"

namespace datafeed {

class Fingerprinter {
 public:
  Fingerprinter() = default;

  // Mixes in raw bytes.
  Fingerprinter& AddBytes(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= kPrime;
    }
    return *this;
  }
  // Mixes in a string and its length (so "ab"+"c" differs from "a"+"bc").
  Fingerprinter& Add(std::string_view s) {
    Add(static_cast<uint64_t>(s.size()));
    return AddBytes(s.data(), s.size());
  }
  // Mixes in an integer (little-endian bytes, whatever the host).
  Fingerprinter& Add(uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    return AddBytes(b, sizeof b);
  }

  // The digest so far; never 0 (0 means "no fingerprint" in a frame header).
  uint64_t value() const {
    const uint64_t v = Mix64(h_);
    return v != 0 ? v : 1;
  }

 private:
  static constexpr uint64_t kOffset = 0xCBF29CE484222325ULL;
  static constexpr uint64_t kPrime = 0x100000001B3ULL;
  uint64_t h_ = kOffset;
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_FINGERPRINT_H_
