// datafeed-producer: the preprocessing service. Reads a dataset, runs the
// pipeline on a thread pool and serves finished batches on an endpoint.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <ctime>
#include <memory>
#include <optional>
#include <thread>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/metrics.h"
#include "datafeed/producer/producer.h"
#include "datafeed/tools/cli.h"
#include "datafeed/transport/transport.h"
#include "metrics_server.h"

using namespace datafeed;

namespace {

// --shard-from-hostname: the trailing "-N" of the host name, as a
// Kubernetes StatefulSet names its pods (datafeed-producer-3 -> 3).
Result<int64_t> ShardFromHostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return Status::FromErrno(errno, "--shard-from-hostname: gethostname");
  const std::string name(buf);
  const size_t dash = name.rfind('-');
  const std::string digits = dash == std::string::npos ? std::string() : name.substr(dash + 1);
  if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("--shard-from-hostname: host name '" + name +
                                   "' does not end in '-N' (a StatefulSet pod's ordinal, e.g. "
                                   "datafeed-producer-3); give --shard instead");
  }
  return static_cast<int64_t>(std::stoll(digits));
}

// --max-samples-per-s: a token bucket in front of the transport. Publish
// waits until the batch's samples are in the bucket, which fills at `rate`
// samples/s and holds at most one full batch, so over any window of t
// seconds at most rate * t + one batch of samples are published. Waiting
// here is backpressure like a full ring: the pipeline stops loaning.
// Stop() ends a wait at once (SIGTERM).
class PacedWriter final : public BatchWriter {
 public:
  PacedWriter(std::unique_ptr<BatchWriter> inner, double rate, double burst)
      : inner_(std::move(inner)), rate_(rate), burst_(burst), tokens_(burst), last_(Clock::now()) {}

  Result<WritableBatch> Loan(std::shared_ptr<const BatchLayout> layout, Deadline deadline) override {
    return inner_->Loan(std::move(layout), deadline);
  }
  Status Publish(WritableBatch batch) override {
    const BatchLayout& layout = batch.layout();
    const double n = layout.num_tensors() > 0 && !layout.spec(0).shape.empty()
                         ? static_cast<double>(layout.spec(0).shape[0])
                         : 1.0;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      const Clock::time_point now = Clock::now();
      tokens_ = std::min(burst_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
      last_ = now;
      if (tokens_ >= std::min(n, burst_) || stopped_) break;
      const double wait_s = (std::min(n, burst_) - tokens_) / rate_;
      wake_.wait_for(lock, std::chrono::duration<double>(wait_s));
    }
    tokens_ -= n;  // a batch larger than the bucket leaves it in debt
    lock.unlock();
    return inner_->Publish(std::move(batch));
  }
  Status Close() override {
    Stop();
    return inner_->Close();
  }
  std::string endpoint() const override { return inner_->endpoint(); }
  Result<RunStart> run_start() const override { return inner_->run_start(); }
  std::optional<BatchKey> TakeRemake() override { return inner_->TakeRemake(); }
  void Unmade(const BatchKey& key) override { inner_->Unmade(key); }
  DeliveryStats delivery_stats() const override { return inner_->delivery_stats(); }
  Work WaitForWork(Deadline deadline) override { return inner_->WaitForWork(deadline); }

  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    wake_.notify_all();
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::unique_ptr<BatchWriter> inner_;
  const double rate_, burst_;
  std::mutex mu_;
  std::condition_variable wake_;
  double tokens_;
  Clock::time_point last_;
  bool stopped_ = false;
};

int Die(const Status& st) {
  std::fprintf(stderr, "datafeed-producer: %s\n", st.ToString().c_str());
  return 1;
}

// A scan progress line, at most every 2 s while a large tree or shard set
// is scanned (and once at the end when it took that long).
ScanProgressFn ScanReporter(const std::string& what, bool quiet) {
  if (quiet) return nullptr;
  auto last = std::make_shared<double>(0.0);
  return [what, last](const ScanProgress& p) {
    if (!p.done && p.seconds - *last < 2.0) return;
    if (p.done && p.seconds < 2.0) return;
    *last = p.seconds;
    std::fprintf(stderr, "datafeed-producer: scanning %s: %zu samples, %zu folders/shards, %.0f s%s\n",
                 what.c_str(), p.samples, p.folders, p.seconds, p.done ? ", done" : "");
  };
}

}  // namespace

