// Producer: a C++ thread pool that turns dataset samples into finished
// batches written straight into transport memory.
//
// Work is cut into chunks of samples. Workers take chunks in order from the
// batches currently open (at most max_in_flight of them), run the pipeline
// on each sample and write the output (float32, or uint8 for a pipeline
// split with '|') directly into the batch's loaned
// frame: there is no intermediate copy of a batch. The worker that finishes a
// batch's last chunk publishes it; with `ordered` (the default) batches are
// published strictly in sampler order, otherwise as soon as they are done.
//
//   auto producer = Producer::Make(dataset, pipeline, options, writer.get()).value();
//   Status st = producer->Run();   // until the sampler ends or Stop()
//   writer->Close();
#ifndef DATAFEED_PRODUCER_PRODUCER_H_
#define DATAFEED_PRODUCER_PRODUCER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/sampler.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/transport.h"

namespace datafeed {

// PyTorch's default ignore_index for nll_loss/cross_entropy: a sample whose
// image could not be decoded (and was skipped) gets this label and a zero
// image, so it contributes nothing to the loss.
inline constexpr int64_t kSkippedLabel = -100;

struct ProducerOptions {
  // Batch size, shuffle, seed, shards, epochs, drop_last; dataset_size is
  // filled in from the dataset.
  SamplerOptions sampler;
  // Worker threads; 0 means one per core.
  int threads = 0;
  // Batches being filled at once (each holds one transport slot).
  int max_in_flight = 2;
  // Samples a worker takes at a time.
  int chunk = 256;
  // Publish batches in sampler order (default) or as soon as each is done.
  bool ordered = true;
  // A sample the dataset cannot produce (an undecodable image) fails the run
  // when true; when false it is counted, zeroed and labelled kSkippedLabel.
  bool fail_on_bad_sample = false;
  // Written into every batch header.
  uint64_t producer_id = 0;
  // Adds an int64 [B] tensor "index": each sample's dataset index.
  bool with_index = false;
};

// Cumulative counters; all times are summed over worker threads.
struct ProducerStats {
  uint64_t batches = 0;
  uint64_t samples = 0;
  uint64_t skipped_samples = 0;
  double elapsed_s = 0;          // wall time since Run() started
  double read_s = 0;             // dataset reads / decodes
  double transform_s = 0;        // pipeline
  double loan_blocked_s = 0;     // waiting for a free transport slot (consumers slow)
  double publish_s = 0;          // waiting to publish in order, and publishing
  uint64_t remade = 0;           // batches made again (a lease was lost)
  double samples_per_s() const { return elapsed_s > 0 ? samples / elapsed_s : 0; }
  double batches_per_s() const { return elapsed_s > 0 ? batches / elapsed_s : 0; }
  std::string ToString() const;  // one progress line
};

class Producer {
 public:
  // The run a producer with these inputs makes: its fingerprint (the
  // dataset's, the pipeline as Describe() gives it, the seed, the batch size
  // and every sampler knob that decides which samples go into which batch,
  // shard included) and its shape. Give it to the writer (WriterOptions::run)
  // to get the delivery contract (transport/.../delivery.h).
  static Result<RunInfo> DescribeRun(const Dataset& dataset, const Pipeline& pipeline,
                                     const ProducerOptions& options);

  // `writer` must outlive the Producer. Fails with InvalidArgument if the
  // pipeline cannot take the dataset's samples or the sampler options are bad.
  //
  // A writer opened with a run (WriterOptions::run, from DescribeRun) must
  // have this producer's run (InvalidArgument otherwise); the producer then
  // goes on where the writer's journal says, makes again every batch whose
  // lease was lost, and Run() returns only once every batch was
  // acknowledged. With a writer without a run, batches carry their identity
  // but nothing is made again.
  static Result<std::unique_ptr<Producer>> Make(std::shared_ptr<const Dataset> dataset,
                                                Pipeline pipeline, ProducerOptions options,
                                                BatchWriter* writer);
  ~Producer();

  // Produces until the sampler is exhausted (OK), Stop() is called
  // (Cancelled), or an error occurs (the first error). Call once. Batches not
  // yet published when it returns are given back to the transport unsent.
  // With a writer that has a run, "exhausted" means every batch of the run
  // was made and acknowledged by a consumer (batches whose lease was lost
  // are made again meanwhile).
  Status Run();
  // Where the run started (the writer's journal), for the log; empty
  // summary for a writer without a run.
  const RunStart& run_start() const;
  // Makes Run() return soon. Thread-safe; callable before or during Run().
  void Stop();
  // Thread-safe snapshot.
  ProducerStats stats() const;

  // Shape of one output sample (float32 CHW; uint8 CHW for a split pipeline,
  // whose batches name the consumer's finish in their "image" tensor) and the
  // layout of a full batch.
  const ImageShape& sample_shape() const;
  std::shared_ptr<const BatchLayout> BatchLayoutFor(size_t batch_size) const;

  struct Impl;

 private:
  explicit Producer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_PRODUCER_H_
