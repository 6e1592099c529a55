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

// One line of manifest.txt: kind, input, output, then the kind's fields
// (see producer/tools/make_goldens.py). For "pipeline" and "file" the spec
// is the last field.
struct GoldenCase {
  std::string kind;
  std::string input, output;
  std::vector<std::string> fields;
};
// Every case of manifest.txt, in order.
std::vector<GoldenCase> LoadManifest();

// max |a - b| and the mean of |a - b| over two byte arrays (uint8 steps).
struct ByteDiff {
  int max = 0;
  double mean = 0;
};
ByteDiff CompareBytes(const uint8_t* a, const uint8_t* b, size_t n);

// Path of `relative` inside the golden directory.
std::string GoldenPath(const std::string& relative);
// Reads golden/<name>.bin; records a gtest failure and returns an empty
// array if the file is missing or malformed.
GoldenArray ReadGoldenArray(const std::string& name);

}  // namespace test
}  // namespace datafeed

#endif  // DATAFEED_TESTS_PRODUCER_GOLDEN_UTIL_H_
