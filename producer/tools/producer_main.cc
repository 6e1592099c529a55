// datafeed-producer: the preprocessing service. Reads a dataset, runs the
// pipeline on a thread pool and serves finished batches on an endpoint.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <thread>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/transport/flags.h"
#include "datafeed/transport/transport.h"

using namespace datafeed;

namespace {

int Die(const Status& st) {
  std::fprintf(stderr, "datafeed-producer: %s\n", st.ToString().c_str());
  return 1;
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

  EndpointFlags endpoint_flags;
  std::string mnist_dir, split = "train", folder;
  std::string pipeline_spec = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)";
  bool finish_on_consumer = false;
  int64_t batch_size = 8192, threads = 0, seed = 0, epochs = 1, shard = 0, num_shards = 1;
  int64_t height = 0, width = 0, channels = 3, slots = 4, slot_bytes = 0, linger_ms = 10'000;
  int64_t max_in_flight = 2;
  double progress_s = 2.0;
  std::string tls_cert, tls_key, tls_client_ca, shm_name;
  int64_t keepalive_ms = 10'000;
  bool shuffle = false, drop_last = false, unordered = false, strict = false, quiet = false;
  bool with_index = false;
  std::string state_dir;
  double consumer_timeout_s = 30.0;
  int64_t finish_grace_ms = 2000;

  Flags flags("datafeed-producer",
              "Preprocesses a dataset on a C++ thread pool and serves finished batches\n"
              "(float32 'image' [B,C,H,W] and int64 'label' [B]) on an endpoint.\n"
              "Stops cleanly on SIGINT/SIGTERM.");
  endpoint_flags.Add(flags,
                     "where to serve: shm://NAME (this host only), or grpc://HOST:PORT / auto://HOST:PORT\n"
                     "                             (gRPC for remote consumers plus shared memory for local ones;\n"
                     "                             HOST is the address to listen on, e.g. 0.0.0.0)\n"
                     "                            ");
  flags.String("mnist", &mnist_dir, "MNIST IDX directory (see datafeed-make-mnist)");
  flags.String("split", &split, "MNIST file prefix: train or t10k");
  flags.String("image-folder", &folder, "image-folder dataset root (one subfolder per class)");
  flags.Int("height", &height, "image-folder: image height");
  flags.Int("width", &width, "image-folder: image width");
  flags.Int("channels", &channels, "image-folder: 1 (gray) or 3 (RGB)");
  flags.String("pipeline", &pipeline_spec, "transform spec; a '|' splits it: the consumer runs the part after it");
  flags.Bool("finish-on-consumer", &finish_on_consumer,
             "ship uint8 images and let consumers run the trailing to_tensor[,normalize] (puts a '|' before to_tensor)");
  flags.Int("batch-size", &batch_size, "samples per batch");
  flags.Int("threads", &threads, "worker threads (0: one per core)");
  flags.Int("max-in-flight", &max_in_flight, "batches filled at once");
  flags.Int("seed", &seed, "seed for shuffling and random transforms");
  flags.Int("epochs", &epochs, "epochs to serve (0: endless)");
  flags.Bool("shuffle", &shuffle, "shuffle every epoch");
  flags.Bool("drop-last", &drop_last, "drop each epoch's short last batch");
  flags.Int("shard", &shard, "this producer's shard index");
  flags.Int("num-shards", &num_shards, "number of shards");
  flags.Bool("unordered", &unordered, "publish batches as they finish, not in order");
  flags.Bool("strict", &strict, "an undecodable image is fatal (default: skip and count it)");
  flags.Int("slots", &slots, "shared-memory slots (batches buffered)");
  flags.Int("slot-bytes", &slot_bytes, "bytes per slot (0: exactly one batch)");
  flags.Int("linger-ms", &linger_ms, "at the end, wait this long for consumers to take what was published");
  flags.Double("progress-s", &progress_s, "seconds between progress lines (0: none)");
  flags.String("tls-cert", &tls_cert, "gRPC: serve TLS with this certificate chain (PEM)");
  flags.String("tls-key", &tls_key, "gRPC: private key of --tls-cert (PEM)");
  flags.String("tls-client-ca", &tls_client_ca, "gRPC: require client certificates signed by this CA (mTLS)");
  flags.String("shm-name", &shm_name, "gRPC/auto: name of the shared-memory ring behind the endpoint");
  flags.Int("keepalive-ms", &keepalive_ms, "gRPC: keepalive ping interval");
  flags.Bool("quiet", &quiet, "no progress lines");
  flags.String("state-dir", &state_dir,
               "journal the run's positions here: killed and restarted with the same flags, the producer goes on "
               "where it was (without it, a restart starts the run again and consumers are told so)");
  flags.Double("consumer-timeout", &consumer_timeout_s,
               "seconds a consumer may hold batches without asking for the next one before they go to other "
               "consumers; also how long a consumer that lost its connection keeps them while it reconnects");
  flags.Bool("with-index", &with_index, "add an int64 [B] tensor 'index' with each sample's dataset index");
  flags.Int("finish-grace-ms", &finish_grace_ms,
            "after every batch was acknowledged, wait this long for a trainer restoring a checkpoint before "
            "ending the stream");
  ParseFlagsOrExit(flags, argc, argv);

  auto endpoint = endpoint_flags.Resolve();
  if (!endpoint.ok()) return Die(endpoint.status());

