// mnist_train: the MNIST CNN of the study datafeed grew from, trained in
// libtorch on batches that datafeed delivers as zero-copy tensors.
//
//   --source local   the C++ Producer runs in this process, on the trainer's
//                    own cores, writing into an inproc:// queue that a
//                    Consumer reads (the baseline: a DataLoader's place);
//   --source feed    batches come from a datafeed-producer process at
//                    --endpoint / $DATAFEED_ENDPOINT, over the transport
//                    $DATAFEED_TRANSPORT (or --transport) selects.
//
// It first measures the ceiling: the step time with one batch already
// resident, so the trainer never waits (--ceiling-steps). Then it trains
// --steps steps on fresh batches and reports ratio = ceiling_step_s / step_s
// (1.0: data loading costs nothing) and the share of wall time spent waiting
// for data. --json prints one line per run for bench/e2e/run_e2e.sh.
//
// The network and optimizer are PyTorch's examples/mnist (mnist_model.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "datafeed/consumer/consumer.h"
#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/producer/transform.h"
#include "datafeed/tools/cli.h"
#include "datafeed/tools/json_line.h"
#include "datafeed/torch/tensors.h"
#include "datafeed/transport/transport.h"
#include "mnist_model.h"

using namespace datafeed;
using Clock = std::chrono::steady_clock;

namespace {

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

[[noreturn]] void Die(const Status& st) {
  std::fprintf(stderr, "mnist_train: %s\n", st.ToString().c_str());
  std::exit(1);
}

template <typename T>
T OrDie(Result<T> r) {
  if (!r.ok()) Die(r.status());
  return std::move(r).value();
}

// One batch on the training device.
struct Batch {
  at::Tensor image;  // float32 [B,1,28,28]
  at::Tensor label;  // int64 [B]
};

// Where batches come from: always a Consumer; for --source local also the
// in-process Producer that feeds it.
class Source {
 public:
  ~Source() { Stop(); }

  Status OpenFeed(const tools::EndpointFlags& endpoint, const ConsumerOptions& options) {
    DATAFEED_ASSIGN_OR_RETURN(Endpoint ep, endpoint.Resolve());
    DATAFEED_ASSIGN_OR_RETURN(consumer_, Consumer::Open(ep, options));
    return Status::OK();
  }

  Status OpenLocal(const std::string& mnist_dir, const std::string& split,
                   const std::string& pipeline_spec, const ProducerOptions& po,
                   ConsumerOptions options) {
    DATAFEED_ASSIGN_OR_RETURN(std::shared_ptr<const Dataset> dataset,
                              MnistDataset::OpenDir(mnist_dir, split));
    DATAFEED_ASSIGN_OR_RETURN(Pipeline pipeline, Pipeline::Make(pipeline_spec));
    const std::string uri = "inproc://mnist-train-" + std::to_string(getpid());
    DATAFEED_ASSIGN_OR_RETURN(Endpoint endpoint, ParseEndpoint(uri));
    WriterOptions wo;
    wo.inproc_capacity = 4;  // like a 4-slot ring
    DATAFEED_ASSIGN_OR_RETURN(writer_, OpenWriter(endpoint, wo));
    DATAFEED_ASSIGN_OR_RETURN(producer_, Producer::Make(dataset, pipeline, po, writer_.get()));
    DATAFEED_ASSIGN_OR_RETURN(consumer_, Consumer::Open(endpoint, options));
    producer_thread_ = std::thread([this] {
      Status st = producer_->Run();
      if (!st.ok() && st.code() != StatusCode::kCancelled) {
        std::fprintf(stderr, "mnist_train: local producer: %s\n", st.ToString().c_str());
      }
      (void)writer_->Close();  // the consumer drains, then sees EndOfStream
    });
    return Status::OK();
  }

