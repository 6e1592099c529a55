// Sampler: which dataset indices go into which batch, epoch after epoch.
//
// Each epoch orders the indices 0 .. dataset_size - 1 (as they are, or
// shuffled), deals them round-robin to num_shards shards (shard s takes
// positions s, s + n, s + 2n, ... of the epoch's order, so every index of an
// epoch lands in exactly one shard and shard sizes differ by at most one),
// then cuts the shard's share into batches of batch_size in order. With
// drop_last the shard's final short batch is dropped.
//
// The shuffle is a Fisher-Yates pass driven by std::mt19937_64 seeded from
// (seed, epoch), with the bounded draws done here rather than by
// std::uniform_int_distribution, so an order depends only on (seed, epoch,
// dataset_size) on every platform. Every shard of a job must use the same seed
// to cut the same permutation.
//
// Thread safety: a Sampler is a single-consumer iterator; calls must not
// overlap. Distinct Samplers are independent.
#ifndef DATAFEED_PRODUCER_SAMPLER_H_
#define DATAFEED_PRODUCER_SAMPLER_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {

struct SamplerOptions {
  static constexpr uint64_t kEndless = std::numeric_limits<uint64_t>::max();

  size_t dataset_size = 0;
  size_t batch_size = 1;
  bool shuffle = false;
  uint64_t seed = 0;
  bool drop_last = false;
  size_t shard_index = 0;  // this producer's shard, < num_shards
  size_t num_shards = 1;
  uint64_t first_epoch = 0;      // epoch number to start at (resume)
  uint64_t first_batch = 0;      // batch of first_epoch to start at (resume); < batches_per_epoch
  uint64_t num_epochs = 1;       // epochs to run from first_epoch; kEndless = forever
};

// One batch of dataset indices.
struct IndexBatch {
  uint64_t epoch = 0;
  uint64_t batch_in_epoch = 0;  // 0-based position of this batch in its shard's epoch
  uint64_t first_index = 0;     // == indices[0]
  std::vector<uint64_t> indices;
};

class Sampler {
 public:
  // InvalidArgument for an empty dataset, batch_size 0, num_shards 0,
  // shard_index >= num_shards, num_epochs 0, or a shard that would get no
  // batch in an epoch (the message says which knob to turn).
  static Result<Sampler> Make(const SamplerOptions& options);

  // Fills *batch with the next batch (reusing batch->indices' capacity), or
  // returns EndOfStream after the last batch of the last epoch.
  Status Next(IndexBatch* batch);
  // Fills *batch with batch `index` of `epoch`, exactly as Next() yields it
  // then (random access, for making a batch again). InvalidArgument for an
  // index >= batches_per_epoch(). Does not move the Next() cursor; an epoch
  // other than the cursor's costs one shuffle of the dataset's order (the
  // last one is cached).
  Status BatchAt(uint64_t epoch, uint64_t index, IndexBatch* batch);

  // Samples of an epoch this shard gets (before drop_last).
  size_t samples_per_epoch() const { return shard_samples_; }
  // Batches of an epoch this shard yields.
  size_t batches_per_epoch() const { return batches_per_epoch_; }
  const SamplerOptions& options() const { return options_; }

  // The full order of `epoch` before sharding: 0..size-1, shuffled when
  // options().shuffle. Exposed for tests and tools.
  static std::vector<uint64_t> EpochOrder(size_t dataset_size, bool shuffle, uint64_t seed,
                                          uint64_t epoch);

 private:
  explicit Sampler(const SamplerOptions& options);
  void StartEpoch(uint64_t epoch);

  SamplerOptions options_;
  size_t shard_samples_ = 0;
  size_t batches_per_epoch_ = 0;
  // Fills batch `index` of the epoch whose order is `order` (empty when not shuffled).
  void Fill(const std::vector<uint64_t>& order, uint64_t epoch, uint64_t index, IndexBatch* batch) const;

  std::vector<uint64_t> order_;  // the current epoch's full order
  uint64_t epoch_ = 0;           // the epoch order_ holds
  std::vector<uint64_t> other_order_;  // BatchAt's cache for another epoch
  uint64_t other_epoch_ = ~uint64_t{0};
  uint64_t epochs_done_ = 0;
  size_t next_batch_ = 0;        // within the current epoch
  bool started_ = false;
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_SAMPLER_H_
