// Pieces of `datafeed-bench pipeline` shared by its MNIST form
// (pipeline_bench.cc) and its decoded-image form (image_pipeline_bench.cc).
#ifndef DATAFEED_BENCH_PIPELINE_BENCH_H_
#define DATAFEED_BENCH_PIPELINE_BENCH_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench_util.h"
#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/producer/transform.h"

namespace datafeed::bench {

// A rate by wall time and by the CPU time the process used meanwhile.
struct Rate {
  double per_s = 0;
  double per_cpu_s = 0;
};

// Medians of repeated runs.
struct Repeated {
  std::vector<double> runs;
  std::vector<double> cpu_runs;  // per CPU second
  void Add(const Rate& r) {
    runs.push_back(r.per_s);
    cpu_runs.push_back(r.per_cpu_s);
  }
  double median() const { return Median(runs); }
  double cpu_median() const { return Median(cpu_runs); }
  std::string Text(int precision = 0, const char* sep = " ") const;
};

struct ProducerRun {
  Rate rate;
  uint64_t samples = 0;    // counted (after warm-up)
  double seconds = 0;      // over which they were counted
  double cpu_seconds = 0;  // the process's CPU time meanwhile
  ProducerStats stats;     // the whole run, warm-up included
};

// One Producer run into a fresh `scheme`:// endpoint (inproc or shm) for about
// `seconds` of steady state, a consumer thread taking and dropping every
// batch; samples/s is what the consumer receives after the first batch.
// `run_id` keeps endpoint names unique within the process.
Result<ProducerRun> RunProducer(const std::shared_ptr<const Dataset>& dataset,
                                const Pipeline& pipeline, const std::string& scheme, int threads,
                                int64_t batch, bool shuffle, double seconds, int run_id,
                                DecodeMode decode);

// The outcome of torchvision_pipeline.py: samples/s and its JSON line, or
// why there is none.
struct TorchvisionRun {
  double samples_per_s = 0;
  std::string json;
  std::string note;  // why there is no figure, when samples_per_s is 0
};
// Runs `python script script_args` (args already shell-quoted) and reads
// the JSON line it prints.
TorchvisionRun RunTorchvision(const std::string& python, const std::string& script,
                              const std::string& script_args);
// The value of "key": in a flat JSON line, as text (strings unquoted).
std::optional<std::string> JsonField(const std::string& line, const std::string& key);

// `datafeed-bench pipeline --preset NAME` / `--image-folder DIR`.
int RunImagePipeline(const Args& args);

}  // namespace datafeed::bench

#endif  // DATAFEED_BENCH_PIPELINE_BENCH_H_
