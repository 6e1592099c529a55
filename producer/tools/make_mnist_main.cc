// datafeed-make-mnist: writes a deterministic synthetic MNIST-format IDX pair.
//
//   datafeed-make-mnist --out DIR [--count N] [--seed S] [--prefix train]
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "datafeed/producer/dataset.h"
#include "datafeed/tools/cli.h"

using namespace datafeed;

int main(int argc, char** argv) {
  std::string out;
  std::string prefix = "train";
  int64_t count = 60000;
  int64_t seed = 0;
  CLI::App app{"Writes DIR/PREFIX-images-idx3-ubyte and DIR/PREFIX-labels-idx1-ubyte: N synthetic\n"
               "28x28 digit images in MNIST's IDX format, identical for the same N and S.",
               "datafeed-make-mnist"};
  tools::Configure(app, {
      "datafeed-make-mnist --out data/mnist",
      "datafeed-make-mnist --out data/mnist --count 10000 --prefix t10k --seed 1",
  });
  app.add_option("--out", out, "output directory (created if missing)")->required();
  app.add_option("--count", count, "number of samples")->check(tools::WholeNumber(0));
  app.add_option("--seed", seed, "RNG seed")->check(tools::WholeNumber(0));
  app.add_option("--prefix", prefix, "file name prefix, e.g. train or t10k");
  if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;

  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) {
    std::fprintf(stderr, "datafeed-make-mnist: cannot create %s: %s\n", out.c_str(), ec.message().c_str());
    return 1;
  }
  const Status st =
      WriteSyntheticMnist(out, prefix, static_cast<size_t>(count), static_cast<uint64_t>(seed));
  if (!st.ok()) {
    std::fprintf(stderr, "datafeed-make-mnist: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("wrote %lld samples (seed %lld) to %s/%s and %s/%s\n", static_cast<long long>(count),
              static_cast<long long>(seed), out.c_str(), MnistImagesFileName(prefix).c_str(), out.c_str(),
              MnistLabelsFileName(prefix).c_str());
  return 0;
}
