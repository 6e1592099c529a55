// datafeed-bench feed: an accelerator stand-in fed by a real Producer, for
// capacity planning ("how many producer threads keep my accelerator busy?").
//
// The consumer does what a training step does to the host: it takes a batch
// (Next()), copies every byte of it into a preallocated buffer as the
// host-to-device copy would, lets the batch go (Ack()), then sleeps for
// --step-ms, as the host thread of an accelerator does while the device
// computes. Its data-wait fraction is the time spent in Next() over the whole
// time; samples/s is what it got through.
//
// The ceiling (the physical limit, this run): the same loop over a resident
// batch of the same size (copy + sleep, no transport, no producer), for as
// many steps. samples/s / ceiling is what the data path leaves of the
// accelerator; wait fraction 0 means the producer kept up.
//
// The producer: DriveProducer (pipeline_bench.cc), the real Producer with
// --threads threads and the --pipeline spec on a synthetic MNIST, writing into
// shm (a ring of 4 slots in this process) or grpc (loopback, a port the kernel
// picks). The first --warmup batches are not counted (start-up and the ring
// filling up). Producer and consumer share this machine's cores, as they
// would on a training host.
//
// --find-threads: runs --threads 1, 2, ... up to --max-threads (default: the
// CPUs online) and stops at the first whose wait fraction is under --target
// (0.05); says so when none is.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "pipeline_bench.h"
#include "datafeed/producer/dataset.h"
#include "datafeed/producer/transform.h"
#include "datafeed/tools/cli.h"
#include "datafeed/tools/json_line.h"
#include "datafeed/transport/transport.h"

namespace datafeed::bench {
namespace {

constexpr const char* kStudyPipeline = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)";

struct FeedOptions {
  int64_t threads = 1;
  std::string pipeline = kStudyPipeline;
  bool split = false;
  int64_t batch = 8192;
  std::string transport = "shm";
  double step_ms = 21;
  int64_t batches = 30;
  int64_t warmup = 5;
  int64_t samples = 60000;
  bool find_threads = false;
  int64_t max_threads = 0;  // 0: the CPUs online
  double target = 0.05;
  bool json = false;
};

// What the stand-in saw over the counted steps.
struct Feed {
  double seconds = 0;       // from the first counted Next() to the end of the last step
  double wait_seconds = 0;  // in Next()
  double copy_seconds = 0;  // in the stand-in's copy
  uint64_t samples = 0;
  uint64_t bytes = 0;  // per batch, as copied
  std::vector<double> wait_ms;  // per counted step
  double samples_per_s() const { return seconds > 0 ? static_cast<double>(samples) / seconds : 0; }
  double wait_fraction() const { return seconds > 0 ? wait_seconds / seconds : 0; }
};

double Seconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }

void Step(double step_ms) {
  std::this_thread::sleep_for(std::chrono::nanoseconds(static_cast<int64_t>(step_ms * 1e6)));
}

// The ceiling: copy a resident batch of `bytes` and sleep, `steps` times.
Feed Ceiling(size_t bytes, int64_t batch, int64_t steps, double step_ms, std::vector<uint8_t>& device) {
  std::vector<uint8_t> resident(bytes);
  Generate(resident.data(), bytes & ~size_t{7}, 1);  // faulted in and not zero
  Feed f;
  f.bytes = bytes;
  const int64_t start = NowNs();
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t c0 = NowNs();
    std::memcpy(device.data(), resident.data(), bytes);
    f.copy_seconds += Seconds(NowNs() - c0);
    Step(step_ms);
    f.samples += static_cast<uint64_t>(batch);
  }
  f.seconds = Seconds(NowNs() - start);
  return f;
}

int Fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "datafeed-bench feed: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

