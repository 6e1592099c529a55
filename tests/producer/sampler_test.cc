#include "datafeed/producer/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <vector>

namespace datafeed {
namespace {

std::vector<IndexBatch> Drain(Sampler& s, size_t limit = 1000000) {
  std::vector<IndexBatch> out;
  IndexBatch b;
  while (out.size() < limit) {
    Status st = s.Next(&b);
    if (st.IsEndOfStream()) break;
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (!st.ok()) break;
    out.push_back(b);
  }
  return out;
}

Sampler MakeOrDie(const SamplerOptions& o) {
  Result<Sampler> s = Sampler::Make(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

TEST(SamplerTest, SequentialBatchesInOrder) {
  SamplerOptions o;
  o.dataset_size = 10;
  o.batch_size = 4;
  Sampler s = MakeOrDie(o);
  EXPECT_EQ(s.batches_per_epoch(), 3u);
  auto batches = Drain(s);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].indices, (std::vector<uint64_t>{0, 1, 2, 3}));
  EXPECT_EQ(batches[1].indices, (std::vector<uint64_t>{4, 5, 6, 7}));
  EXPECT_EQ(batches[2].indices, (std::vector<uint64_t>{8, 9}));
  for (size_t i = 0; i < batches.size(); ++i) {
    EXPECT_EQ(batches[i].epoch, 0u);
    EXPECT_EQ(batches[i].batch_in_epoch, i);
    EXPECT_EQ(batches[i].first_index, batches[i].indices[0]);
  }
  IndexBatch b;
  EXPECT_TRUE(s.Next(&b).IsEndOfStream());
  EXPECT_TRUE(s.Next(&b).IsEndOfStream());  // stays ended
}

TEST(SamplerTest, DropLastDropsOnlyTheShortBatch) {
  SamplerOptions o;
  o.dataset_size = 10;
  o.batch_size = 4;
  o.drop_last = true;
  o.num_epochs = 2;
  Sampler s = MakeOrDie(o);
  EXPECT_EQ(s.batches_per_epoch(), 2u);
  auto batches = Drain(s);
  ASSERT_EQ(batches.size(), 4u);
  for (const auto& b : batches) EXPECT_EQ(b.indices.size(), 4u);
  EXPECT_EQ(batches[2].epoch, 1u);
  EXPECT_EQ(batches[2].batch_in_epoch, 0u);

  o.drop_last = false;
  Sampler keep = MakeOrDie(o);
  auto kept = Drain(keep);
  ASSERT_EQ(kept.size(), 6u);
  EXPECT_EQ(kept[2].indices.size(), 2u);
}

TEST(SamplerTest, ShardsCoverEveryIndexExactlyOnce) {
  for (bool shuffle : {false, true}) {
    for (size_t n : {1, 2, 3, 7}) {
      for (size_t size : {1u, 10u, 100u, 101u}) {
        if (size < n) continue;
        std::map<uint64_t, std::map<uint64_t, int>> seen;  // epoch -> index -> count
        size_t total_per_epoch = 0;
        for (size_t shard = 0; shard < n; ++shard) {
          SamplerOptions o;
          o.dataset_size = size;
          o.batch_size = 3;
          o.shuffle = shuffle;
          o.seed = 42;
          o.shard_index = shard;
          o.num_shards = n;
          o.num_epochs = 2;
          Sampler s = MakeOrDie(o);
          total_per_epoch += s.samples_per_epoch();
          for (const auto& b : Drain(s)) {
            for (uint64_t i : b.indices) seen[b.epoch][i]++;
          }
        }
        SCOPED_TRACE("shuffle=" + std::to_string(shuffle) + " shards=" + std::to_string(n) +
                     " size=" + std::to_string(size));
        EXPECT_EQ(total_per_epoch, size);
        ASSERT_EQ(seen.size(), 2u);
        for (auto& [epoch, counts] : seen) {
          EXPECT_EQ(counts.size(), size) << "epoch " << epoch;
          for (auto& [index, count] : counts) {
            EXPECT_LT(index, size);
            EXPECT_EQ(count, 1) << "index " << index << " epoch " << epoch;
          }
        }
      }
    }
  }
}

TEST(SamplerTest, ShardSizesDifferByAtMostOne) {
  size_t lo = ~size_t{0}, hi = 0;
  for (size_t shard = 0; shard < 4; ++shard) {
    SamplerOptions o;
    o.dataset_size = 10;
    o.shard_index = shard;
    o.num_shards = 4;
    Sampler s = MakeOrDie(o);
    lo = std::min(lo, s.samples_per_epoch());
    hi = std::max(hi, s.samples_per_epoch());
  }
  EXPECT_EQ(lo, 2u);
  EXPECT_EQ(hi, 3u);
}

TEST(SamplerTest, ShuffleIsDeterministicPerSeedAndEpoch) {
  auto order = [](uint64_t seed, uint64_t epoch) {
    return Sampler::EpochOrder(1000, true, seed, epoch);
  };
  EXPECT_EQ(order(7, 0), order(7, 0));
  EXPECT_EQ(order(7, 3), order(7, 3));
  EXPECT_NE(order(7, 0), order(7, 1));
  EXPECT_NE(order(7, 0), order(8, 0));
  std::vector<uint64_t> sorted = order(7, 0);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, Sampler::EpochOrder(1000, false, 7, 0));
  EXPECT_NE(order(7, 0), Sampler::EpochOrder(1000, false, 7, 0));