  // A batch on `device`: zero-copy on the CPU, holding its transport memory
  // until the tensors are dropped. From a split pipeline (the producer sends
  // uint8), a GPU gets the uint8 image (a quarter of the bytes to copy) and
  // finishes it there; the CPU finishes it while reading the frame.
  Result<Batch> Next(const DeviceOptions& device) {
    const bool on_device = !device.device.is_cpu();
    DATAFEED_ASSIGN_OR_RETURN(BatchView view, consumer_->Next());
    ToTensorsOptions to;
    to.finish = !on_device;
    DATAFEED_ASSIGN_OR_RETURN(TensorBatch tensors, ToTensors(view, to));
    view = BatchView();  // the tensors now hold the memory
    if (on_device) {
      DATAFEED_ASSIGN_OR_RETURN(tensors, ToDevice(tensors, device));
      DATAFEED_ASSIGN_OR_RETURN(tensors, FinishTensors(tensors));
    }
    Batch b;
    DATAFEED_ASSIGN_OR_RETURN(b.image, tensors.Get("image"));
    DATAFEED_ASSIGN_OR_RETURN(b.label, tensors.Get("label"));
    if (b.image.dim() != 4 || b.image.size(1) != 1 || b.image.size(2) != 28 ||
        b.image.size(3) != 28 || b.image.scalar_type() != at::kFloat) {
      return Status::InvalidArgument(
          "the network takes float32 image [B,1,28,28], the producer sends " +
          std::string(b.image.dtype().name()) + " " + ShapeString(b.image) +
          "; check the producer's dataset and --pipeline");
    }
    if (b.label.dim() != 1 || b.label.size(0) != b.image.size(0) ||
        b.label.scalar_type() != at::kLong) {
      return Status::InvalidArgument("label must be int64 [B] with B = " +
                                     std::to_string(b.image.size(0)));
    }
    return b;
  }

  // Waits until the local producer has stopped making progress (its queue is
  // full), so that it does not compete with a measurement. A no-op for feed.
  void WaitUntilProducerIdle(double max_s) {
    if (!producer_) return;
    const auto start = Clock::now();
    uint64_t last = producer_->stats().batches;
    while (Since(start) < max_s) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      const uint64_t now = producer_->stats().batches;
      if (now == last) return;
      last = now;
    }
  }

  void Stop() {
    if (consumer_) consumer_->Stop();
    if (producer_) producer_->Stop();
    if (producer_thread_.joinable()) producer_thread_.join();
  }

  Consumer& consumer() { return *consumer_; }
  // The transport batches arrive on (for auto://, what the handshake chose).
  std::string transport() const { return SchemeName(consumer_->transport()); }

  static std::string ShapeString(const at::Tensor& t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); ++i) s += (i ? "," : "") + std::to_string(t.size(i));
    return s + "]";
  }

 private:
  std::unique_ptr<BatchWriter> writer_;
  std::unique_ptr<Producer> producer_;
  std::thread producer_thread_;
  std::unique_ptr<Consumer> consumer_;
};

