// datafeed-bench pipeline: the producer's preprocessing rate against the bare
// OpenCV loop for the same operations, measured in the same run.
//
// Data: a synthetic MNIST (WriteSyntheticMnist, fixed seed) in a temporary
// directory, memory-mapped by MnistDataset; the directory is removed once the
// files are mapped.
//
// datafeed: the real Producer (N threads, the reference pipeline
// to_tensor,normalize(0.1307,0.3081),gaussian_blur(11) or --pipeline, batch
// 8192, samples in order like the bare loop (--shuffle: shuffled), endless
// epochs) writing into an inproc:// transport, with a consumer thread that
// takes every batch and drops it. samples/s is what the consumer receives: the
// samples of the batches that arrive after the first one (warm-up) over the
// time between that first arrival and the last, so it includes everything the
// producer does per batch (sampling, loans, dataset reads, the pipeline,
// publishing) but not start-up. The inproc transport allocates every frame
// afresh, so the page faults of first writing it count against datafeed;
// --transport shm uses a shared-memory ring in this process instead, whose
// slots are faulted in once and reused.
//
// Bare OpenCV (the limit): the same images and ops with no datafeed code. N
// std::threads, each taking a contiguous share of the samples and of the slots
// of one reused 8192 x 784 float output buffer laid out like a batch; per
// sample cv::Mat wraps the mapped uint8 image, convertTo(CV_32F, 1/(255 std),
// -mean/std) into a per-thread scratch image, and sepFilter2D with the 1-D
// Gaussian kernel (computed here) and BORDER_REFLECT_101 writes the sample's
// slot; the label is copied into a label array. samples/s is all threads'
// samples over the wall time of the run.
//
// Each measurement is repeated (--repeats 3 runs of --seconds 3, datafeed and
// OpenCV runs interleaved so that noise from other tenants hits both) and the
// median is reported; ratio = median datafeed / median bare OpenCV.
//
// --torchvision: torchvision_pipeline.py (next to this file) times the
// torchvision pipeline per sample (PIL image as torchvision's MNIST makes it,
// ToTensor, Normalize, F.gaussian_blur(img, 11)), one process,
// torch.set_num_threads(1), on the first --tv-count images of the same file;
// x_torchvision compares datafeed's rate per thread with that per-core rate.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "bench_util.h"
#include "pipeline_bench.h"
#include "datafeed/tools/cli.h"
#include "datafeed/tools/json_line.h"
#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/transport.h"

#ifndef DATAFEED_BENCH_SOURCE_DIR
#define DATAFEED_BENCH_SOURCE_DIR "bench"
#endif

namespace datafeed::bench {
namespace {

// The reference pipeline and the constants the bare loop uses for it.
constexpr const char* kReferencePipeline = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)";
constexpr double kMean = 0.1307, kStd = 0.3081;
constexpr int kBlurSize = 11;

double Seconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }

// ---- bare OpenCV ----------------------------------------------------------

// torchvision's default sigma for a kernel of size k, and its 1-D kernel:
// exp(-0.5 (x / sigma)^2) over x = -(k-1)/2 .. (k-1)/2, normalised to sum 1.
std::vector<float> GaussianKernel(int k) {
  const double sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8;
  std::vector<float> kernel(static_cast<size_t>(k));
  float sum = 0;
  for (int i = 0; i < k; ++i) {
    const float x = static_cast<float>(i - (k - 1) / 2) / static_cast<float>(sigma);
    kernel[static_cast<size_t>(i)] = std::exp(-0.5f * x * x);
    sum += kernel[static_cast<size_t>(i)];
  }
  for (float& v : kernel) v /= sum;
  return kernel;
}

struct KernelLoop {
  const uint8_t* images = nullptr;  // count x rows x cols, contiguous
  const uint8_t* labels = nullptr;  // count
  size_t count = 0;
  int rows = 0, cols = 0;
  int64_t batch = 0;
  std::vector<float> kernel;
  std::vector<float> out_images;  // batch x rows x cols, reused by every run
  std::vector<int64_t> out_labels;
};

