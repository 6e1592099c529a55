#include "golden_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

namespace datafeed {
namespace test {

std::string GoldenPath(const std::string& relative) {
  return std::string(DATAFEED_GOLDEN_DIR) + "/" + relative;
}

GoldenArray ReadGoldenArray(const std::string& name) {
  std::ifstream f(GoldenPath(name + ".bin"), std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), {});
  GoldenArray a;
  if (b.size() < 8 || std::memcmp(b.data(), "DFGT", 4) != 0 || b.size() < 8 + 4 * size_t{b[5]}) {
    ADD_FAILURE() << "missing or malformed golden file " << GoldenPath(name + ".bin")
                  << "; rerun /usr/bin/python3 producer/tools/make_goldens.py";
    return a;
  }
  a.dtype = b[4];
  const int ndim = b[5];
  size_t off = 8;
  for (int i = 0; i < ndim; ++i, off += 4) {
    int32_t d;
    std::memcpy(&d, b.data() + off, 4);
    a.dims.push_back(d);
  }
  a.bytes.assign(b.begin() + static_cast<std::ptrdiff_t>(off), b.end());
  if (a.bytes.size() != a.numel() * (a.dtype == 1 ? 1 : 4)) {
    ADD_FAILURE() << "golden file " << name << " has " << a.bytes.size() << " payload bytes";
    a = GoldenArray();
  }
  return a;
}

}  // namespace test
}  // namespace datafeed
