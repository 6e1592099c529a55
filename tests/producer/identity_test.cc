// Batch identity (the delivery contract, delivery.h, rule 1): every batch a
// Producer publishes names its run (fingerprint, shard), epoch and index in
// the epoch; its bytes are a pure function of that identity, so a batch made
// again (a consumer's lease lost, a checkpoint restored) is bit-identical;
// with_index adds each sample's dataset index.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/transport/transport.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<const Dataset> Mnist(size_t n, uint64_t seed = 5) {
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("datafeed-identity-" + std::to_string(getpid()) + "-" + std::to_string(n) + "-" +
                        std::to_string(seed));
  fs::create_directories(dir);
  EXPECT_TRUE(WriteSyntheticMnist(dir.string(), "train", n, seed).ok());
  auto ds = MnistDataset::OpenDir(dir.string(), "train");
  EXPECT_TRUE(ds.ok()) << ds.status().ToString();
  fs::remove_all(dir);  // the mapping stays valid
  return std::move(ds).value();
}

// The bytes of every tensor of a batch (the padding between them is not
// the batch's).
std::vector<std::vector<uint8_t>> TensorBytes(const BatchView& v) {
  std::vector<std::vector<uint8_t>> out;
  for (const TensorView& t : v.frame().tensors()) out.emplace_back(t.data, t.data + t.nbytes);
  return out;
}

constexpr char kSpec[] = "random_crop(28,3),to_tensor,normalize(0.1307,0.3081)";

ProducerOptions Options() {
  ProducerOptions po;
  po.sampler.batch_size = 50;
  po.sampler.shuffle = true;
  po.sampler.seed = 21;
  po.sampler.num_epochs = 2;
  po.threads = 2;
  po.chunk = 16;
  po.with_index = true;
  return po;
}

uint64_t FingerprintOf(const std::shared_ptr<const Dataset>& ds, const std::string& spec, const ProducerOptions& po) {
  auto run = Producer::DescribeRun(*ds, Pipeline::Make(spec).value(), po);
  EXPECT_TRUE(run.ok()) << run.status().ToString();
  return run.ok() ? run->fingerprint : 0;
}

TEST(BatchIdentity, TheFingerprintNamesTheDatasetPipelineSeedAndBatchSize) {
  auto ds = Mnist(300);
  const ProducerOptions po = Options();
  const uint64_t fp = FingerprintOf(ds, kSpec, po);
  EXPECT_NE(fp, 0u);
  ProducerOptions threads = po;
  threads.threads = 7;  // how the batches are made is not what they are
  threads.max_in_flight = 5;
  EXPECT_EQ(FingerprintOf(ds, kSpec, threads), fp);
  ProducerOptions seed = po;
  seed.sampler.seed = 22;
  ProducerOptions batch = po;
  batch.sampler.batch_size = 51;
  ProducerOptions shard = po;
  shard.sampler.num_shards = 2;
  const std::set<uint64_t> others = {FingerprintOf(ds, "to_tensor", po), FingerprintOf(ds, kSpec, seed),
                                     FingerprintOf(ds, kSpec, batch), FingerprintOf(ds, kSpec, shard),
                                     FingerprintOf(Mnist(300, 6), kSpec, po)};
  EXPECT_EQ(others.size(), 5u);
  EXPECT_EQ(others.count(fp), 0u);
}