  std::shared_ptr<const Dataset> dataset;
  if (!mnist_dir.empty() == !folder.empty()) {
    return Die(Status::InvalidArgument("give exactly one dataset: --mnist DIR or --image-folder ROOT"));
  }
  if (!mnist_dir.empty()) {
    auto ds = MnistDataset::OpenDir(mnist_dir, split);
    if (!ds.ok()) return Die(ds.status());
    dataset = std::move(ds).value();
  } else {
    auto ds = ImageFolderDataset::Open(folder, static_cast<int>(height), static_cast<int>(width),
                                       static_cast<int>(channels));
    if (!ds.ok()) return Die(ds.status());
    dataset = std::move(ds).value();
  }
  if (finish_on_consumer) {
    auto moved = Pipeline::MoveFinishToConsumer(pipeline_spec);
    if (!moved.ok()) return Die(moved.status().WithContext("--finish-on-consumer"));
    pipeline_spec = *moved;
  }
  auto pipeline = Pipeline::Make(pipeline_spec);
  if (!pipeline.ok()) return Die(pipeline.status().WithContext("--pipeline"));

  ProducerOptions po;
  po.sampler.batch_size = static_cast<size_t>(batch_size);
  po.sampler.shuffle = shuffle;
  po.sampler.seed = static_cast<uint64_t>(seed);
  po.sampler.drop_last = drop_last;
  po.sampler.shard_index = static_cast<size_t>(shard);
  po.sampler.num_shards = static_cast<size_t>(num_shards);
  po.sampler.num_epochs = epochs == 0 ? SamplerOptions::kEndless : static_cast<uint64_t>(epochs);
  po.threads = static_cast<int>(threads);
  po.max_in_flight = static_cast<int>(max_in_flight);
  po.ordered = !unordered;
  po.fail_on_bad_sample = strict;
  po.producer_id = static_cast<uint64_t>(getpid());
  po.with_index = with_index;
  if (!(consumer_timeout_s > 0)) {
    return Die(Status::InvalidArgument("--consumer-timeout must be a positive number of seconds"));
  }

  // The writer needs the batch size in bytes; ask a throwaway producer for
  // the layout first (no threads start until Run).
  WriterOptions wo;
  wo.linger_ms = linger_ms;
  wo.shm.slot_count = static_cast<size_t>(slots);
  wo.shm_name = shm_name;
  wo.grpc.tls_cert = tls_cert;
  wo.grpc.tls_key = tls_key;
  wo.grpc.tls_ca = tls_client_ca;
  wo.grpc.keepalive_ms = keepalive_ms;
  wo.state_dir = state_dir;
  wo.consumer_timeout_ms = static_cast<int64_t>(consumer_timeout_s * 1000);
  wo.finish_grace_ms = finish_grace_ms;
  {
    auto run = Producer::DescribeRun(*dataset, *pipeline, po);
    if (!run.ok()) return Die(run.status());
    wo.run = *run;
  }
  std::unique_ptr<BatchWriter> writer;
  {
    class NullWriter : public BatchWriter {
      Result<WritableBatch> Loan(std::shared_ptr<const BatchLayout>, Deadline) override {
        return Status::Internal("unused");
      }
      Status Publish(WritableBatch) override { return Status::Internal("unused"); }
      Status Close() override { return Status::OK(); }
      std::string endpoint() const override { return ""; }
    } null_writer;
    auto probe = Producer::Make(dataset, *pipeline, po, &null_writer);
    if (!probe.ok()) return Die(probe.status());
    const size_t frame = (*probe)->BatchLayoutFor(static_cast<size_t>(batch_size))->frame_bytes();
    wo.shm.slot_bytes = slot_bytes > 0 ? static_cast<size_t>(slot_bytes) : frame;
  }
  auto w = OpenWriter(*endpoint, wo);
  if (!w.ok()) return Die(w.status());
  writer = std::move(w).value();
  auto producer = Producer::Make(dataset, *pipeline, po, writer.get());
  if (!producer.ok()) return Die(producer.status());


  std::fprintf(stderr,
               "datafeed-producer: serving %s: %zu samples, pipeline %s, batch %lld, %d threads\n",
               writer->endpoint().c_str(), dataset->size(), pipeline->Describe().c_str(),
               static_cast<long long>(batch_size),
               threads > 0 ? static_cast<int>(threads) : static_cast<int>(std::thread::hardware_concurrency()));
  std::fprintf(stderr, "datafeed-producer: run %016llx: %s\n",
               static_cast<unsigned long long>(wo.run->fingerprint), (*producer)->run_start().summary.c_str());
  std::atomic<bool> done{false};
  std::atomic<int> got_signal{0};
  std::thread monitor([&] {
    auto next_progress = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(progress_s));
    while (!done.load()) {
      struct timespec ts {0, 200'000'000};
      int sig = sigtimedwait(&sigs, nullptr, &ts);
      if (sig > 0) {
        got_signal.store(sig);
        (*producer)->Stop();
      }
      if (!quiet && progress_s > 0 && std::chrono::steady_clock::now() >= next_progress) {
        std::fprintf(stderr, "datafeed-producer: %s\n", (*producer)->stats().ToString().c_str());
        next_progress += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(progress_s));
      }
    }
  });
  Status st = (*producer)->Run();
  done.store(true);
  monitor.join();
  Status closed = writer->Close();
  std::fprintf(stderr, "datafeed-producer: %s\n", (*producer)->stats().ToString().c_str());
  if (got_signal.load() != 0 && st.code() == StatusCode::kCancelled) {
    std::fprintf(stderr, "datafeed-producer: stopped by signal %d\n", got_signal.load());
    writer.reset();
    return 0;
  }
  if (!st.ok()) return Die(st);
  if (!closed.ok()) return Die(closed);
  writer.reset();  // lingers until consumers took what was published
  return 0;
}