int main(int argc, char** argv) {
  // Signals go to the monitor thread only. Blocked before anything is
  // created, so a SIGTERM at any point still ends in a clean shutdown
  // (no stale /dev/shm segment).
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  tools::EndpointFlags endpoint_flags;
  std::string mnist_dir, split = "train", folder, image_list, image_root, webdataset;
  std::string pipeline_spec, preset, bad_samples = "fill", decode = "exact", wds_label_ext = "cls";
  bool finish_on_consumer = false;
  int64_t batch_size = 8192, threads = 0, seed = 0, epochs = 1, shard = 0, num_shards = 1;
  int64_t height = 0, width = 0, channels = 3, slots = 4, slot_bytes = 0, linger_ms = 10'000;
  int64_t max_in_flight = 2;
  double progress_s = 2.0, max_bad_fraction = 0.001, max_samples_per_s = 0;
  std::string tls_cert, tls_key, tls_client_ca, shm_name, auth_token_file;
  bool insecure = false, grpc_introspection = false;
  int64_t max_streams = 64, max_streams_per_peer = 16;
  int64_t keepalive_ms = 10'000;
  bool shuffle = false, drop_last = false, unordered = false, strict = false, quiet = false;
  bool with_index = false, shard_from_hostname = false;
  std::string state_dir;
  double consumer_timeout_s = 30.0;
  int64_t finish_grace_ms = 2000;
  int64_t metrics_port = -1;
  std::string metrics_address = "127.0.0.1";

  CLI::App app{"Preprocesses a dataset on a C++ thread pool and serves finished batches\n"
               "(float32 'image' [B,C,H,W] and int64 'label' [B]) on an endpoint.\n"
               "Stops cleanly on SIGINT/SIGTERM.",
               "datafeed-producer"};
  tools::Configure(app, {
      "datafeed-producer --mnist data/mnist --endpoint shm://feed0 --batch-size 8192 --epochs 0 --shuffle",
      "datafeed-producer --image-folder /data/train --preset imagenet-train --endpoint auto://0.0.0.0:5000 "
      "--epochs 90 --shuffle --state-dir /var/lib/datafeed/run1 --tls-cert server.pem --tls-key server.key "
      "--auth-token-file token",
      "datafeed-producer --config producer.toml --threads 8",
      "DATAFEED_ENDPOINT=grpc://0.0.0.0:5000 datafeed-producer --mnist data/mnist --insecure",
  });
  tools::AddConfigFile(app);
  endpoint_flags.Add(app,
                     "where to serve: shm://NAME (this host only), or grpc://HOST:PORT / auto://HOST:PORT "
                     "(gRPC for remote consumers plus shared memory for local ones; HOST is the address to "
                     "listen on, e.g. 0.0.0.0)");

  const char* kDataset = "Dataset (give exactly one of --mnist, --image-folder, --image-list, --webdataset)";
  app.add_option("--mnist", mnist_dir, "MNIST IDX directory (see datafeed-make-mnist)")->group(kDataset);
  app.add_option("--split", split, "MNIST file prefix: train or t10k")->group(kDataset);
  app.add_option("--image-folder", folder, "image folder root: ROOT/<class>/**/<image> (torchvision's ImageFolder)")
      ->group(kDataset);
  app.add_option("--image-list", image_list, "list file of 'path,label' lines")->group(kDataset);
  app.add_option("--image-root", image_root,
                 "--image-list: folder the paths are relative to (default: the list's folder)")
      ->group(kDataset);
  app.add_option("--webdataset", webdataset, "WebDataset tar shards, e.g. 'shards/train-{000000..000146}.tar'")
      ->group(kDataset);
  app.add_option("--wds-label-ext", wds_label_ext, "--webdataset: extension of the label member")->group(kDataset);
  app.add_option("--channels", channels, "image datasets: 3 (RGB, torchvision's default), 1 (gray) or 4 (RGBA)")
      ->check(tools::OneOf({"1", "3", "4"}))
      ->group(kDataset);
  app.add_option("--height", height, "image datasets: require every image to be this tall (0: any size)")
      ->check(tools::WholeNumber(0))
      ->group(kDataset);
  app.add_option("--width", width, "image datasets: require every image to be this wide (0: any size)")
      ->check(tools::WholeNumber(0))
      ->group(kDataset);

  const char* kPipeline = "Pipeline";
  app.add_option("--pipeline", pipeline_spec,
                 "transform spec; a '|' splits it: the consumer runs the part after it (default for --mnist: "
                 "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11))")
      ->group(kPipeline);
  app.add_option("--preset", preset, "a named pipeline instead of --pipeline: imagenet-train or imagenet-eval")
      ->group(kPipeline);
  app.add_flag("--finish-on-consumer", finish_on_consumer,
               "ship uint8 images and let consumers run the trailing to_tensor[,normalize] (puts a '|' before "
               "to_tensor)")
      ->group(kPipeline);
  app.add_option("--decode", decode,
                 "exact (pixels as PIL decodes them) or reduced (JPEG DCT scaled down to what the pipeline's "
                 "first resize/random_resized_crop keeps: faster, not bit-exact)")
      ->check(tools::OneOf({"exact", "reduced"}))
      ->group(kPipeline);
  app.add_option("--bad-samples", bad_samples,
                 "a sample that cannot be read, decoded or transformed: fill (a spare sample of the dataset, "
                 "picked from the batch's identity, takes its slot), zero (a zero image labelled -100) or fail "
                 "(stop). Always counted and logged")
      ->group(kPipeline);
  app.add_option("--max-bad-fraction", max_bad_fraction,
                 "stop when more than this fraction of the samples so far were bad (1: never)")
      ->check(tools::Number(0, 1))
      ->group(kPipeline);
  app.add_flag("--strict", strict, "the same as --bad-samples fail")->group(kPipeline);
  uint64_t max_image_pixels = kDefaultMaxImagePixels;
  app.add_option("--max-image-pixels", max_image_pixels,
                 "an image whose header claims more pixels (width x height) is a bad sample, refused before "
                 "its memory is allocated (a decompression bomb); the default is PIL's limit")
      ->check(tools::WholeNumber(1))
      ->group(kPipeline);

  const char* kBatches = "Batches";
  app.add_option("--batch-size", batch_size, "samples per batch")->check(tools::WholeNumber(1))->group(kBatches);
  app.add_option("--threads", threads, "worker threads (0: one per core)")
      ->check(tools::WholeNumber(0, 4096))
      ->group(kBatches);
  app.add_option("--max-in-flight", max_in_flight, "batches filled at once")
      ->check(tools::WholeNumber(1))
      ->group(kBatches);
  app.add_option("--seed", seed, "seed for shuffling and random transforms")
      ->check(tools::WholeNumber())
      ->group(kBatches);
  app.add_option("--epochs", epochs, "epochs to serve (0: endless)")->check(tools::WholeNumber(0))->group(kBatches);
  app.add_flag("--shuffle", shuffle, "shuffle every epoch")->group(kBatches);
  app.add_flag("--drop-last", drop_last, "drop each epoch's short last batch")->group(kBatches);
  app.add_option("--shard", shard, "this producer's shard index (--webdataset: of the tar shards)")
      ->check(tools::WholeNumber(0))
      ->group(kBatches);
  app.add_flag("--shard-from-hostname", shard_from_hostname,
               "take --shard from the host name's trailing -N (a Kubernetes StatefulSet's pod ordinal: "
               "datafeed-producer-3 is shard 3); needs --num-shards")
      ->excludes("--shard")
      ->group(kBatches);
  app.add_option("--max-samples-per-s", max_samples_per_s,
                 "publish at most this many samples per second (a token bucket holding one batch; the wait "
                 "counts as publish time in the progress line; 0: no limit)")
      ->check(tools::Number(0))
      ->group(kBatches);
  app.add_option("--num-shards", num_shards, "number of shards (producers)")
      ->check(tools::WholeNumber(1))
      ->group(kBatches);
  app.add_flag("--unordered", unordered, "publish batches as they finish, not in order")->group(kBatches);
  app.add_flag("--with-index", with_index, "add an int64 [B] tensor 'index' with each sample's dataset index")
      ->group(kBatches);

  const char* kDelivery = "Delivery";
  app.add_option("--state-dir", state_dir,
                 "journal the run's positions here: killed and restarted with the same flags, the producer goes "
                 "on where it was (without it, a restart starts the run again and consumers are told so)")
      ->group(kDelivery);
  app.add_option("--consumer-timeout", consumer_timeout_s,
                 "seconds a consumer may hold batches without asking for the next one before they go to other "
                 "consumers; also how long a consumer that lost its connection keeps them while it reconnects")
      ->check(tools::PositiveNumber())
      ->group(kDelivery);
  app.add_option("--finish-grace-ms", finish_grace_ms,
                 "after every batch was acknowledged, wait this long for a trainer restoring a checkpoint before "
                 "ending the stream")
      ->check(tools::WholeNumber(0))
      ->group(kDelivery);
  app.add_option("--linger-ms", linger_ms, "at the end, wait this long for consumers to take what was published")
      ->check(tools::WholeNumber(0))
      ->group(kDelivery);

  const char* kShm = "Shared memory";
  app.add_option("--slots", slots, "shared-memory slots (batches buffered)")
      ->check(tools::WholeNumber(1))
      ->group(kShm);
  app.add_option("--slot-bytes", slot_bytes, "bytes per slot (0: exactly one batch)")
      ->check(tools::WholeNumber(0))
      ->group(kShm);
  app.add_option("--shm-name", shm_name, "gRPC/auto: name of the shared-memory ring behind the endpoint")
      ->group(kShm);

  const char* kGrpc = "gRPC (server)";
  app.add_option("--tls-cert", tls_cert, "serve TLS with this certificate chain (PEM)")->group(kGrpc);
  app.add_option("--tls-key", tls_key, "private key of --tls-cert (PEM)")->group(kGrpc);
  app.add_option("--tls-client-ca", tls_client_ca, "require client certificates signed by this CA (mTLS)")
      ->group(kGrpc);
  app.add_option("--auth-token-file", auth_token_file,
                 "require this bearer token (the file's first line) on every call; use with TLS over a network")
      ->group(kGrpc);
  app.add_flag("--insecure", insecure,
               "serve plaintext on an address other than loopback (anyone who reaches the port reads the stream)")
      ->group(kGrpc);
  app.add_flag("--grpc-introspection", grpc_introspection,
               "also serve gRPC server reflection and channelz (grpcurl, grpc_cli); behind --auth-token-file "
               "like every call, and only with a token or --tls-client-ca beyond loopback")
      ->group(kGrpc);
  app.add_option("--max-streams", max_streams, "the most batch streams at once")
      ->check(tools::WholeNumber(1, 100'000))
      ->group(kGrpc);
  app.add_option("--max-streams-per-peer", max_streams_per_peer, "the most batch streams from one address")
      ->check(tools::WholeNumber(1, 100'000))
      ->group(kGrpc);
  // gRPC takes the interval (and twice it, the timeout) as an int.
  app.add_option("--keepalive-ms", keepalive_ms, "keepalive ping interval")
      ->check(tools::WholeNumber(1, 1'000'000'000))
      ->group(kGrpc);

  const char* kOutput = "Output";
  app.add_option("--progress-s", progress_s, "seconds between progress lines (0: none)")
      ->check(tools::Number(0))
      ->group(kOutput);
  app.add_flag("--quiet", quiet, "no progress lines")->group(kOutput);
  app.add_option("--metrics-port", metrics_port,
                 "serve Prometheus metrics on http://ADDRESS:PORT/metrics (0: a free port, printed; default: none)")
      ->check(tools::WholeNumber(0, 65535))
      ->group(kOutput);
  app.add_option("--metrics-address", metrics_address,
                 "address the metrics server listens on (default 127.0.0.1; 0.0.0.0 for a scraper on another host)")
      ->group(kOutput);
  if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;

  auto endpoint = endpoint_flags.Resolve();
  if (!endpoint.ok()) return Die(endpoint.status());
  // What producers killed before us left in /dev/shm (RAM).
  if (auto stale = RemoveStaleShmSegments(); stale.ok() && !stale->empty()) {
    std::string names;
    for (const std::string& n : *stale) names += (names.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "datafeed-producer: removed %zu stale shared-memory segment%s of dead producers: %s\n",
                 stale->size(), stale->size() == 1 ? "" : "s", names.c_str());
  }

  const int given = !mnist_dir.empty() + !folder.empty() + !image_list.empty() + !webdataset.empty();
  if (given != 1) {
    return Die(Status::InvalidArgument(
        "give exactly one dataset: --mnist DIR, --image-folder ROOT, --image-list FILE or "
        "--webdataset 'PATTERN'"));
  }
  if (shard_from_hostname) {
    if (app.count("--num-shards") == 0) {
      return Die(Status::InvalidArgument("--shard-from-hostname needs --num-shards (the StatefulSet's replicas)"));
    }
    auto from_name = ShardFromHostname();
    if (!from_name.ok()) return Die(from_name.status());
    if (*from_name >= num_shards) {
      return Die(Status::InvalidArgument("--shard-from-hostname: the host name's ordinal " +
                                         std::to_string(*from_name) + " is not below --num-shards " +
                                         std::to_string(num_shards) +
                                         "; give the StatefulSet's replicas as --num-shards"));
    }
    shard = *from_name;
  }
  if (num_shards < 1 || shard < 0 || shard >= num_shards) {
    return Die(Status::InvalidArgument("--shard must be in [0, --num-shards)"));
  }
  if (!mnist_dir.empty() && (app.count("--height") > 0 || app.count("--width") > 0 || app.count("--channels") > 0)) {
    return Die(Status::InvalidArgument("--height, --width and --channels are for image datasets; "
                                       "MNIST images are 28x28x1"));
  }
  ImageDatasetOptions image_options;
  image_options.channels = static_cast<int>(channels);
  image_options.height = static_cast<int>(height);
  image_options.width = static_cast<int>(width);
  std::shared_ptr<const Dataset> dataset;
  bool dataset_shards = false;  // the dataset split the shards itself
  if (!mnist_dir.empty()) {
    auto ds = MnistDataset::OpenDir(mnist_dir, split);
    if (!ds.ok()) return Die(ds.status());
    dataset = std::move(ds).value();
  } else if (!folder.empty()) {
    image_options.progress = ScanReporter(folder, quiet);
    auto ds = ImageFolderDataset::Open(folder, image_options);
    if (!ds.ok()) return Die(ds.status());
    if (!quiet) {
      std::fprintf(stderr, "datafeed-producer: %s: %zu images in %zu classes\n", folder.c_str(),
                   (*ds)->size(), (*ds)->classes().size());
    }
    dataset = std::move(ds).value();
  } else if (!image_list.empty()) {
    auto ds = ImageListDataset::Open(image_list, image_options, image_root);
    if (!ds.ok()) return Die(ds.status());
    dataset = std::move(ds).value();
  } else {
    WebDatasetOptions wo;
    wo.image = image_options;
    wo.image.progress = ScanReporter(webdataset, quiet);
    wo.shard_index = static_cast<size_t>(shard);
    wo.num_shards = static_cast<size_t>(num_shards);
    wo.label_extension = wds_label_ext;
    auto ds = WebDataset::Open(webdataset, wo);
    if (!ds.ok()) return Die(ds.status());
    if (!quiet) {
      std::fprintf(stderr, "datafeed-producer: %s: %zu samples in %zu shards (shard %lld of %lld)\n",
                   webdataset.c_str(), (*ds)->size(), (*ds)->shards().size(),
                   static_cast<long long>(shard), static_cast<long long>(num_shards));
    }
    dataset = std::move(ds).value();
    dataset_shards = true;
  }
  if (!preset.empty()) {
    if (!pipeline_spec.empty()) {
      return Die(Status::InvalidArgument("give --preset or --pipeline, not both"));
    }
    auto spec = Pipeline::Preset(preset);
    if (!spec.ok()) return Die(spec.status().WithContext("--preset"));
    pipeline_spec = *spec;
  } else if (pipeline_spec.empty()) {
    if (mnist_dir.empty()) {
      return Die(Status::InvalidArgument(
          "give a pipeline for the images: --preset imagenet-train (or imagenet-eval), or "
          "--pipeline SPEC ending in a fixed size, e.g. 'resize(256),center_crop(224),to_tensor'"));
    }
    pipeline_spec = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)";
  }
  if (finish_on_consumer) {
    auto moved = Pipeline::MoveFinishToConsumer(pipeline_spec);
    if (!moved.ok()) return Die(moved.status().WithContext("--finish-on-consumer"));
    pipeline_spec = *moved;
  }
  auto pipeline = Pipeline::Make(pipeline_spec);
  if (!pipeline.ok()) return Die(pipeline.status().WithContext("--pipeline"));
  auto bad_policy = ParseBadSamples(strict ? "fail" : bad_samples);
  if (!bad_policy.ok()) return Die(bad_policy.status().WithContext("--bad-samples"));
  if (strict && app.count("--bad-samples") > 0 && *bad_policy != BadSamples::kFail) {
    return Die(Status::InvalidArgument("--strict is --bad-samples fail; give one of them"));
  }
  if (decode != "exact" && decode != "reduced") {
    return Die(Status::InvalidArgument("--decode is exact or reduced, got '" + decode + "'"));
  }

  ProducerOptions po;
  po.sampler.batch_size = static_cast<size_t>(batch_size);
  po.sampler.shuffle = shuffle;
  po.sampler.seed = static_cast<uint64_t>(seed);
  po.sampler.drop_last = drop_last;
  // A WebDataset split its tar shards between producers already; others
  // deal samples round-robin.
  po.sampler.shard_index = dataset_shards ? 0 : static_cast<size_t>(shard);
  po.sampler.num_shards = dataset_shards ? 1 : static_cast<size_t>(num_shards);
  po.sampler.num_epochs = epochs == 0 ? SamplerOptions::kEndless : static_cast<uint64_t>(epochs);
  po.threads = static_cast<int>(threads);
  po.max_in_flight = static_cast<int>(max_in_flight);
  po.ordered = !unordered;
  po.bad_samples = *bad_policy;
  po.max_bad_fraction = max_bad_fraction;
  SetMaxImagePixels(max_image_pixels);
  po.decode = decode == "reduced" ? DecodeMode::kReduced : DecodeMode::kExact;
  po.producer_id = static_cast<uint64_t>(getpid());
  po.with_index = with_index;

  // The writer's slots are sized for a full batch.
  auto layout = MakeBatchLayout(*dataset, *pipeline, static_cast<size_t>(batch_size), with_index);
  if (!layout.ok()) return Die(layout.status());
  // A second SIGINT/SIGTERM stops the wait for consumers at the end.
  static std::atomic<bool> stop_lingering{false};
  WriterOptions wo;
  wo.linger_ms = linger_ms;
  wo.stop_lingering = &stop_lingering;
  wo.shm.slot_count = static_cast<size_t>(slots);
  wo.shm.slot_bytes = slot_bytes > 0 ? static_cast<size_t>(slot_bytes) : (*layout)->frame_bytes();
  wo.shm_name = shm_name;
  wo.grpc.tls_cert = tls_cert;
  wo.grpc.tls_key = tls_key;
  wo.grpc.tls_ca = tls_client_ca;
  wo.grpc.keepalive_ms = keepalive_ms;
  wo.grpc.auth_token_file = auth_token_file;
  wo.grpc.insecure = insecure;
  wo.grpc.introspection = grpc_introspection;
  wo.grpc.max_streams = static_cast<int>(max_streams);
  wo.grpc.max_streams_per_peer = static_cast<int>(max_streams_per_peer);
  wo.state_dir = state_dir;
  wo.consumer_timeout_ms = static_cast<int64_t>(consumer_timeout_s * 1000);
  wo.finish_grace_ms = finish_grace_ms;
  {
    auto run = Producer::DescribeRun(*dataset, *pipeline, po);
    if (!run.ok()) return Die(run.status());
    wo.run = *run;
  }
  std::unique_ptr<BatchWriter> writer;
  auto w = OpenWriter(*endpoint, wo);
  if (!w.ok()) return Die(w.status());
  writer = std::move(w).value();
  PacedWriter* paced = nullptr;
  if (max_samples_per_s > 0) {
    auto p = std::make_unique<PacedWriter>(std::move(writer), max_samples_per_s, static_cast<double>(batch_size));
    paced = p.get();
    writer = std::move(p);
  }
  auto producer = Producer::Make(dataset, *pipeline, po, writer.get());
  if (!producer.ok()) return Die(producer.status());

  std::fprintf(stderr,
               "datafeed-producer: serving %s: %zu samples, pipeline %s, batch %lld, %d threads\n",
               writer->endpoint().c_str(), dataset->size(), pipeline->Describe().c_str(),
               static_cast<long long>(batch_size),
               threads > 0 ? static_cast<int>(threads) : static_cast<int>(std::thread::hardware_concurrency()));
  std::fprintf(stderr, "datafeed-producer: run %016llx: %s\n",
               static_cast<unsigned long long>(wo.run->fingerprint), (*producer)->run_start().summary.c_str());
  // Metrics: read-only snapshots of the producer's and the writer's counters.
  std::unique_ptr<MetricsServer> metrics;
  if (metrics_port >= 0) {
    Producer* p = producer->get();
    BatchWriter* wr = writer.get();
    auto m = MetricsServer::Start(metrics_address, static_cast<int>(metrics_port), [p, wr] {
      return PrometheusText(p->stats(), wr->delivery_stats(), wr->gauges());
    });
    if (!m.ok()) return Die(m.status());
    metrics = std::move(m).value();
    std::fprintf(stderr, "datafeed-producer: metrics on %s\n", metrics->url().c_str());
  }
  std::atomic<bool> done{false};          // Run() returned
  std::atomic<bool> monitor_done{false};  // the writer is gone
  std::atomic<int> got_signal{0};
  // Signals until the very end: the first stops the run, a second (while
  // the writer waits for consumers to take what was published) stops that
  // wait too. Exit 0 either way: a clean stop.
  std::thread monitor([&] {
    auto next_progress = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(progress_s));
    while (!monitor_done.load()) {
      struct timespec ts {0, 50'000'000};
      int sig = sigtimedwait(&sigs, nullptr, &ts);
      if (sig > 0 && got_signal.exchange(sig) == 0) {
        std::fprintf(stderr, "datafeed-producer: signal %d: stopping; waiting up to %lld ms for connected "
                     "consumers to take what was published (another signal: stop at once)\n", sig,
                     static_cast<long long>(linger_ms));
        (*producer)->Stop();
        if (paced != nullptr) paced->Stop();
      } else if (sig > 0 && !stop_lingering.exchange(true)) {
        std::fprintf(stderr, "datafeed-producer: signal %d again: not waiting for consumers\n", sig);
      }
      if (done.load()) continue;
      if (!quiet && progress_s > 0 && std::chrono::steady_clock::now() >= next_progress) {
        const ProducerStats ps = (*producer)->stats();
        const std::string progress = ps.Progress();
        // The counters first (scripts read "N batches"), then where the run is.
        // And what one thread does, for sizing --threads against what
        // consumers ask for.
        std::fprintf(stderr, "datafeed-producer: %s%s%s; one thread makes ~%.0f samples/s of this pipeline\n",
                     ps.ToString().c_str(), progress.empty() ? "" : "; ", progress.c_str(),
                     ps.samples_per_thread_s());
        next_progress += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(progress_s));
      }
    }
  });
  Status st = (*producer)->Run();
  done.store(true);
  Status closed = writer->Close();
  metrics.reset();  // reads the producer and the writer: goes first
  std::fprintf(stderr, "datafeed-producer: %s\n", (*producer)->stats().ToString().c_str());
  // Lingers until connected consumers took what was published (none
  // connected: at once; a second signal: at once).
  auto end_writer = [&] {
    writer.reset();
    monitor_done.store(true);
    monitor.join();
  };
  if (got_signal.load() != 0 && st.code() == StatusCode::kCancelled) {
    end_writer();
    std::fprintf(stderr, "datafeed-producer: stopped by signal %d\n", got_signal.load());
    return 0;
  }
  end_writer();
  if (!st.ok()) return Die(st);
  if (!closed.ok()) return Die(closed);
  return 0;
}
