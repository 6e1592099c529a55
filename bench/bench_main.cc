// datafeed-bench SUBCOMMAND [--json] [options]
//
// Every subcommand measures the physical limit of what it benchmarks in the
// same run (memcpy, raw TCP, the bare OpenCV loop) and prints the ratio.
#include <optional>
#include <vector>

#include "bench_util.h"
#include "datafeed/tools/cli.h"

int main(int argc, char** argv) {
  using namespace datafeed;
  CLI::App app{"Benchmarks datafeed against the physical limit of what it does, measured in the same run\n"
               "(memcpy, raw TCP, the bare OpenCV loop), and prints the ratio. 'datafeed-bench SUBCOMMAND\n"
               "--help' lists a subcommand's flags.",
               "datafeed-bench"};
  tools::Configure(app, {
      "datafeed-bench shm",
      "datafeed-bench shm --batch 1024 --slots 8 --json",
      "datafeed-bench grpc --batches 60 --repeats 1",
      "datafeed-bench pipeline --threads 2 --torchvision",
      "datafeed-bench pipeline --preset imagenet-train --decode reduced --scaling",
      "datafeed-bench feed --threads 2 --step-ms 21 --transport grpc",
  });
  app.require_subcommand(1);
  const std::vector<bench::Subcommand> subcommands = {bench::AddShm(app), bench::AddPipeline(app),
                                                      bench::AddGrpc(app), bench::AddFeed(app)};
  if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;
  for (const bench::Subcommand& s : subcommands) {
    if (s.app->parsed()) return s.run();
  }
  return 2;  // require_subcommand(1): Parse rejected a command line without one
}