// One producer run feeding the stand-in.
Result<Feed> RunFeed(const std::shared_ptr<const Dataset>& dataset, const Pipeline& pipeline,
                     const FeedOptions& o, int threads, int run_id, std::vector<uint8_t>& device) {
  Feed f;
  int64_t seen = 0, start = 0;
  auto consume = [&](BatchReader& reader) -> Result<bool> {
    const int64_t t0 = NowNs();
    DATAFEED_ASSIGN_OR_RETURN(BatchView b, reader.Next(Deadline::AfterMillis(120'000)));
    const int64_t t1 = NowNs();
    // The host-to-device copy: every tensor, end to end, into the
    // preallocated buffer.
    size_t at = 0;
    for (const TensorView& t : b.frame().tensors()) {
      if (at + t.nbytes > device.size()) {
        return Status::Internal("a batch holds more than the " + std::to_string(device.size()) +
                                " bytes its layout promised");
      }
      std::memcpy(device.data() + at, t.data, t.nbytes);
      at += t.nbytes;
    }
    const int64_t t2 = NowNs();
    const TensorView* labels = b.Find("label");
    const uint64_t n = labels ? static_cast<uint64_t>(labels->numel()) : 0;
    b = BatchView();  // the copy is done: the slot may be reused
    DATAFEED_RETURN_NOT_OK(reader.Ack());
    ++seen;
    if (seen > o.warmup) {
      if (seen == o.warmup + 1) start = t0;
      f.wait_seconds += Seconds(t1 - t0);
      f.wait_ms.push_back(static_cast<double>(t1 - t0) / 1e6);
      f.copy_seconds += Seconds(t2 - t1);
      f.samples += n;
      f.bytes = at;
    }
    Step(o.step_ms);
    if (seen > o.warmup) f.seconds = Seconds(NowNs() - start);
    return seen < o.warmup + o.batches;
  };
  auto stats = DriveProducer(dataset, pipeline, o.transport, threads, o.batch, /*shuffle=*/false, run_id,
                             DecodeMode::kExact, consume);
  if (!stats.ok()) return stats.status();
  if (f.samples == 0) return Status::Internal("no batch was counted");
  return f;
}

tools::JsonObject Row(const FeedOptions& o, const std::string& spec, int threads, const Feed& f,
                      const Feed& ceiling) {
  tools::JsonObject j;
  j["bench"] = "feed";
  j["transport"] = o.transport;
  j["pipeline"] = spec;
  j["split"] = spec.find('|') != std::string::npos;
  j["batch"] = o.batch;
  j["threads"] = threads;
  j["cpus_online"] = sysconf(_SC_NPROCESSORS_ONLN);
  j["step_ms"] = tools::Round(o.step_ms, 3);
  j["batches"] = o.batches;
  j["batch_bytes"] = f.bytes;
  j["wait_fraction"] = tools::Round(f.wait_fraction(), 4);
  j["wait_ms_p50"] = tools::Round(Median(f.wait_ms), 3);
  j["wait_ms_max"] = tools::Round(*std::max_element(f.wait_ms.begin(), f.wait_ms.end()), 3);
  j["copy_ms_mean"] = tools::Round(f.copy_seconds * 1e3 / static_cast<double>(f.wait_ms.size()), 3);
  j["samples_per_s"] = std::llround(f.samples_per_s());
  j["ceiling_samples_per_s"] = std::llround(ceiling.samples_per_s());
  j["ratio"] = tools::Round(f.samples_per_s() / ceiling.samples_per_s(), 3);
  return j;
}

void Print(const tools::JsonObject& j, const FeedOptions& o, int threads, const Feed& f, const Feed& ceiling) {
  if (!o.json) {
    std::printf("feed %s, %d producer thread%s, batch %lld, step %.1f ms: wait %.1f%%, %.0f samples/s of a "
                "%.0f ceiling (%.3f); wait p50 %.2f ms, copy %.2f ms/batch\n",
                o.transport.c_str(), threads, threads == 1 ? "" : "s", static_cast<long long>(o.batch),
                o.step_ms, 100 * f.wait_fraction(), f.samples_per_s(), ceiling.samples_per_s(),
                f.samples_per_s() / ceiling.samples_per_s(), Median(f.wait_ms),
                f.copy_seconds * 1e3 / static_cast<double>(f.wait_ms.size()));
  }
  std::printf("%s\n", tools::JsonLine(j).c_str());
  std::fflush(stdout);
}

int RunFeedBench(const FeedOptions& o) {
  std::string spec = o.pipeline;
  if (o.split && spec.find('|') == std::string::npos) {
    auto moved = Pipeline::MoveFinishToConsumer(spec);
    if (!moved.ok()) {
      return Fail("--split of '" + spec + "' (a pipeline that blurs after to_tensor cannot be split; "
                  "try --pipeline 'to_tensor,normalize(0.1307,0.3081)' --split)",
                  moved.status());
    }
    spec = *moved;
  }
  auto pipeline = Pipeline::Make(spec);
  if (!pipeline.ok()) return Fail("--pipeline", pipeline.status());
  if (o.samples < o.batch) {
    std::fprintf(stderr, "datafeed-bench feed: --samples %lld is below --batch %lld; raise --samples\n",
                 static_cast<long long>(o.samples), static_cast<long long>(o.batch));
    return 2;
  }

  char dir_template[] = "/tmp/datafeed-feed-bench-XXXXXX";
  if (!mkdtemp(dir_template)) return Fail("temporary directory", Status::FromErrno(errno, "mkdtemp"));
  const std::string dir = dir_template;
  std::shared_ptr<const Dataset> dataset;
  Status made = WriteSyntheticMnist(dir, "train", static_cast<size_t>(o.samples), 7);
  if (made.ok()) {
    auto opened = MnistDataset::OpenDir(dir, "train");
    if (opened.ok()) dataset = std::move(opened).value();
    made = opened.status();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);  // mapped already
  if (!made.ok()) return Fail("the synthetic MNIST", made);

  auto layout = MakeBatchLayout(*dataset, *pipeline, static_cast<size_t>(o.batch));
  if (!layout.ok()) return Fail("the batch layout", layout.status());
  size_t batch_bytes = 0;
  for (size_t i = 0; i < (*layout)->num_tensors(); ++i) batch_bytes += (*layout)->nbytes(i);
  std::vector<uint8_t> device(batch_bytes);
  std::memset(device.data(), 0, device.size());  // faulted in before anything is timed

  const Feed ceiling = Ceiling(batch_bytes, o.batch, o.batches, o.step_ms, device);
  const int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  if (!o.find_threads) {
    auto f = RunFeed(dataset, *pipeline, o, static_cast<int>(o.threads), 0, device);
    if (!f.ok()) return Fail("feed run", f.status());
    Print(Row(o, spec, static_cast<int>(o.threads), *f, ceiling), o, static_cast<int>(o.threads), *f, ceiling);
    return 0;
  }
  const int max_threads = o.max_threads > 0 ? static_cast<int>(o.max_threads) : cpus;
  int found = 0;
  double last_wait = 1;
  for (int t = 1; t <= max_threads && found == 0; ++t) {
    auto f = RunFeed(dataset, *pipeline, o, t, t, device);
    if (!f.ok()) return Fail("feed run, " + std::to_string(t) + " threads", f.status());
    Print(Row(o, spec, t, *f, ceiling), o, t, *f, ceiling);
    last_wait = f->wait_fraction();
    if (last_wait < o.target) found = t;
  }
  tools::JsonObject j;
  j["bench"] = "feed-find-threads";
  j["transport"] = o.transport;
  j["pipeline"] = spec;
  j["batch"] = o.batch;
  j["step_ms"] = tools::Round(o.step_ms, 3);
  j["target_wait"] = o.target;
  j["max_threads_tried"] = max_threads;
  j["cpus_online"] = cpus;
  if (found > 0) {
    j["threads_needed"] = found;
  } else {
    j["threads_needed"] = nullptr;
    j["wait_at_max_threads"] = tools::Round(last_wait, 4);
  }
  if (!o.json) {
    if (found > 0) {
      std::printf("find-threads: %d producer thread%s keep the wait under %.0f%%\n", found, found == 1 ? "" : "s",
                  100 * o.target);
    } else {
      std::printf("find-threads: no thread count up to %d (this machine has %d CPUs online) keeps the wait under "
                  "%.0f%%; at %d it is %.1f%%\n",
                  max_threads, cpus, 100 * o.target, max_threads, 100 * last_wait);
    }
  }
  std::printf("%s\n", tools::JsonLine(j).c_str());
  return 0;
}

}  // namespace

Subcommand AddFeed(CLI::App& bench) {
  auto o = std::make_shared<FeedOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "feed",
      "An accelerator stand-in (take a batch, copy it as a host-to-device copy would, sleep --step-ms) fed by "
      "the real Producer over shm or gRPC: data-wait fraction and samples/s against the ceiling (the same loop "
      "over a resident batch, this run); --find-threads searches the fewest producer threads that keep the "
      "wait under 5%");
  cmd->footer(
      "Examples:\n"
      "  datafeed-bench feed --threads 2 --step-ms 21 --batch 8192\n"
      "  datafeed-bench feed --transport grpc --find-threads\n"
      "  datafeed-bench feed --pipeline 'to_tensor,normalize(0.1307,0.3081)' --split");
  cmd->add_option("--threads", o->threads, "producer threads")->check(tools::WholeNumber(1, 1024));
  cmd->add_option("--pipeline", o->pipeline, "transform spec ('|' splits it)");
  cmd->add_flag("--split", o->split,
                "finish on the consumer: ship uint8 and leave the trailing to_tensor,normalize to the "
                "accelerator (the pipeline must allow it)");
  cmd->add_option("--batch", o->batch, "samples per batch")->check(tools::WholeNumber(1));
  cmd->add_option("--transport", o->transport, "shm or grpc (loopback)")->check(tools::OneOf({"shm", "grpc"}));
  cmd->add_option("--step-ms", o->step_ms, "the accelerator's time per step")->check(tools::PositiveNumber());
  cmd->add_option("--batches", o->batches, "steps counted per run")->check(tools::WholeNumber(1));
  cmd->add_option("--warmup", o->warmup, "steps not counted first")->check(tools::WholeNumber(0));
  cmd->add_option("--samples", o->samples, "synthetic MNIST samples")->check(tools::WholeNumber(1));
  cmd->add_flag("--find-threads", o->find_threads,
                "run 1, 2, ... producer threads and stop at the first that keeps the wait under --target");
  cmd->add_option("--max-threads", o->max_threads, "--find-threads tries up to this many")
      ->check(tools::WholeNumber(1, 1024))
      ->default_str("the CPUs online");
  cmd->add_option("--target", o->target, "wait fraction --find-threads aims under")->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--json", o->json, "print only the JSON lines");
  return {cmd, [o] { return RunFeedBench(*o); }};
}

}  // namespace datafeed::bench