// All threads' samples over the wall time of a run of about `seconds`, and
// over the CPU time it took.
Rate RunKernelLoop(KernelLoop& k, int threads, double seconds) {
  const size_t plane = static_cast<size_t>(k.rows) * static_cast<size_t>(k.cols);
  const double alpha = 1.0 / (255.0 * kStd), beta = -kMean / kStd;
  const auto n = static_cast<size_t>(threads);
  const auto slots = static_cast<size_t>(k.batch);
  std::vector<uint64_t> done(n, 0);
  std::vector<int64_t> ended(n, 0);
  const int64_t start = NowNs(), cpu_start = ProcessCpuNs();
  const int64_t deadline = start + static_cast<int64_t>(seconds * 1e9);
  std::vector<std::thread> pool;
  for (size_t t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      const size_t first = t * k.count / n, last = (t + 1) * k.count / n;
      const size_t slot0 = t * slots / n, slot_n = (t + 1) * slots / n - slot0;
      const cv::Mat kx(1, static_cast<int>(k.kernel.size()), CV_32F, k.kernel.data());
      cv::Mat scratch(k.rows, k.cols, CV_32F);
      uint64_t samples = 0;
      size_t i = first, slot = 0;
      while (NowNs() < deadline) {
        for (int step = 0; step < 64; ++step) {
          const cv::Mat src(k.rows, k.cols, CV_8U, const_cast<uint8_t*>(k.images + i * plane));
          src.convertTo(scratch, CV_32F, alpha, beta);
          cv::Mat dst(k.rows, k.cols, CV_32F, k.out_images.data() + (slot0 + slot) * plane);
          cv::sepFilter2D(scratch, dst, CV_32F, kx, kx, cv::Point(-1, -1), 0.0,
                          cv::BORDER_REFLECT_101);
          k.out_labels[slot0 + slot] = k.labels[i];
          if (++i == last) i = first;
          if (++slot == slot_n) slot = 0;
        }
        samples += 64;
      }
      done[t] = samples;
      ended[t] = NowNs();
    });
  }
  for (auto& th : pool) th.join();
  const int64_t cpu = ProcessCpuNs() - cpu_start;
  double total = 0;
  for (uint64_t d : done) total += static_cast<double>(d);
  return {total / Seconds(*std::max_element(ended.begin(), ended.end()) - start),
          total / Seconds(cpu)};
}

int Fail(const std::string& what, const Status& st) {
  std::fprintf(stderr, "datafeed-bench pipeline: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

}  // namespace

std::string Repeated::Text(int precision, const char* sep) const {
  std::string s;
  for (double v : runs) s += (s.empty() ? "" : sep) + Num(v, precision);
  return s;
}

std::vector<double> Repeated::Rounded(int decimals) const {
  std::vector<double> out;
  for (double v : runs) out.push_back(tools::Round(v, decimals));
  return out;
}

// ---- torchvision ----------------------------------------------------------

TorchvisionRun RunTorchvision(const std::string& python, const std::string& script,
                              const std::string& script_args) {
  TorchvisionRun r;
  if (access(python.c_str(), X_OK) != 0) {
    r.note = python + " is missing; no torchvision figure";
    return r;
  }
  if (access(script.c_str(), R_OK) != 0) {
    r.note = script + " is missing (--tv-script); no torchvision figure";
    return r;
  }
  const std::string cmd = "'" + python + "' '" + script + "' " + script_args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    r.note = "could not run " + python;
    return r;
  }
  std::string output;
  char buf[4096];
  while (size_t got = std::fread(buf, 1, sizeof buf, p)) output.append(buf, got);
  const int rc = pclose(p);
  std::string last;  // the JSON line, if the script got that far
  for (size_t b = 0; b < output.size();) {
    size_t e = output.find('\n', b);
    if (e == std::string::npos) e = output.size();
    if (output.compare(b, 1, "{") == 0) last = output.substr(b, e - b);
    b = e + 1;
  }
  const nlohmann::json parsed = nlohmann::json::parse(last, nullptr, /*allow_exceptions=*/false);
  const bool has_rate = parsed.is_object() && parsed.contains("samples_per_s") &&
                        parsed["samples_per_s"].is_number();
  if (rc != 0 || !has_rate) {
    while (!output.empty() && output.back() == '\n') output.pop_back();
    const size_t tail = output.rfind('\n');
    r.note = "torchvision run failed (torch/torchvision missing?): " +
             (tail == std::string::npos ? output : output.substr(tail + 1)) +
             "; no torchvision figure";
    return r;
  }
  r.samples_per_s = parsed["samples_per_s"].get<double>();
  r.json = parsed;
  return r;
}

