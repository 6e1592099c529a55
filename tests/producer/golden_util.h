// Reads the files producer/tools/make_goldens.py writes into golden/.
#ifndef DATAFEED_TESTS_PRODUCER_GOLDEN_UTIL_H_
#define DATAFEED_TESTS_PRODUCER_GOLDEN_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace datafeed {
namespace test {

// One DFGT array: dtype 1 = uint8, 8 = float32 (datafeed's DType values).
struct GoldenArray {
  uint8_t dtype = 0;
  std::vector<int> dims;
  std::vector<uint8_t> bytes;
  const uint8_t* u8() const { return bytes.data(); }
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  size_t numel() const {
    size_t n = 1;
    for (int d : dims) n *= static_cast<size_t>(d);
    return n;
  }
};

// Path of `relative` inside the golden directory.
std::string GoldenPath(const std::string& relative);
// Reads golden/<name>.bin; records a gtest failure and returns an empty
// array if the file is missing or malformed.
GoldenArray ReadGoldenArray(const std::string& name);

}  // namespace test
}  // namespace datafeed

#endif  // DATAFEED_TESTS_PRODUCER_GOLDEN_UTIL_H_
