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
  double samples_per_s() const { return elapsed_s > 0 ? samples / elapsed_s : 0; }
  double batches_per_s() const { return elapsed_s > 0 ? batches / elapsed_s : 0; }
  std::string ToString() const;  // one progress line
};

class Producer {
 public:
  // `writer` must outlive the Producer. Fails with InvalidArgument if the
  // pipeline cannot take the dataset's samples or the sampler options are bad.
  static Result<std::unique_ptr<Producer>> Make(std::shared_ptr<const Dataset> dataset,
                                                Pipeline pipeline, ProducerOptions options,
                                                BatchWriter* writer);
  ~Producer();

  // Produces until the sampler is exhausted (OK), Stop() is called
  // (Cancelled), or an error occurs (the first error). Call once. Batches not
  // yet published when it returns are given back to the transport unsent.
  Status Run();
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
