// The thread-pool Producer end to end: dataset -> pipeline -> transport ->
// reader, checking labels and pixel values, ordering, thread-count
// independence, skipping and stopping.
#include "datafeed/producer/producer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/producer/dataset.h"
#include "datafeed/transport/transport.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A synthetic MNIST of `n` samples, written once per test binary.
std::shared_ptr<const MnistDataset> SyntheticMnist(size_t n) {
  static std::map<size_t, std::shared_ptr<const MnistDataset>> cache;
  auto& ds = cache[n];
  if (!ds) {
    const fs::path dir = fs::path(::testing::TempDir()) /
                         ("datafeed-producer-test-" + std::to_string(getpid()) + "-" + std::to_string(n));
    fs::create_directories(dir);
    EXPECT_TRUE(WriteSyntheticMnist(dir.string(), "train", n, 7).ok());
    ds = MnistDataset::OpenDir(dir.string(), "train").value();
    fs::remove_all(dir);  // the mapping stays valid
  }
  return ds;
}

std::string Unique(const std::string& p) {
  static int counter = 0;
  return p + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

// Runs a producer to completion on `scheme` and returns every batch's bytes
// (image then label), in delivery order.
struct Collected {
  std::vector<std::vector<float>> images;
  std::vector<std::vector<int64_t>> labels;
  std::vector<BatchMeta> metas;
  ProducerStats stats;
  Status status;
};

Collected RunProducer(std::shared_ptr<const Dataset> ds, const std::string& spec,
                      ProducerOptions po, const std::string& scheme = "inproc") {
  Collected out;
  const Endpoint ep = ParseEndpoint(scheme + "://" + Unique("prod")).value();
  WriterOptions wo;
  wo.inproc_capacity = 3;
  wo.shm.slot_count = 3;
  wo.shm.slot_bytes = 4 << 20;
  auto writer = OpenWriter(ep, wo).value();
  auto reader = OpenReader(ep, ReaderOptions{}).value();
  auto producer = Producer::Make(std::move(ds), Pipeline::Make(spec).value(), po, writer.get());
  EXPECT_TRUE(producer.ok()) << producer.status().ToString();
  std::thread t([&] {
    out.status = (*producer)->Run();
    EXPECT_TRUE(writer->Close().ok());
  });
  for (;;) {
    auto v = reader->Next(Deadline::AfterMillis(20'000));
    if (v.status().IsEndOfStream()) break;
    if (!v.ok()) {
      ADD_FAILURE() << v.status().ToString();
      break;
    }
    const TensorView* img = v->Find("image");
    const TensorView* lab = v->Find("label");
    EXPECT_EQ(img->dtype, DType::kFloat32);
    EXPECT_EQ(lab->dtype, DType::kInt64);
    EXPECT_EQ(img->shape[0], lab->shape[0]);
    out.images.emplace_back(img->as<float>(), img->as<float>() + img->numel());
    out.labels.emplace_back(lab->as<int64_t>(), lab->as<int64_t>() + lab->numel());
    out.metas.push_back(v->meta());
  }
  t.join();
  out.stats = (*producer)->stats();
  return out;
}

TEST(Producer, DeliversCorrectPixelsAndLabelsInOrderOverSharedMemory) {
  auto ds = SyntheticMnist(1000);
  ProducerOptions po;
  po.sampler.batch_size = 64;
  po.threads = 3;
  po.chunk = 10;
  Collected c = RunProducer(ds, "to_tensor,normalize(0.1307,0.3081)", po, "shm");
  ASSERT_TRUE(c.status.ok()) << c.status.ToString();
  ASSERT_EQ(c.images.size(), 16u);  // 15 x 64 + 40
  EXPECT_EQ(c.labels.back().size(), 40u);
  std::vector<uint8_t> hwc(28 * 28);
  size_t index = 0, bad_pixels = 0, bad_labels = 0;
  for (size_t b = 0; b < c.images.size(); ++b) {
    EXPECT_EQ(c.metas[b].sequence, b);
    EXPECT_EQ(c.metas[b].first_index, index);
    for (size_t i = 0; i < c.labels[b].size(); ++i, ++index) {
      int64_t label = -1;
      ASSERT_TRUE(ds->Get(index, hwc.data(), &label).ok());
      bad_labels += c.labels[b][i] != label;
      for (size_t p = 0; p < hwc.size(); ++p) {
        const float want = (hwc[p] / 255.0f - 0.1307f) / 0.3081f;
        bad_pixels += std::fabs(c.images[b][i * 784 + p] - want) > 1e-5f;
      }
    }
  }
  EXPECT_EQ(index, 1000u);
  EXPECT_EQ(bad_labels, 0u);
  EXPECT_EQ(bad_pixels, 0u);
  EXPECT_EQ(c.stats.samples, 1000u);
  EXPECT_EQ(c.stats.batches, 16u);
}

TEST(Producer, OutputDoesNotDependOnThreadCount) {
  auto ds = SyntheticMnist(600);
  const std::string spec =
      "random_crop(28,4),random_horizontal_flip,to_tensor,normalize(0.1307,0.3081),gaussian_blur(5)";
  ProducerOptions po;
  po.sampler.batch_size = 50;
  po.sampler.shuffle = true;
  po.sampler.seed = 11;
  po.sampler.num_epochs = 2;
  po.chunk = 7;
  po.threads = 1;
  Collected one = RunProducer(ds, spec, po);
  po.threads = 4;
  po.max_in_flight = 3;
  Collected four = RunProducer(ds, spec, po);
  ASSERT_TRUE(one.status.ok() && four.status.ok());
  ASSERT_EQ(one.images.size(), 24u);
  ASSERT_EQ(four.images.size(), one.images.size());
  for (size_t b = 0; b < one.images.size(); ++b) {
    EXPECT_EQ(one.images[b], four.images[b]) << "batch " << b;
    EXPECT_EQ(one.labels[b], four.labels[b]) << "batch " << b;
    EXPECT_EQ(one.metas[b].epoch, four.metas[b].epoch);
  }
  // Shuffled and randomly augmented: epochs differ.
  EXPECT_NE(one.labels[0], one.labels[12]);
}

TEST(Producer, UnorderedDeliversEveryBatchOnce) {
  auto ds = SyntheticMnist(1000);
  ProducerOptions po;
  po.sampler.batch_size = 32;
  po.threads = 4;
  po.max_in_flight = 4;
  po.ordered = false;
  Collected c = RunProducer(ds, "to_tensor", po);
  ASSERT_TRUE(c.status.ok());
  std::set<uint64_t> firsts;
  for (const auto& m : c.metas) firsts.insert(m.first_index);
  EXPECT_EQ(firsts.size(), 32u);  // ceil(1000 / 32)
  EXPECT_EQ(*firsts.rbegin(), 992u);
}

// A dataset whose every 10th sample cannot be read.
class FlakyDataset : public Dataset {
 public:
  explicit FlakyDataset(std::shared_ptr<const Dataset> inner) : inner_(std::move(inner)) {}
  size_t size() const override { return inner_->size(); }
  SampleShape shape() const override { return inner_->shape(); }
  Status Read(size_t index, Sample* out) const override {
    if (index % 10 == 3) return Status::DataLoss("img" + std::to_string(index) + ".png: not a PNG");
    return inner_->Read(index, out);
  }
  std::string SampleName(size_t index) const override { return "img" + std::to_string(index) + ".png"; }
  uint64_t Fingerprint() const override { return inner_->Fingerprint() ^ 0xF1A4; }

 private:
  std::shared_ptr<const Dataset> inner_;
};

TEST(Producer, BadSamplesAreCountedLoggedAndZeroedOrFatal) {
  auto flaky = std::make_shared<FlakyDataset>(SyntheticMnist(100));
  ProducerOptions po;
  po.sampler.batch_size = 100;
  po.threads = 2;
  po.max_bad_fraction = 0.2;
  std::vector<std::string> lines;
  std::mutex mu;
  po.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(mu);
    lines.push_back(line);
  };
  for (BadSamples policy : {BadSamples::kZero, BadSamples::kFill}) {
    lines.clear();
    po.bad_samples = policy;
    Collected c = RunProducer(flaky, "to_tensor", po);
    ASSERT_TRUE(c.status.ok()) << c.status.ToString();
    EXPECT_EQ(c.stats.bad_samples, 10u);
    EXPECT_EQ(c.stats.bad_read, 10u);
    EXPECT_EQ(c.stats.bad_decode + c.stats.bad_size + c.stats.bad_transform, 0u);
    EXPECT_NE(c.stats.ToString().find("(10 bad: 10 read, 0 decode, 0 size, 0 transform)"),
              std::string::npos) << c.stats.ToString();
    // kFill is kZero until the spare-sample composition lands (FillBadSlot).
    EXPECT_EQ(c.labels[0][13], kSkippedLabel);
    EXPECT_EQ(c.images[0][13 * 784 + 400], 0.0f);
    EXPECT_NE(c.labels[0][14], kSkippedLabel);
    // Rate-limited: the first bad sample is named, the rest within the
    // second are counted in a closing line.
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_GE(lines.size(), 2u);
    EXPECT_LT(lines.size(), 10u);
    EXPECT_NE(lines[0].find("bad sample "), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find(".png: not a PNG"), std::string::npos) << lines[0];
    EXPECT_NE(lines.back().find("more like this not shown"), std::string::npos) << lines.back();
  }

  po.bad_samples = BadSamples::kFail;
  Collected strict = RunProducer(flaky, "to_tensor", po);
  EXPECT_EQ(strict.status.code(), StatusCode::kDataLoss);
  EXPECT_NE(strict.status.message().find("not a PNG"), std::string::npos) << strict.status.ToString();
  EXPECT_NE(strict.status.message().find("--bad-samples fail"), std::string::npos);
  EXPECT_TRUE(strict.images.empty());
}

TEST(Producer, TooManyBadSamplesStopTheRunNamingCountsAndFiles) {
  // 10% bad against the default budget of 0.1%.
  auto flaky = std::make_shared<FlakyDataset>(SyntheticMnist(1000));
  ProducerOptions po;
  po.sampler.batch_size = 100;
  po.threads = 2;
  po.log = [](const std::string&) {};
  Collected c = RunProducer(flaky, "to_tensor", po);
  EXPECT_EQ(c.status.code(), StatusCode::kDataLoss) << c.status.ToString();
  const std::string& m = c.status.message();
  EXPECT_NE(m.find("bad samples (2 unreadable"), std::string::npos) << m;
  EXPECT_NE(m.find("of 1000 samples is more than max_bad_fraction 0.001"), std::string::npos) << m;
  EXPECT_NE(m.find("--max-bad-fraction"), std::string::npos) << m;
  EXPECT_NE(m.find("Last ones: img"), std::string::npos) << m;
  // 1 never stops for the fraction.
  po.max_bad_fraction = 1;
  EXPECT_TRUE(RunProducer(flaky, "to_tensor", po).status.ok());
}

// A dataset none of whose samples can be made.
class BrokenDataset : public Dataset {
 public:
  size_t size() const override { return 10000; }
  SampleShape shape() const override { return {28, 28, 1}; }
  Status Read(size_t index, Sample* out) const override {
    (void)index;
    std::copy_n("not an image", 12, out->AllocateEncoded(12));
    return Status::OK();
  }
  std::string SampleName(size_t index) const override { return "f" + std::to_string(index) + ".jpg"; }
  uint64_t Fingerprint() const override { return 1; }
};

TEST(Producer, ASampleFailureOnEverySampleFailsAtOnce) {
  ProducerOptions po;
  po.sampler.batch_size = 100;
  po.threads = 2;
  po.max_bad_fraction = 1;  // the fraction alone would never stop it
  po.log = [](const std::string&) {};
  Collected c = RunProducer(std::make_shared<BrokenDataset>(), "to_tensor", po);
  EXPECT_EQ(c.status.code(), StatusCode::kDataLoss) << c.status.ToString();
  EXPECT_NE(c.status.message().find("samples all failed"), std::string::npos) << c.status.message();
  EXPECT_NE(c.status.message().find("configuration error"), std::string::npos);
  EXPECT_NE(c.status.message().find(".jpg: not an image"), std::string::npos) << c.status.message();
  EXPECT_LT(c.stats.bad_samples, 100u);  // it stopped at once, not after the batch
  EXPECT_TRUE(c.images.empty());
}

TEST(Producer, BadSamplesPolicyNames) {
  EXPECT_EQ(ParseBadSamples("fill").value(), BadSamples::kFill);
  EXPECT_EQ(ParseBadSamples("zero").value(), BadSamples::kZero);
  EXPECT_EQ(ParseBadSamples("fail").value(), BadSamples::kFail);
  EXPECT_EQ(ParseBadSamples("strict").value(), BadSamples::kFail);
  EXPECT_EQ(ParseBadSamples("skip").status().code(), StatusCode::kInvalidArgument);
  EXPECT_STREQ(BadSamplesName(BadSamples::kZero), "zero");
}

TEST(Producer, StopEndsARunBlockedOnAFullTransport) {
  const Endpoint ep = ParseEndpoint("inproc://" + Unique("stop")).value();
  WriterOptions wo;
  wo.inproc_capacity = 1;
  auto writer = OpenWriter(ep, wo).value();
  ProducerOptions po;
  po.sampler.batch_size = 16;
  po.sampler.num_epochs = SamplerOptions::kEndless;
  auto producer =
      Producer::Make(SyntheticMnist(100), Pipeline::Make("to_tensor").value(), po, writer.get()).value();
  Status st;
  std::thread t([&] { st = producer->Run(); });
  std::this_thread::sleep_for(200ms);  // nobody reads: the producer is blocked
  const auto t0 = std::chrono::steady_clock::now();
  producer->Stop();
  t.join();
  EXPECT_EQ(st.code(), StatusCode::kCancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(producer->stats().batches, 1u);
  EXPECT_GT(producer->stats().loan_blocked_s, 0.05);
}

TEST(Producer, RejectsAPipelineThatCannotTakeTheSamples) {
  auto writer = OpenWriter(ParseEndpoint("inproc://" + Unique("bad")).value(), WriterOptions{}).value();
  auto p = Producer::Make(SyntheticMnist(100), Pipeline::Make("to_tensor,center_crop(40)").value(),
                          ProducerOptions{}, writer.get());
  // center_crop pads smaller images, so this one is fine; a 3-channel
  // normalize on a 1-channel image is not.
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  auto q = Producer::Make(SyntheticMnist(100),
                          Pipeline::Make("to_tensor,normalize(0.5,0.5,0.5,0.2,0.2,0.2)").value(),
                          ProducerOptions{}, writer.get());
  EXPECT_EQ(q.status().code(), StatusCode::kInvalidArgument) << q.status().ToString();
}

}  // namespace
}  // namespace datafeed