TEST(BatchIdentity, ABatchMadeAgainIsBitIdenticalAndIndexNamesEachSample) {
  auto ds = Mnist(300);
  const ProducerOptions po = Options();
  auto pipeline = Pipeline::Make(kSpec).value();
  const RunInfo run = Producer::DescribeRun(*ds, pipeline, po).value();
  ASSERT_EQ(run.batches_per_epoch, 6u);
  const Endpoint ep = ParseEndpoint("shm://datafeed-identity-" + std::to_string(getpid())).value();
  WriterOptions wo;
  wo.shm.slot_count = 4;
  wo.shm.slot_bytes = 1 << 20;
  wo.run = run;
  auto writer = OpenWriter(ep, wo);
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  auto producer = Producer::Make(ds, pipeline, po, writer->get());
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  Status ran;
  std::thread serving([&] {
    ran = (*producer)->Run();
    EXPECT_TRUE((*writer)->Close().ok());
  });

  // The first consumer checkpoints before its first batch, reads five and
  // goes away; the one restored from its checkpoint gets those five again,
  // made a second time, then the rest.
  ReaderOptions ro;
  ro.connect_timeout_ms = 10'000;
  std::map<BatchKey, std::vector<std::vector<uint8_t>>> first;
  ConsumerState checkpoint;
  {
    auto reader = OpenReader(ep, ro);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    checkpoint = (*reader)->state();
    ASSERT_EQ(checkpoint.streams.size(), 1u);
    EXPECT_EQ(checkpoint.streams[0].position, 0u);
    for (int i = 0; i < 5; ++i) {
      auto v = (*reader)->Next(Deadline::AfterMillis(20'000));
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      const BatchMeta& m = v->meta();
      EXPECT_EQ(m.attempt, 0u);
      first[{m.epoch, m.batch_index}] = TensorBytes(*v);
    }
  }
  ro.session.restore = checkpoint.streams;
  auto reader = OpenReader(ep, ro);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  std::vector<uint8_t> hwc(28 * 28);
  std::map<uint64_t, std::multiset<int64_t>> indices;  // per epoch
  size_t batches = 0, remade = 0;
  for (;;) {
    auto v = (*reader)->Next(Deadline::AfterMillis(20'000));
    if (v.status().IsEndOfStream()) break;
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    ++batches;
    const BatchMeta& m = v->meta();
    EXPECT_EQ(m.fingerprint, run.fingerprint);
    EXPECT_EQ(m.shard, 0u);
    EXPECT_EQ(m.num_shards, 1u);
    EXPECT_LT(m.batch_index, run.batches_per_epoch);
    const TensorView* index = v->Find("index");
    const TensorView* label = v->Find("label");
    ASSERT_NE(index, nullptr) << "with_index: an int64 'index' tensor";
    ASSERT_EQ(index->dtype, DType::kInt64);
    ASSERT_EQ(index->numel(), label->numel());
    EXPECT_EQ(static_cast<uint64_t>(index->as<int64_t>()[0]), m.first_index);
    for (int64_t i = 0; i < index->numel(); ++i) {
      const int64_t sample = index->as<int64_t>()[i];
      int64_t want = -1;
      ASSERT_TRUE(ds->Get(static_cast<size_t>(sample), hwc.data(), &want).ok());
      EXPECT_EQ(label->as<int64_t>()[i], want) << "sample " << i << " of " << BatchIdString(m);
      indices[m.epoch].insert(sample);
    }
    auto it = first.find({m.epoch, m.batch_index});
    if (it != first.end()) {
      ++remade;
      EXPECT_GE(m.attempt, 1u) << BatchIdString(m) << " was made again";
      EXPECT_TRUE(TensorBytes(*v) == it->second)
          << BatchIdString(m) << " made again differs from the first time";
    }
  }
  serving.join();
  EXPECT_TRUE(ran.ok()) << ran.ToString();
  EXPECT_EQ(remade, 5u);
  EXPECT_EQ(batches, 12u);
  // Each epoch (shuffled) names every sample of the dataset exactly once.
  ASSERT_EQ(indices.size(), 2u);
  for (const auto& kv : indices) {
    EXPECT_EQ(kv.second.size(), 300u) << "epoch " << kv.first;
    EXPECT_EQ(std::set<int64_t>(kv.second.begin(), kv.second.end()).size(), 300u) << "epoch " << kv.first;
  }
}

}  // namespace
}  // namespace datafeed
