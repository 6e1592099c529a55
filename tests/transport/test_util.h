// Helpers shared by the transport tests.
#ifndef DATAFEED_TESTS_TRANSPORT_TEST_UTIL_H_
#define DATAFEED_TESTS_TRANSPORT_TEST_UTIL_H_

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "datafeed/transport/transport.h"

namespace datafeed::testing {

// A unique name per call within this process and across processes.
inline std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Removes the stale shared-memory segments (a killed producer's, see
// RemoveStaleShmSegments) whose name ends with `part`, so a test that kills a
// producer leaves /dev/shm as it found it. Only stale ones: a test running
// beside it keeps its live segments.
inline void RemoveStaleSegmentsNamed(const std::string& part) {
  auto stale = ListStaleShmSegments();
  if (!stale.ok()) return;
  for (const std::string& n : *stale) {
    if (n.size() >= part.size() && n.compare(n.size() - part.size(), part.size(), part) == 0) {
      ::unlink(("/dev/shm/" + n).c_str());
    }
  }
}

// Calls RemoveStaleSegmentsNamed(part) when it goes out of scope, so a
// failed assertion after the kill still cleans up.
struct RemoveStaleAtEnd {
  std::string part;
  ~RemoveStaleAtEnd() { RemoveStaleSegmentsNamed(part); }
};

// A layout of `n` int64 labels and an n x bytes_per_sample uint8 payload.
inline std::shared_ptr<const BatchLayout> TestLayout(int64_t n, int64_t bytes_per_sample) {
  auto layout = BatchLayout::Make({{"label", DType::kInt64, {n}},
                                   {"payload", DType::kUInt8, {n, bytes_per_sample}}});
  return std::make_shared<const BatchLayout>(std::move(layout).value());
}

// The byte every test writes at payload[k] of the batch whose first_index is `id`.
inline uint8_t PatternByte(uint64_t id, size_t k) {
  return static_cast<uint8_t>((id * 131 + k * 7 + (k >> 9)) & 0xff);
}

// Fills a batch of TestLayout with a content derived from `id`.
inline void FillBatch(WritableBatch& b, uint64_t id) {
  const auto& layout = b.layout();
  auto* labels = b.data<int64_t>(0);
  const int64_t n = layout.spec(0).shape[0];
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int64_t>(id * 1000 + i);
  uint8_t* p = b.data(1);
  for (size_t k = 0; k < layout.nbytes(1); ++k) p[k] = PatternByte(id, k);
  b.meta().first_index = id;
}

// Empty if the batch holds what FillBatch wrote for meta().first_index, else
// a description of the first difference.
inline std::string CheckBatch(const BatchView& v) {
  const uint64_t id = v.meta().first_index;
  const TensorView* labels = v.Find("label");
  const TensorView* payload = v.Find("payload");
  if (!labels || !payload) return "missing tensor";
  for (int64_t i = 0; i < labels->numel(); ++i) {
    if (labels->as<int64_t>()[i] != static_cast<int64_t>(id * 1000 + i)) {
      return "label " + std::to_string(i) + " of batch " + std::to_string(id);
    }
  }
  for (size_t k = 0; k < payload->nbytes; ++k) {
    if (payload->data[k] != PatternByte(id, k)) {
      return "payload byte " + std::to_string(k) + " of batch " + std::to_string(id);
    }
  }
  return "";
}

}  // namespace datafeed::testing

#endif  // DATAFEED_TESTS_TRANSPORT_TEST_UTIL_H_
