// Pieces of `datafeed-bench pipeline` shared by its MNIST form
// (pipeline_bench.cc) and its decoded-image form (image_pipeline_bench.cc).
#ifndef DATAFEED_BENCH_PIPELINE_BENCH_H_
#define DATAFEED_BENCH_PIPELINE_BENCH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.h"
#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/transport.h"

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
  // The runs with `decimals` places, for a JSON line.
  std::vector<double> Rounded(int decimals) const;
};

struct ProducerRun {
  Rate rate;
  uint64_t samples = 0;    // counted (after warm-up)
  double seconds = 0;      // over which they were counted
  double cpu_seconds = 0;  // the process's CPU time meanwhile
  ProducerStats stats;     // the whole run, warm-up included
};

// A Producer (`threads`, endless epochs) writing into a fresh `scheme`
// endpoint (inproc, shm, or grpc on a loopback port) with a ring of 4
// slots, and a consumer thread that calls `consume(reader)` until it returns
// false or an error; the producer is then stopped and the rest drained.
// `run_id` keeps endpoint names unique within the process. The producer's
// stats of the whole run, or the first error (the consumer's first).
Result<ProducerStats> DriveProducer(const std::shared_ptr<const Dataset>& dataset,
                                    const Pipeline& pipeline, const std::string& scheme, int threads,
                                    int64_t batch, bool shuffle, int run_id, DecodeMode decode,
                                    const std::function<Result<bool>(BatchReader&)>& consume);

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
  nlohmann::json json;  // the line it printed, parsed
  std::string note;     // why there is no figure, when samples_per_s is 0
};
// Runs `python script script_args` (args already shell-quoted) and reads
// the JSON line it prints.
TorchvisionRun RunTorchvision(const std::string& python, const std::string& script,
                              const std::string& script_args);

// The flags of `datafeed-bench pipeline`, both forms: the MNIST pipeline
// (the default) and decoded images (--preset / --image-folder). Flags whose
// default differs between the forms are read through Given().
struct PipelineOptions {
  const CLI::App* cmd = nullptr;  // the subcommand, to ask which flags were given
  bool Given(const char* flag) const { return cmd->count(flag) > 0; }

  bool json = false;
  int64_t threads = 1;
  int64_t batch = 0;  // 8192 (MNIST) or 128 (images) unless given
  double seconds = 3.0;
  int64_t repeats = 3;
  bool scaling = false;
  bool torchvision = false;
  int64_t tv_count = 0;  // 2000 (MNIST) or 300 (images) unless given
  std::string python = "/usr/bin/python3";
  std::string tv_script;
  // MNIST form.
  std::string pipeline;
  int64_t samples = 60000;
  std::string transport = "inproc";
  bool shuffle = false;
  bool tv_random_sigma = false;
  // Image form.
  std::string preset = "imagenet-train";
  std::string image_folder;
  int64_t images = 1200;
  std::string decode = "exact";
  std::string bare_interp = "area";
};

// `datafeed-bench pipeline --preset NAME` / `--image-folder DIR`.
int RunImagePipeline(const PipelineOptions& o);

}  // namespace datafeed::bench

#endif  // DATAFEED_BENCH_PIPELINE_BENCH_H_
