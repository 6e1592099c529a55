#include "golden_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

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

std::vector<GoldenCase> LoadManifest() {
  std::vector<GoldenCase> cases;
  std::ifstream f(GoldenPath("manifest.txt"));
  if (!f) ADD_FAILURE() << "no " << GoldenPath("manifest.txt");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    GoldenCase c;
    in >> c.kind >> c.input >> c.output;
    for (std::string field; in >> field;) c.fields.push_back(field);
    cases.push_back(c);
  }
  return cases;
}

ByteDiff CompareBytes(const uint8_t* a, const uint8_t* b, size_t n) {
  ByteDiff d;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    const int x = std::abs(int{a[i]} - int{b[i]});
    d.max = std::max(d.max, x);
    sum += x;
  }
  d.mean = n ? sum / static_cast<double>(n) : 0.0;
  return d;
}

}  // namespace test
}  // namespace datafeed
