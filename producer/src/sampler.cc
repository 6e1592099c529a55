#include "datafeed/producer/sampler.h"

#include <algorithm>
#include <random>
#include <string>
#include <utility>

#include "datafeed/producer/sample_rng.h"

namespace datafeed {
namespace {

// Uniform in [0, n) from a 64-bit engine, unbiased; n >= 1.
uint64_t Below(std::mt19937_64& gen, uint64_t n) {
  const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % n);
  uint64_t x = gen();
  while (x >= limit) x = gen();
  return x % n;
}

}  // namespace

std::vector<uint64_t> Sampler::EpochOrder(size_t dataset_size, bool shuffle, uint64_t seed,
                                          uint64_t epoch) {
  std::vector<uint64_t> order(dataset_size);
  for (size_t i = 0; i < dataset_size; ++i) order[i] = i;
  if (shuffle && dataset_size > 1) {
    // Distinct (seed, epoch) pairs give unrelated engine seeds.
    std::mt19937_64 gen(Mix64(Mix64(seed) ^ (epoch * 0x9E3779B97F4A7C15ULL + 1)));
    for (size_t i = dataset_size - 1; i > 0; --i) {
      std::swap(order[i], order[Below(gen, i + 1)]);
    }
  }
  return order;
}

Result<Sampler> Sampler::Make(const SamplerOptions& o) {
  if (o.dataset_size == 0) return Status::InvalidArgument("sampler: the dataset is empty");
  if (o.batch_size == 0) return Status::InvalidArgument("sampler: batch_size must be at least 1");
  if (o.num_shards == 0) return Status::InvalidArgument("sampler: num_shards must be at least 1");
  if (o.shard_index >= o.num_shards) {
    return Status::InvalidArgument("sampler: shard_index " + std::to_string(o.shard_index) +
                                   " is out of range for " + std::to_string(o.num_shards) +
                                   " shards (valid: 0.." + std::to_string(o.num_shards - 1) + ")");
  }
  if (o.num_epochs == 0) {
    return Status::InvalidArgument(
        "sampler: num_epochs is 0; give at least 1, or SamplerOptions::kEndless");
  }
  Sampler s(o);
  if (s.batches_per_epoch_ != 0 && o.first_batch >= s.batches_per_epoch_) {
    return Status::InvalidArgument("sampler: first_batch " + std::to_string(o.first_batch) +
                                   " is past the epoch's " + std::to_string(s.batches_per_epoch_) +
                                   " batches");
  }
  if (s.batches_per_epoch_ == 0) {
    return Status::InvalidArgument(
        "sampler: shard " + std::to_string(o.shard_index) + " of " + std::to_string(o.num_shards) +
        " gets " + std::to_string(s.shard_samples_) + " of " + std::to_string(o.dataset_size) +
        " samples per epoch, fewer than batch_size " + std::to_string(o.batch_size) +
        (o.drop_last ? ", and drop_last drops them all; lower batch_size, use fewer shards or "
                       "turn off drop_last"
                     : "; use fewer shards"));
  }
  return s;
}

Sampler::Sampler(const SamplerOptions& o) : options_(o) {
  // Shard s gets positions s, s + n, ... < size.
  shard_samples_ = o.dataset_size / o.num_shards + (o.shard_index < o.dataset_size % o.num_shards);
  batches_per_epoch_ = o.drop_last ? shard_samples_ / o.batch_size
                                   : (shard_samples_ + o.batch_size - 1) / o.batch_size;
}

void Sampler::StartEpoch(uint64_t epoch) {
  epoch_ = epoch;
  next_batch_ = epoch == options_.first_epoch && epochs_done_ == 0 ? options_.first_batch : 0;
  if (options_.shuffle) {
    order_ = EpochOrder(options_.dataset_size, true, options_.seed, epoch);
  }
}

Status Sampler::Next(IndexBatch* batch) {
  if (!started_) {
    started_ = true;
    StartEpoch(options_.first_epoch);
  } else if (next_batch_ == batches_per_epoch_) {
    ++epochs_done_;
    if (options_.num_epochs != SamplerOptions::kEndless && epochs_done_ >= options_.num_epochs) {
      return Status::EndOfStream("sampler: all " + std::to_string(options_.num_epochs) +
                                 " epochs done");
    }
    StartEpoch(epoch_ + 1);
  }
  Fill(order_, epoch_, next_batch_, batch);
  ++next_batch_;
  return Status::OK();
}

Status Sampler::BatchAt(uint64_t epoch, uint64_t index, IndexBatch* batch) {
  if (index >= batches_per_epoch_) {
    return Status::InvalidArgument("sampler: batch " + std::to_string(index) + " of epoch " +
                                   std::to_string(epoch) + " does not exist; an epoch has " +
                                   std::to_string(batches_per_epoch_) + " batches");
  }
  if (!options_.shuffle) {
    Fill(order_, epoch, index, batch);
  } else if (started_ && epoch == epoch_) {
    Fill(order_, epoch, index, batch);
  } else {
    if (other_epoch_ != epoch) {
      other_order_ = EpochOrder(options_.dataset_size, true, options_.seed, epoch);
      other_epoch_ = epoch;
    }
    Fill(other_order_, epoch, index, batch);
  }
  return Status::OK();
}

void Sampler::Fill(const std::vector<uint64_t>& order, uint64_t epoch, uint64_t index,
                   IndexBatch* batch) const {
  const size_t begin = index * options_.batch_size;  // position within the shard
  const size_t end = std::min(begin + options_.batch_size, shard_samples_);
  batch->indices.resize(end - begin);
  for (size_t k = begin; k < end; ++k) {
    const size_t pos = options_.shard_index + k * options_.num_shards;
    batch->indices[k - begin] = options_.shuffle ? order[pos] : pos;
  }
  batch->epoch = epoch;
  batch->batch_in_epoch = index;
  batch->first_index = batch->indices.front();
}

}  // namespace datafeed
