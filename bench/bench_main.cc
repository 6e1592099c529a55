// datafeed-bench SUBCOMMAND [--json] [options]
//
// Every subcommand measures the physical limit of what it benchmarks in the
// same run (memcpy, raw TCP, the bare OpenCV loop) and prints the ratio.
#include <cstdio>
#include <cstring>
#include <string>

#include "bench_util.h"

namespace datafeed::bench {
int RunShm(const Args& args);
int RunPipeline(const Args& args);
int RunGrpc(const Args& args);
}  // namespace datafeed::bench

namespace {

struct Subcommand {
  const char* name;
  int (*run)(const datafeed::bench::Args&);
  const char* help;
};

const Subcommand kSubcommands[] = {
    {"shm", datafeed::bench::RunShm,
     "producer and consumer processes over the shared-memory ring: GB/s vs memcpy,\n"
     "        4 KB handoff latency, idle reader CPU\n"
     "        [--batches 300] [--warmup 20] [--batch 8192] [--slots 4] [--lat-frames 20000]\n"
     "        [--spin-us 0] [--idle-seconds 2] [--fill generate|copy]"},
    {"pipeline", datafeed::bench::RunPipeline,
     "Producer samples/s for the reference pipeline into a transport vs the\n"
     "        bare OpenCV loop (convertTo + sepFilter2D) on the same threads and images\n"
     "        [--threads 1] [--batch 8192] [--pipeline SPEC] [--samples 60000] [--seconds 3]\n"
     "        [--repeats 3] [--transport inproc|shm] [--shuffle] [--scaling]\n"
     "        [--torchvision [--tv-count 2000] [--tv-random-sigma] [--python /usr/bin/python3]\n"
     "        [--tv-script PATH]]\n"
     "      pipeline --preset imagenet-train|imagenet-eval: the producer on a generated\n"
     "        ImageNet-like JPEG folder vs the bare TurboJPEG + cv::resize loop\n"
     "        [--threads 1] [--images 1200] [--image-folder DIR] [--batch 128] [--seconds 3]\n"
     "        [--repeats 3] [--decode exact|reduced] [--bare-interp area|linear] [--scaling]\n"
     "        [--torchvision [--tv-count 300]]"},
    {"grpc", datafeed::bench::RunGrpc,
     "GB/s of the gRPC stream over loopback (producer and consumer processes, 25.7 MB\n"
     "        frames) vs raw TCP and a naive copying gRPC service in the same run\n"
     "        [--batches 120] [--naive-batches 60] [--warmup 10] [--batch 8192] [--repeats 3]\n"
     "        [--slots 4] [--prefetch 1] [--tcp-buf 0]"},
};

void Usage() {
  std::fprintf(stderr, "usage: datafeed-bench SUBCOMMAND [--json] [options]\n\n");
  for (const auto& s : kSubcommands) std::fprintf(stderr, "  %-8s %s\n\n", s.name, s.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    Usage();
    return argc < 2 ? 2 : 0;
  }
  for (const auto& s : kSubcommands) {
    if (s.name == std::string(argv[1])) {
      datafeed::bench::Args args(argc - 2, argv + 2);
      return s.run(args);
    }
  }
  std::fprintf(stderr, "datafeed-bench: unknown subcommand '%s'\n\n", argv[1]);
  Usage();
  return 2;
}