Result<ProducerStats> DriveProducer(const std::shared_ptr<const Dataset>& dataset,
                                    const Pipeline& pipeline, const std::string& scheme, int threads,
                                    int64_t batch, bool shuffle, int run_id, DecodeMode decode,
                                    const std::function<Result<bool>(BatchReader&)>& consume) {
  // gRPC: loopback on a port the kernel picks; the others: a name unique to
  // this process and run.
  DATAFEED_ASSIGN_OR_RETURN(
      Endpoint ep, ParseEndpoint(scheme == "grpc" ? std::string("grpc://127.0.0.1:0")
                                                  : scheme + "://pipeline-bench-" + std::to_string(getpid()) +
                                                        "-" + std::to_string(run_id)));
  // Room for two batches being filled (max_in_flight) plus two waiting: the
  // transport is never full while the consumer keeps up.
  WriterOptions wo;
  wo.inproc_capacity = 4;
  wo.shm.slot_count = 4;
  DATAFEED_ASSIGN_OR_RETURN(std::shared_ptr<const BatchLayout> layout,
                            MakeBatchLayout(*dataset, pipeline, static_cast<size_t>(batch)));
  wo.shm.slot_bytes = layout->frame_bytes();
  DATAFEED_ASSIGN_OR_RETURN(std::unique_ptr<BatchWriter> writer, OpenWriter(ep, wo));
  DATAFEED_ASSIGN_OR_RETURN(Endpoint read_ep, ParseEndpoint(writer->endpoint()));
  DATAFEED_ASSIGN_OR_RETURN(std::unique_ptr<BatchReader> reader, OpenReader(read_ep, ReaderOptions{}));

  ProducerOptions po;
  po.sampler.batch_size = static_cast<size_t>(batch);
  po.sampler.shuffle = shuffle;
  po.sampler.seed = 1;
  po.sampler.drop_last = true;  // every batch full size
  po.sampler.num_epochs = SamplerOptions::kEndless;
  po.threads = threads;
  po.decode = decode;
  DATAFEED_ASSIGN_OR_RETURN(std::unique_ptr<Producer> producer,
                            Producer::Make(dataset, pipeline, po, writer.get()));

  Status consumer_error;
  std::thread consumer([&] {
    for (;;) {
      Result<bool> more = consume(*reader);
      if (!more.ok()) consumer_error = more.status();
      if (!more.ok() || !*more) break;
    }
    producer->Stop();
    // Drain what was published after Stop(), so that Close() need not wait.
    for (;;) {
      Result<BatchView> b = reader->Next(Deadline::AfterMillis(60'000));
      if (b.ok()) continue;
      if (!b.status().IsEndOfStream() && consumer_error.ok()) consumer_error = b.status();
      break;
    }
  });
  Status st = producer->Run();
  Status closed = writer->Close();
  consumer.join();
  if (!consumer_error.ok()) return consumer_error.WithContext("consumer");
  if (!st.ok() && st.code() != StatusCode::kCancelled) return st.WithContext("producer");
  DATAFEED_RETURN_NOT_OK(closed);
  return producer->stats();
}

Result<ProducerRun> RunProducer(const std::shared_ptr<const Dataset>& dataset,
                                const Pipeline& pipeline, const std::string& scheme, int threads,
                                int64_t batch, bool shuffle, double seconds, int run_id,
                                DecodeMode decode) {
  ProducerRun out;
  const int64_t want_ns = static_cast<int64_t>(seconds * 1e9);
  int64_t t0 = 0, t1 = 0, cpu0 = 0, cpu1 = 0, seen = 0;
  auto consume = [&](BatchReader& reader) -> Result<bool> {
    DATAFEED_ASSIGN_OR_RETURN(BatchView b, reader.Next(Deadline::AfterMillis(60'000)));
    const int64_t now = NowNs(), cpu = ProcessCpuNs();
    const TensorView* labels = b.Find("label");
    const uint64_t n = labels ? labels->nbytes / sizeof(int64_t) : 0;
    if (++seen == 1) {
      t0 = now;  // the first batch is warm-up: time starts at its arrival
      cpu0 = cpu;
      return true;
    }
    out.samples += n;
    t1 = now;
    cpu1 = cpu;
    return t1 - t0 < want_ns;
  };
  DATAFEED_ASSIGN_OR_RETURN(out.stats, DriveProducer(dataset, pipeline, scheme, threads, batch, shuffle,
                                                     run_id, decode, consume));
  out.seconds = Seconds(t1 - t0);
  out.cpu_seconds = Seconds(cpu1 - cpu0);
  if (out.seconds <= 0) return Status::Internal("the producer delivered fewer than two batches");
  out.rate.per_s = static_cast<double>(out.samples) / out.seconds;
  out.rate.per_cpu_s = static_cast<double>(out.samples) / out.cpu_seconds;
  return out;
}

int RunPipeline(const PipelineOptions& o) {
  if (o.Given("--preset") || o.Given("--image-folder")) return RunImagePipeline(o);
  for (const char* flag : {"--images", "--decode", "--bare-interp"}) {
    if (o.Given(flag)) {
      std::fprintf(stderr, "datafeed-bench pipeline: %s is for decoded images; add --preset or --image-folder\n",
                   flag);
      return 2;
    }
  }
  const bool json = o.json;
  const int64_t threads = o.threads;
  const int64_t batch = o.Given("--batch") ? o.batch : 8192;
  const std::string spec = o.Given("--pipeline") ? o.pipeline : kReferencePipeline;
  const int64_t dataset_size = o.samples;
  const double seconds = o.seconds;
  const int64_t repeats = o.repeats;
  const std::string transport = o.transport;
  const bool shuffle = o.shuffle;
  const bool scaling = o.scaling;
  const bool torchvision = o.torchvision;
  const int64_t tv_count = o.Given("--tv-count") ? o.tv_count : 2000;
  const bool tv_random_sigma = o.tv_random_sigma;
  const std::string python = o.python;
  const std::string tv_script = o.tv_script;
  if (batch < threads || dataset_size < batch) {
    std::fprintf(stderr, "datafeed-bench pipeline: need --batch >= --threads and --samples >= --batch\n");
    return 2;
  }

  auto pipeline = Pipeline::Make(spec);
  if (!pipeline.ok()) return Fail("--pipeline", pipeline.status());
  const bool reference = spec == kReferencePipeline;

  // The data set, mapped; its directory is gone once the files are mapped
  // (or once torchvision has read them).
  char dir_template[] = "/tmp/datafeed-pipeline-bench-XXXXXX";
  if (!mkdtemp(dir_template)) return Fail("temporary directory", Status::FromErrno(errno, "mkdtemp"));
  const std::string dir = dir_template;
  auto remove_dir = [&] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  };
  if (Status st = WriteSyntheticMnist(dir, "train", static_cast<size_t>(dataset_size), 7); !st.ok()) {
    remove_dir();
    return Fail("writing the synthetic MNIST", st);
  }
  auto opened = MnistDataset::OpenDir(dir, "train");
  if (!opened.ok()) {
    remove_dir();
    return Fail("opening the synthetic MNIST", opened.status());
  }
  std::shared_ptr<const MnistDataset> mnist = std::move(opened).value();
  TorchvisionRun tv;
  if (torchvision) {
    tv = RunTorchvision(python, tv_script,
                        "'" + mnist->images_path() + "' --count " + std::to_string(tv_count) +
                            " --repeats " + std::to_string(repeats) +
                            (tv_random_sigma ? " --random-sigma" : ""));
  }
  remove_dir();

  KernelLoop k;
  k.images = mnist->image(0);
  k.count = mnist->size();
  k.rows = mnist->shape().height;
  k.cols = mnist->shape().width;
  k.batch = batch;
  std::vector<uint8_t> labels(k.count);
  for (size_t i = 0; i < k.count; ++i) labels[i] = mnist->label(i);
  k.labels = labels.data();
  k.kernel = GaussianKernel(kBlurSize);
  k.out_images.assign(static_cast<size_t>(batch) * static_cast<size_t>(k.rows * k.cols), 0.0f);
  k.out_labels.assign(static_cast<size_t>(batch), 0);

  const int n = static_cast<int>(threads);
  RunKernelLoop(k, n, std::min(0.3, seconds));  // warm-up: caches, OpenCV's lazy init
  Repeated df, cv, df1, cv1;
  ProducerStats stats;  // of the last datafeed run at --threads
  double loan_blocked_s = 0;
  int run_id = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    auto run = RunProducer(mnist, *pipeline, transport, n, batch, shuffle, seconds, run_id++,
                           DecodeMode::kExact);
    if (!run.ok()) return Fail("datafeed run", run.status());
    df.Add(run->rate);
    stats = run->stats;
    loan_blocked_s = std::max(loan_blocked_s, run->stats.loan_blocked_s);
    cv.Add(RunKernelLoop(k, n, seconds));
    if (scaling) {
      auto one = RunProducer(mnist, *pipeline, transport, 1, batch, shuffle, seconds, run_id++,
                             DecodeMode::kExact);
      if (!one.ok()) return Fail("datafeed run, 1 thread", one.status());
      df1.Add(one->rate);
      cv1.Add(RunKernelLoop(k, 1, seconds));
    }
  }

  const double rate = df.median(), kernel_rate = cv.median();
  const double ratio = rate / kernel_rate;
  // Each datafeed run over the OpenCV run right after it: shows how much of
  // the spread is the machine.
  Repeated pairs;
  for (size_t i = 0; i < df.runs.size(); ++i) pairs.runs.push_back(df.runs[i] / cv.runs[i]);
  // The same per CPU second: what each thread gets done while it runs, which
  // other tenants of a shared machine disturb much less than wall time.
  const double cpu_ratio = df.cpu_median() / cv.cpu_median();
  // Shares of the producer threads' time (threads x elapsed) in the last run.
  const double thread_s = stats.elapsed_s * n;
  auto share = [&](double s) { return thread_s > 0 ? 100.0 * s / thread_s : 0.0; };
  const std::string stages = pipeline->Describe();

  tools::JsonObject j;
  j["bench"] = "pipeline";
  j["pipeline"] = spec;
  j["stages"] = stages;
  j["baseline_matches_pipeline"] = reference;
  j["batch"] = batch;
  j["threads"] = n;
  j["dataset_samples"] = dataset_size;
  j["transport"] = transport;
  j["shuffle"] = shuffle;
  j["seconds_per_run"] = tools::Round(seconds, 2);
  j["repeats"] = repeats;
  j["samples_per_s"] = std::llround(rate);
  j["samples_per_s_per_thread"] = std::llround(rate / n);
  j["kernel_samples_per_s"] = std::llround(kernel_rate);
  j["ratio"] = tools::Round(ratio, 3);
  j["ratio_runs"] = pairs.Rounded(3);
  j["samples_per_cpu_s"] = std::llround(df.cpu_median());
  j["kernel_samples_per_cpu_s"] = std::llround(cv.cpu_median());
  j["cpu_ratio"] = tools::Round(cpu_ratio, 3);
  j["loan_blocked_s"] = tools::Round(loan_blocked_s, 4);
  j["read_pct"] = tools::Round(share(stats.read_s), 1);
  j["transform_pct"] = tools::Round(share(stats.transform_s), 1);
  j["publish_pct"] = tools::Round(share(stats.publish_s), 1);
  if (scaling) {
    j["samples_per_s_1thread"] = std::llround(df1.median());
    j["scaling"] = tools::Round(rate / df1.median(), 3);
    j["kernel_samples_per_s_1thread"] = std::llround(cv1.median());
    j["kernel_scaling"] = tools::Round(kernel_rate / cv1.median(), 3);
  }
  const std::string tv_blur =
      tv.json.contains("blur") && tv.json["blur"].is_string() ? tv.json["blur"].get<std::string>() : "?";
  if (tv.samples_per_s > 0) {
    j["torchvision_samples_per_s"] = std::llround(tv.samples_per_s);
    j["torchvision_blur"] = tv_blur;
    j["x_torchvision"] = tools::Round(rate / n / tv.samples_per_s, 1);
  }
  if (json) {
    if (!tv.note.empty()) std::fprintf(stderr, "datafeed-bench pipeline: %s\n", tv.note.c_str());
    std::printf("%s\n", tools::JsonLine(j).c_str());
    return 0;
  }

  std::printf("pipeline %s, batch %lld, %d thread%s, %lld synthetic MNIST samples%s\n",
              stages.c_str(), static_cast<long long>(batch), n, n == 1 ? "" : "s",
              static_cast<long long>(dataset_size), shuffle ? " shuffled" : " in order");
  std::printf("  median of %lld runs of %.1f s each; datafeed and OpenCV runs interleaved\n",
              static_cast<long long>(repeats), seconds);
  std::printf("  datafeed     %9.0f samples/s (%.0f per thread; Producer into %s://, consumer\n"
              "                                 drops batches; runs %s)\n",
              rate, rate / n, transport.c_str(), df.Text().c_str());
  std::printf("  bare OpenCV  %9.0f samples/s (convertTo + sepFilter2D into a batch buffer, %d\n"
              "                                 std::thread%s, same images, this run; runs %s)\n",
              kernel_rate, n, n == 1 ? "" : "s", cv.Text().c_str());
  if (!reference) {
    std::printf("               note: the bare loop runs the reference ops (%s), not --pipeline\n",
                kReferencePipeline);
  }
  std::printf("  ratio        %9.3f (run by run: %s)\n", ratio, pairs.Text(3).c_str());
  std::printf("  per CPU s    %9.0f vs %.0f samples per CPU second (process CPU time, shows\n"
              "                                 what was lost to other tenants), ratio %.3f\n",
              df.cpu_median(), cv.cpu_median(), cpu_ratio);
  std::printf("  producer     thread time: read %.1f%%, transform %.1f%%, publish %.1f%%; blocked on\n"
              "               a full transport %.4f s (most in one run)\n",
              share(stats.read_s), share(stats.transform_s), share(stats.publish_s), loan_blocked_s);
  if (scaling) {
    std::printf("  1 thread     %9.0f samples/s (runs %s); scaling %.2fx\n", df1.median(),
                df1.Text().c_str(), rate / df1.median());
    std::printf("               bare OpenCV 1 thread %.0f samples/s; its scaling %.2fx (what this\n"
                "               machine allows)\n",
                cv1.median(), kernel_rate / cv1.median());
  }
  if (torchvision) {
    if (tv.samples_per_s > 0) {
      std::printf("  torchvision  %9.0f samples/s (one process, torch.set_num_threads(1), %lld\n"
                  "                                 images: PIL -> ToTensor -> Normalize -> %s)\n",
                  tv.samples_per_s, static_cast<long long>(tv_count),
                  tv_blur.c_str());
      std::printf("               datafeed per thread is %.1fx torchvision per core\n",
                  rate / n / tv.samples_per_s);
    } else {
      std::printf("  torchvision  %s\n", tv.note.c_str());
    }
  }
  return 0;
}

Subcommand AddPipeline(CLI::App& bench) {
  auto o = std::make_shared<PipelineOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "pipeline",
      "Producer samples/s for the reference MNIST pipeline into a transport vs the bare OpenCV loop "
      "(convertTo + sepFilter2D) on the same threads and images; with --preset or --image-folder, the "
      "producer on a generated ImageNet-like JPEG folder (or DIR) vs the bare TurboJPEG + cv::resize loop");
  cmd->footer(
      "Examples:\n"
      "  datafeed-bench pipeline --threads 2 --torchvision\n"
      "  datafeed-bench pipeline --preset imagenet-train --decode reduced --scaling --json");
  o->cmd = cmd;
  o->tv_script = std::string(DATAFEED_BENCH_SOURCE_DIR) + "/torchvision_pipeline.py";
  cmd->add_flag("--json", o->json, "print the results as one JSON line");
  cmd->add_option("--threads", o->threads, "producer threads (and the bare loop's)")
      ->check(tools::WholeNumber(1, 1024));
  cmd->add_option("--batch", o->batch, "samples per batch")
      ->check(tools::WholeNumber(1))
      ->default_str("8192; 128 with --preset/--image-folder");
  cmd->add_option("--seconds", o->seconds, "seconds per run")->check(tools::PositiveNumber());
  cmd->add_option("--repeats", o->repeats, "runs of each side, interleaved; medians are reported")
      ->check(tools::WholeNumber(1));
  cmd->add_flag("--scaling", o->scaling, "also run 1 thread and report the scaling");
  const char* kTorchvision = "torchvision (the same pipeline in Python, one process)";
  cmd->add_flag("--torchvision", o->torchvision, "also time torchvision_pipeline.py per core")
      ->group(kTorchvision);
  cmd->add_option("--tv-count", o->tv_count, "images torchvision processes")
      ->check(tools::WholeNumber(1))
      ->default_str("2000; 300 with --preset/--image-folder")
      ->group(kTorchvision);
  cmd->add_option("--python", o->python, "the interpreter with torch and torchvision")->group(kTorchvision);
  cmd->add_option("--tv-script", o->tv_script, "torchvision_pipeline.py")->group(kTorchvision);
  const char* kImages = "Decoded images (--preset or --image-folder)";
  cmd->add_option("--preset", o->preset, "the pipeline: imagenet-train or imagenet-eval")
      ->check(tools::OneOf({"imagenet-train", "imagenet-eval"}))
      ->group(kImages);
  cmd->add_option("--image-folder", o->image_folder, "an image folder instead of the generated JPEGs")
      ->check(CLI::ExistingDirectory)
      ->group(kImages);
  cmd->add_option("--images", o->images, "generated JPEGs")->check(tools::WholeNumber(1))->group(kImages);
  cmd->add_option("--decode", o->decode, "exact or reduced (the producer's --decode)")
      ->check(tools::OneOf({"exact", "reduced"}))
      ->group(kImages);
  cmd->add_option("--bare-interp", o->bare_interp, "the bare loop's cv::resize: area or linear")
      ->check(tools::OneOf({"area", "linear"}))
      ->group(kImages);
  const char* kMnist = "MNIST (without --preset or --image-folder)";
  std::vector<CLI::Option*> mnist_only;
  mnist_only.push_back(cmd->add_option("--pipeline", o->pipeline, "transform spec")
                           ->default_str(kReferencePipeline)
                           ->group(kMnist));
  mnist_only.push_back(cmd->add_option("--samples", o->samples, "synthetic MNIST samples")
                           ->check(tools::WholeNumber(1))
                           ->group(kMnist));
  mnist_only.push_back(cmd->add_option("--transport", o->transport, "inproc or shm")
                           ->check(tools::OneOf({"inproc", "shm"}))
                           ->group(kMnist));
  mnist_only.push_back(cmd->add_flag("--shuffle", o->shuffle, "shuffle the samples")->group(kMnist));
  mnist_only.push_back(
      cmd->add_flag("--tv-random-sigma", o->tv_random_sigma, "torchvision draws the blur's sigma per sample")
          ->group(kMnist));
  for (CLI::Option* flag : mnist_only) {
    flag->excludes("--preset");
    flag->excludes("--image-folder");
  }
  return {cmd, [o] { return RunPipeline(*o); }};
}

}  // namespace datafeed::bench
