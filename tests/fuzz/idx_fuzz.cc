// The MNIST IDX reader on arbitrary files: the input is cut at its first
// byte's position into an images file and a labels file, which
// MnistDataset::Open checks (magic, dimensions, sizes) before any sample is
// read; an accepted dataset is read whole.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "datafeed/producer/dataset.h"
#include "fuzz_util.h"

namespace {

void Write(const std::string& path, const uint8_t* data, size_t n) {
  // A new file, not one truncated: ext4 flushes a file truncated to 0 and
  // rewritten when it is closed (auto_da_alloc), 30 times slower.
  ::unlink(path.c_str());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (n && std::fwrite(data, 1, n, f) != n) std::abort();
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // The first two bytes: the labels file's length (little-endian); the
  // images file is what comes before it.
  const size_t labels = std::min<size_t>(size - 2, data[0] | (size_t{data[1]} << 8));
  const uint8_t* body = data + 2;
  const size_t images = size - 2 - labels;
  const std::string img = datafeed::fuzz::ScratchDir() + "/images", lab = datafeed::fuzz::ScratchDir() + "/labels";
  Write(img, body, images);
  Write(lab, body + images, labels);
  auto ds = datafeed::MnistDataset::Open(img, lab);
  datafeed::fuzz::CheckRefusal(ds.status(), "MnistDataset::Open");
  if (!ds.ok()) return 0;
  datafeed::Sample s;
  for (size_t i = 0; i < (*ds)->size() && i < 64; ++i) {
    datafeed::fuzz::CheckRefusal((*ds)->Read(i, &s), "MnistDataset::Read");
  }
  return 0;
}