// NaN for an empty list.
double Median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  tools::EndpointFlags endpoint;
  tools::GrpcClientFlags grpc;
  std::string source = "local", mnist_dir, split = "train", device_name = "cpu";
  std::string pipeline_spec = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)";
  int64_t threads = 0, torch_threads = 0, steps = 50, batch_size = 8192, ceiling_steps = 3;
  int64_t log_every = 10, prefetch = 1, seed = 1, timeout_ms = 60'000, connect_ms = 30'000;
  double consumer_log_s = 0;
  bool json = false, pin_memory = true;

  CLI::App app{"Trains PyTorch's MNIST CNN (Adadelta, nll_loss) on batches from datafeed and\n"
               "compares the step time with the step time on a resident batch (the ceiling).",
               "mnist_train"};
  tools::Configure(app, {
      "mnist_train --source local --mnist data/mnist --threads 4 --steps 100",
      "mnist_train --source feed --endpoint shm://feed0 --batch-size 8192 --json",
      "DATAFEED_ENDPOINT=auto://prep-host:5000 mnist_train --source feed --device cuda",
  });
  app.add_option("--source", source, "local (in-process producer) or feed (a datafeed-producer process)")
      ->check(tools::OneOf({"local", "feed"}));
  endpoint.Add(app, "--source feed: where the producer serves (shm://NAME, grpc://HOST:PORT or auto://HOST:PORT)");
  grpc.Add(app);
  const char* kLocal = "--source local";
  app.add_option("--mnist", mnist_dir, "MNIST IDX directory (datafeed-make-mnist --out DIR makes one)")
      ->group(kLocal);
  app.add_option("--split", split, "MNIST file prefix, train or t10k")->group(kLocal);
  app.add_option("--threads", threads, "producer threads (0: one per core)")
      ->check(tools::WholeNumber(0, 4096))
      ->group(kLocal);
  app.add_option("--pipeline", pipeline_spec,
                 "local: transform spec; feed: what the producer runs (only reported, as 'blur')");
  app.add_option("--batch-size", batch_size, "local: samples per batch (feed: the producer's --batch-size)")
      ->check(tools::WholeNumber(1));
  const char* kTraining = "Training";
  app.add_option("--torch-threads", torch_threads, "libtorch intra-op threads (0: one per core)")
      ->check(tools::WholeNumber(0, 4096))
      ->group(kTraining);
  app.add_option("--steps", steps, "training steps after the ceiling (0: until the stream ends)")
      ->check(tools::WholeNumber(0))
      ->group(kTraining);
  app.add_option("--ceiling-steps", ceiling_steps,
                 "steps timed on one resident batch first, after one warm-up step (0: skip)")
      ->check(tools::WholeNumber(0))
      ->group(kTraining);
  app.add_option("--seed", seed, "seed for weights, dropout and (local) shuffling")
      ->check(tools::WholeNumber())
      ->group(kTraining);
  app.add_option("--device", device_name, "cpu or cuda[:N] (cuda needs a CUDA-enabled libtorch)")->group(kTraining);
  app.add_flag("--pin-memory,!--no-pin-memory", pin_memory,
               "cuda: stage batches in pinned memory for asynchronous copies")
      ->group(kTraining);
  const char* kConsumer = "Consumer";
  app.add_option("--prefetch", prefetch, "batches the consumer reads ahead")
      ->check(tools::WholeNumber(0, 1024))
      ->group(kConsumer);
  app.add_option("--timeout-ms", timeout_ms, "fail when no batch arrives for this long")
      ->check(tools::WholeNumber(0))
      ->group(kConsumer);
  app.add_option("--connect-timeout-ms", connect_ms, "feed: wait this long for the producer to appear")
      ->check(tools::WholeNumber(0))
      ->group(kConsumer);
  const char* kOutput = "Output";
  app.add_option("--log-every", log_every, "print a progress line to stderr every this many steps (0: never)")
      ->check(tools::WholeNumber(0))
      ->group(kOutput);
  app.add_option("--consumer-log-s", consumer_log_s, "seconds between the consumer's own stats lines (0: none)")
      ->check(tools::Number(0))
      ->group(kOutput);
  app.add_flag("--json", json, "print the results as one JSON line on stdout (progress stays on stderr)")
      ->group(kOutput);
  if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;

  if (torch_threads <= 0) torch_threads = std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(static_cast<int>(torch_threads));

  DeviceOptions device;
  try {
    device.device = c10::Device(device_name);
  } catch (const std::exception&) {
    Die(Status::InvalidArgument("--device '" + device_name + "': expected cpu or cuda[:N]"));
  }
  device.pin_memory = pin_memory;
  if (device.device.is_cuda() && !CudaAvailable()) {
    Die(Status::Unavailable("--device " + device_name +
                            ": this libtorch has no CUDA or this machine no GPU; use --device cpu"));
  }

  ConsumerOptions co;
  co.prefetch = static_cast<int>(prefetch);
  co.timeout_ms = timeout_ms;
  co.reader.connect_timeout_ms = connect_ms;
  co.log_every_s = consumer_log_s;
  co.log_name = "mnist_train: consumer";
  Source src;
  if (source == "feed") {
    grpc.ApplyTo(&co.reader);
    if (Status st = src.OpenFeed(endpoint, co); !st.ok()) Die(st);
  } else {
    if (mnist_dir.empty()) {
      Die(Status::InvalidArgument(
          "--source local needs --mnist DIR (datafeed-make-mnist --out DIR writes a synthetic one)"));
    }
    ProducerOptions po;
    po.sampler.batch_size = static_cast<size_t>(batch_size);
    po.sampler.shuffle = true;
    po.sampler.seed = static_cast<uint64_t>(seed);
    po.sampler.drop_last = true;  // every step the same batch size
    po.sampler.num_epochs = SamplerOptions::kEndless;
    po.threads = static_cast<int>(threads);
    po.producer_id = static_cast<uint64_t>(getpid());
    if (Status st = src.OpenLocal(mnist_dir, split, pipeline_spec, po, co); !st.ok()) Die(st);
  }
  const bool blur_known = source == "local" || app.count("--pipeline") > 0;
  const bool blur = pipeline_spec.find("gaussian_blur") != std::string::npos;
  const int producer_threads =
      source == "local" ? (threads > 0 ? static_cast<int>(threads)
                                       : static_cast<int>(std::thread::hardware_concurrency()))
                        : -1;

  examples::MnistModel model(device.device, static_cast<uint64_t>(seed));
  // libtorch reports errors as exceptions; this is the boundary.
  auto train_step = [&](const Batch& b) {
    try {
      return model.TrainStep(b.image, b.label);
    } catch (const std::exception& e) {
      std::string what = e.what();
      Die(Status::Internal("training step: " + what.substr(0, what.find('\n'))));
    }
  };

  // The ceiling: one batch made resident (copied, so it holds no transport
  // memory), one warm-up step, then ceiling_steps timed steps.
  double ceiling_step_s = std::nan("");
  std::vector<double> ceiling_times;  // per step, for the median
  int64_t batch = 0;
  {
    Batch first = OrDie(src.Next(device));
    batch = first.image.size(0);
    if (ceiling_steps > 0) {
      Batch resident{first.image.clone(), first.label.clone()};
      first = Batch();
      (void)train_step(resident).item<float>();  // warm-up: allocations, kernel selection
      src.WaitUntilProducerIdle(60);
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < ceiling_steps; ++i) {
        const auto t = Clock::now();
        (void)train_step(resident).item<float>();
        ceiling_times.push_back(Since(t));
      }
      ceiling_step_s = Since(t0) / static_cast<double>(ceiling_steps);
      std::fprintf(stderr, "mnist_train: ceiling (batch resident): %.4f s/step over %lld steps\n",
                   ceiling_step_s, static_cast<long long>(ceiling_steps));
    }
  }

  // Training on fresh batches. The next batch is fetched before the loss is
  // read: on a GPU the steps' kernels are still running then, so fetching
  // (and the pinned copy) overlaps them.
  std::vector<float> losses;
  std::vector<double> step_times;  // start of one step to the start of the next
  const ConsumerStats s0 = src.consumer().stats();
  const auto t0 = Clock::now();
  ConsumerStats s_prev = s0;
  auto t_prev = t0;
  int64_t step = 0;
  Status end;
  std::optional<Batch> current;
  {
    auto b = src.Next(device);
    if (b.ok()) current = std::move(b).value(); else end = b.status();
  }
  auto step_start = Clock::now();
  while (current && (steps == 0 || step < steps)) {
    at::Tensor loss = train_step(*current);
    current.reset();  // gives the transport memory back before waiting
    ++step;
    std::optional<Batch> next;
    if (steps == 0 || step < steps) {
      auto b = src.Next(device);
      if (b.ok()) next = std::move(b).value(); else end = b.status();
    }
    losses.push_back(loss.item<float>());
    step_times.push_back(Since(step_start));
    step_start = Clock::now();
    if (log_every > 0 && step % log_every == 0) {
      const ConsumerStats s = src.consumer().stats();
      const double dt = Since(t_prev);
      std::fprintf(stderr,
                   "mnist_train: step %lld: %.4f s/step, %.0f samples/s, data wait %.1f%%, loss %.4f\n",
                   static_cast<long long>(step), dt / static_cast<double>(log_every),
                   static_cast<double>(batch * log_every) / dt,
                   100.0 * (s.wait_s - s_prev.wait_s) / dt, losses.back());
      s_prev = s;
      t_prev = Clock::now();
    }
    current = std::move(next);
  }
  const double train_s = Since(t0);
  const ConsumerStats s1 = src.consumer().stats();
  src.Stop();
  if (!end.ok() && !end.IsEndOfStream()) Die(end.WithContext("after " + std::to_string(step) + " steps"));
  if (step == 0) Die(Status::FailedPrecondition("the stream ended before the first training step"));
  if (steps > 0 && step < steps) {
    std::fprintf(stderr, "mnist_train: the stream ended after %lld of %lld steps\n",
                 static_cast<long long>(step), static_cast<long long>(steps));
  }

  const double step_s = train_s / static_cast<double>(step);
  const double wait_frac = (s1.wait_s - s0.wait_s) / train_s;
  const double ratio = ceiling_step_s / step_s;
  // Medians resist bursts of load from other processes on a shared machine.
  const double step_median_s = Median(step_times);
  const double ceiling_median_s = Median(ceiling_times);
  const size_t k = std::min<size_t>(5, losses.size());
  const double loss_first = std::accumulate(losses.begin(), losses.begin() + k, 0.0) / k;
  const double loss_last = std::accumulate(losses.end() - k, losses.end(), 0.0) / k;
  if (json) {
    // Figures not measured (NaN: no ceiling steps) print as null.
    tools::JsonObject j;
    j["source"] = source;
    j["transport"] = src.transport();
    j["endpoint"] = src.consumer().endpoint();
    j["pipeline"] = blur_known ? tools::JsonObject(pipeline_spec) : tools::JsonObject();
    j["blur"] = blur_known ? tools::JsonObject(blur) : tools::JsonObject();
    j["device"] = device.device.str();
    j["torch_threads"] = torch_threads;
    j["producer_threads"] = producer_threads > 0 ? tools::JsonObject(producer_threads) : tools::JsonObject();
    j["batch"] = batch;
    j["steps"] = step;
    j["step_s"] = step_s;
    j["ceiling_step_s"] = ceiling_step_s;
    j["ratio"] = tools::Round(ratio, 4);
    j["step_median_s"] = step_median_s;
    j["ceiling_median_s"] = ceiling_median_s;
    j["ratio_median"] = tools::Round(ceiling_median_s / step_median_s, 4);
    j["data_wait_frac"] = tools::Round(wait_frac, 4);
    j["samples_per_s"] = tools::Round(static_cast<double>(batch) / step_s, 1);
    j["loss_first"] = tools::Round(loss_first, 4);
    j["loss_last"] = tools::Round(loss_last, 4);
    std::printf("%s\n", tools::JsonLine(j).c_str());
  } else {
    std::printf("mnist_train: %s over %s, batch %lld, %lld steps: %.4f s/step, %.0f samples/s, "
                "data wait %.1f%%\n",
                source.c_str(), src.transport().c_str(), static_cast<long long>(batch),
                static_cast<long long>(step), step_s, static_cast<double>(batch) / step_s,
                100.0 * wait_frac);
    if (ceiling_steps > 0) {
      std::printf("  ceiling %.4f s/step   ratio = ceiling_step_s / step_s = %.3f (of medians: %.3f)\n",
                  ceiling_step_s, ratio, ceiling_median_s / step_median_s);
    }
    std::printf("  loss %.4f (first %zu steps) -> %.4f (last %zu)\n", loss_first, k, loss_last, k);
  }
  return 0;
}