  // Two samplers with the same options yield the same batches.
  SamplerOptions o;
  o.dataset_size = 257;
  o.batch_size = 16;
  o.shuffle = true;
  o.seed = 99;
  o.num_epochs = 3;
  Sampler a = MakeOrDie(o), b = MakeOrDie(o);
  auto ba = Drain(a), bb = Drain(b);
  ASSERT_EQ(ba.size(), bb.size());
  for (size_t i = 0; i < ba.size(); ++i) {
    EXPECT_EQ(ba[i].indices, bb[i].indices);
    EXPECT_EQ(ba[i].epoch, bb[i].epoch);
  }
  // Epoch e of a run equals Sampler::EpochOrder(seed, e).
  std::vector<uint64_t> epoch1;
  for (const auto& x : ba) {
    if (x.epoch == 1) epoch1.insert(epoch1.end(), x.indices.begin(), x.indices.end());
  }
  EXPECT_EQ(epoch1, Sampler::EpochOrder(257, true, 99, 1));
}

TEST(SamplerTest, ResumeAtFirstEpochMatchesAFullRun) {
  SamplerOptions o;
  o.dataset_size = 50;
  o.batch_size = 8;
  o.shuffle = true;
  o.seed = 5;
  o.num_epochs = 3;
  Sampler full = MakeOrDie(o);
  auto all = Drain(full);
  o.first_epoch = 2;
  o.num_epochs = 1;
  Sampler resumed = MakeOrDie(o);
  auto last = Drain(resumed);
  ASSERT_EQ(last.size(), full.batches_per_epoch());
  for (size_t i = 0; i < last.size(); ++i) {
    const auto& ref = all[2 * full.batches_per_epoch() + i];
    EXPECT_EQ(last[i].epoch, 2u);
    EXPECT_EQ(last[i].indices, ref.indices);
  }
}

TEST(SamplerTest, EndlessKeepsGoing) {
  SamplerOptions o;
  o.dataset_size = 5;
  o.batch_size = 2;
  o.num_epochs = SamplerOptions::kEndless;
  Sampler s = MakeOrDie(o);
  auto batches = Drain(s, 300);
  ASSERT_EQ(batches.size(), 300u);
  EXPECT_EQ(batches.back().epoch, 99u);
  EXPECT_EQ(batches.back().batch_in_epoch, 2u);
}

TEST(SamplerTest, RejectsBadOptions) {
  auto code = [](SamplerOptions o) { return Sampler::Make(o).status().code(); };
  SamplerOptions o;
  o.dataset_size = 10;
  EXPECT_EQ(code(o), StatusCode::kOk);
  SamplerOptions bad = o;
  bad.dataset_size = 0;
  EXPECT_EQ(code(bad), StatusCode::kInvalidArgument);
  bad = o;
  bad.batch_size = 0;
  EXPECT_EQ(code(bad), StatusCode::kInvalidArgument);
  bad = o;
  bad.num_shards = 0;
  EXPECT_EQ(code(bad), StatusCode::kInvalidArgument);
  bad = o;
  bad.num_shards = 2;
  bad.shard_index = 2;
  EXPECT_EQ(code(bad), StatusCode::kInvalidArgument);
  bad = o;
  bad.num_epochs = 0;
  EXPECT_EQ(code(bad), StatusCode::kInvalidArgument);
  // A shard whose share is shorter than one batch with drop_last yields nothing.
  bad = o;
  bad.num_shards = 4;
  bad.batch_size = 4;
  bad.drop_last = true;
  Status st = Sampler::Make(bad).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("drop_last"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace datafeed
