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
#include <functional>
#include <memory>
#include <string>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/sampler.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/transport.h"

namespace datafeed {

// PyTorch's default ignore_index for nll_loss/cross_entropy: with
// BadSamples::kZero a sample that could not be made gets this label and a
// zero image, so it contributes nothing to the loss.
inline constexpr int64_t kSkippedLabel = -100;

// What a producer does with a bad sample: one that cannot be read, decoded
// or transformed (a corrupt JPEG, a file deleted since the scan). Whatever
// the choice, every bad sample is counted (ProducerStats, per reason) and
// named in a log line (at most one a second, the rest counted), and the run
// stops with an error when bad samples exceed ProducerOptions::
// max_bad_fraction or when the first samples all fail (a configuration
// error: the wrong folder, a fixed size no image has).
enum class BadSamples {
  // Left out of the batch: its slot is filled with a spare sample of the
  // dataset, chosen from the seed, the epoch and the bad sample's index
  // alone (so a batch made again holds the same spare); with --with-index
  // the index tensor names the spare. If 8 spares in a row are bad too,
  // the slot is a zero image labelled kSkippedLabel, and that is logged.
  kFill,
  // A zero image labelled kSkippedLabel, in the sample's place.
  kZero,
  // The run stops with the sample's error.
  kFail,
};
// "fill", "zero", "fail".
const char* BadSamplesName(BadSamples b);
// Parses a BadSamplesName ("strict" is accepted for "fail").
Result<BadSamples> ParseBadSamples(const std::string& name);

// The first this many samples all failing stop a run at once: something
// that hits every sample (a folder of non-images, a fixed size that no image
// has, a pipeline the images are too small for) is a configuration error,
// not bad data.
inline constexpr uint64_t kAllBadProbe = 16;

// How a producer decodes encoded images (datasets of JPEG/PNG files).
enum class DecodeMode {
  // Every pixel at full size, exactly as PIL decodes it (DecodeSample).
  kExact,
  // Faster for pipelines that shrink images a lot: when the pipeline's first
  // step can say which region it reads and how small it makes it
  // (random_resized_crop, resize on uint8), a JPEG is decoded with its DCT
  // scaled down as far as that allows (1/8 .. 7/8) and only that region is
  // resized. Not bit-identical to PIL: docs/DESIGN.md gives the measured
  // difference. Other formats and pipelines decode exactly.
  kReduced,
};

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
  // Bad samples: see BadSamples.
  BadSamples bad_samples = BadSamples::kFill;
  // The run stops with an error once more than this fraction of the samples
  // so far (counted over at least one epoch's worth, so a few early ones do
  // not stop it) were bad. 1 never stops for the fraction.
  double max_bad_fraction = 0.001;
  // Where bad-sample lines go (one line per call, no newline); null: the
  // library's log at warning level (datafeed/transport/log.h; stderr by default).
  std::function<void(const std::string&)> log;
  // How encoded images are decoded.
  DecodeMode decode = DecodeMode::kExact;
  // Written into every batch header.
  uint64_t producer_id = 0;
  // Adds an int64 [B] tensor "index": each sample's dataset index.
  bool with_index = false;
};

// Cumulative counters; all times are summed over worker threads.
struct ProducerStats {
  uint64_t batches = 0;
  uint64_t samples = 0;          // in published batches, bad ones included
  // Bad samples (see BadSamples), in total and by what failed.
  uint64_t bad_samples = 0;
  uint64_t bad_read = 0;         // the dataset could not read it (missing file, I/O error)
  uint64_t bad_decode = 0;       // not a decodable image
  uint64_t bad_size = 0;         // not the size a fixed-size dataset requires
  uint64_t bad_transform = 0;    // the pipeline refused it (too small for a crop, ...)
  uint64_t bad_filled = 0;       // --bad-samples fill: slots a spare sample took
  uint64_t bad_unfilled = 0;     // --bad-samples fill: slots zeroed (every spare bad too)
  double elapsed_s = 0;          // wall time since Run() started
  double read_s = 0;             // dataset reads
  double decode_s = 0;           // image decoding
  double transform_s = 0;        // pipeline
  double loan_blocked_s = 0;     // waiting for a free transport slot (consumers slow)
  double publish_s = 0;          // waiting to publish in order, and publishing
  uint64_t remade = 0;           // batches made again (a lease was lost)
  // Where the run stands, for progress lines: epochs in the run (0:
  // endless), batches per epoch (this shard's), and the run's batches made
  // so far, counting those a journal says were made before a restart.
  uint64_t epochs = 0;
  uint64_t batches_per_epoch = 0;
  uint64_t run_batches_done = 0;
  double samples_per_s() const { return elapsed_s > 0 ? samples / elapsed_s : 0; }
  double batches_per_s() const { return elapsed_s > 0 ? batches / elapsed_s : 0; }
  // What one worker thread makes of this pipeline: samples per second of
  // thread time spent reading, decoding and transforming (0 before any).
  double samples_per_thread_s() const {
    const double busy = read_s + decode_s + transform_s;
    return busy > 0 ? samples / busy : 0;
  }
  // "epoch 2/10, 14.0%, ETA 1m05s" ("epoch 3 of an endless run" when
  // endless; "" before the run is known).
  std::string Progress() const;
  std::string ToString() const;  // one progress line
};

// The shape of one output sample of `pipeline` on `dataset` (float32 CHW, or
// uint8 CHW for a split pipeline). InvalidArgument when the pipeline cannot
// take the dataset's samples, or when the dataset's images differ in size
// and the pipeline's output would too (the message names the fix).
Result<ImageShape> SampleOutputShape(const Dataset& dataset, const Pipeline& pipeline);

// The layout of a batch of `batch_size` such samples: "image" (float32
// [B, C, H, W], or uint8 naming the consumer's finish for a split pipeline),
// "label" (int64 [B]) and, with `with_index` (ProducerOptions::with_index),
// "index" (int64 [B]). A pure function: what a Producer with these inputs
// writes, for sizing a transport before the producer exists.
Result<std::shared_ptr<const BatchLayout>> MakeBatchLayout(const Dataset& dataset,
                                                           const Pipeline& pipeline,
                                                           size_t batch_size, bool with_index = false);

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
  // pipeline cannot take the dataset's samples (SampleOutputShape), the
  // batch layout cannot be made, or the sampler options are bad.
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
  Result<std::shared_ptr<const BatchLayout>> BatchLayoutFor(size_t batch_size) const;

 private:
  struct Impl;
  explicit Producer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_PRODUCER_H_
