// datafeed-make-mnist: writes a deterministic synthetic MNIST-format IDX pair.
//
//   datafeed-make-mnist --out DIR [--count N] [--seed S] [--prefix train]
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "datafeed/producer/dataset.h"

namespace {

constexpr const char* kUsage =
    "usage: datafeed-make-mnist --out DIR [--count N] [--seed S] [--prefix PREFIX]\n"
    "\n"
    "Writes DIR/PREFIX-images-idx3-ubyte and DIR/PREFIX-labels-idx1-ubyte: N synthetic\n"
    "28x28 digit images in MNIST's IDX format, identical for the same N and S.\n"
    "  --out DIR        output directory (created if missing)\n"
    "  --count N        number of samples (default 60000)\n"
    "  --seed S         RNG seed (default 0)\n"
    "  --prefix PREFIX  file name prefix, e.g. train or t10k (default train)\n";

bool ParseU64(const char* s, unsigned long long* out) {
  if (s == nullptr || *s == '\0' || *s == '-') return false;
  errno = 0;
  char* end = nullptr;
  *out = std::strtoull(s, &end, 10);
  return errno == 0 && *end == '\0';
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  std::string prefix = "train";
  unsigned long long count = 60000;
  unsigned long long seed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--out" && value != nullptr) {
      out = value;
    } else if (arg == "--prefix" && value != nullptr) {
      prefix = value;
    } else if (arg == "--count" && ParseU64(value, &count)) {
    } else if (arg == "--seed" && ParseU64(value, &seed)) {
    } else {
      std::fprintf(stderr, "datafeed-make-mnist: bad or incomplete argument '%s'\n%s",
                   arg.c_str(), kUsage);
      return 2;
    }
    ++i;
  }
  if (out.empty()) {
    std::fprintf(stderr, "datafeed-make-mnist: --out is required\n%s", kUsage);
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) {
    std::fprintf(stderr, "datafeed-make-mnist: cannot create %s: %s\n", out.c_str(),
                 ec.message().c_str());
    return 1;
  }
  const datafeed::Status st = datafeed::WriteSyntheticMnist(out, prefix, count, seed);
  if (!st.ok()) {
    std::fprintf(stderr, "datafeed-make-mnist: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %llu samples (seed %llu) to %s/%s and %s/%s\n", count, seed, out.c_str(),
              datafeed::MnistImagesFileName(prefix).c_str(), out.c_str(),
              datafeed::MnistLabelsFileName(prefix).c_str());
  return 0;
}
