// The thread-pool Producer end to end: dataset -> pipeline -> transport ->
// reader, checking labels and pixel values, ordering, thread-count
// independence, skipping and stopping.
#include "datafeed/producer/producer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/producer/dataset.h"
#include "datafeed/transport/transport.h"
#include "image_fixtures.h"
#include "test_files.h"

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
  std::vector<std::vector<float>> images;  // float32 pipelines
  std::vector<std::vector<uint8_t>> u8_images;  // split pipelines (uint8 CHW)
  std::vector<std::vector<int64_t>> image_shapes;
  std::vector<std::vector<int64_t>> labels;
  std::vector<std::vector<int64_t>> indices;  // with_index
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
    EXPECT_EQ(lab->dtype, DType::kInt64);
    EXPECT_EQ(img->shape[0], lab->shape[0]);
    out.image_shapes.push_back(img->shape);
    if (img->dtype == DType::kUInt8) {
      out.u8_images.emplace_back(img->data, img->data + img->nbytes);
    } else {
      EXPECT_EQ(img->dtype, DType::kFloat32);
      out.images.emplace_back(img->as<float>(), img->as<float>() + img->numel());
    }
    out.labels.emplace_back(lab->as<int64_t>(), lab->as<int64_t>() + lab->numel());
    if (const TensorView* index = v->Find("index")) {
      out.indices.emplace_back(index->as<int64_t>(), index->as<int64_t>() + index->numel());
    }
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
    if (policy == BadSamples::kZero) {
      EXPECT_EQ(c.labels[0][13], kSkippedLabel);
      EXPECT_EQ(c.images[0][13 * 784 + 400], 0.0f);
      EXPECT_EQ(c.stats.bad_filled + c.stats.bad_unfilled, 0u);
    } else {
      // A spare sample took the slot: a real image and its label, none of
      // the bad ones' zeros (every 10th sample is bad; 8 spares in a row
      // all bad is (1/10)^8 per slot).
      EXPECT_NE(c.labels[0][13], kSkippedLabel);
      EXPECT_EQ(c.stats.bad_filled, 10u);
      EXPECT_EQ(c.stats.bad_unfilled, 0u);
      EXPECT_EQ(std::count(c.labels[0].begin(), c.labels[0].end(), kSkippedLabel), 0);
      EXPECT_NE(c.stats.ToString().find("10 filled with spares, 0 zeroed"), std::string::npos) << c.stats.ToString();
    }
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

// --bad-samples fill: a bad sample's slot holds a spare sample, the same
// one whatever the thread count (a batch is a function of its identity),
// and the index tensor names it: the slot's pixels and label are that
// sample's, exactly as a good slot's are.
TEST(Producer, FillPutsTheSameSpareInABadSlotWhateverTheThreads) {
  auto flaky = std::make_shared<FlakyDataset>(SyntheticMnist(200));
  ProducerOptions po;
  po.sampler.batch_size = 50;
  po.sampler.shuffle = true;
  po.sampler.seed = 9;
  po.max_bad_fraction = 0.2;
  po.with_index = true;
  po.log = [](const std::string&) {};
  po.threads = 1;
  Collected one = RunProducer(flaky, "to_tensor", po);
  po.threads = 3;
  Collected three = RunProducer(flaky, "to_tensor", po);
  ASSERT_TRUE(one.status.ok() && three.status.ok()) << one.status.ToString() << three.status.ToString();
  EXPECT_EQ(one.images, three.images);
  EXPECT_EQ(one.labels, three.labels);
  EXPECT_EQ(one.indices, three.indices);
  EXPECT_EQ(one.stats.bad_filled, 20u);
  // Every slot names a good sample (index % 10 != 3), with its label and
  // pixels: a good sample's are what the unflaky dataset gives.
  auto clean = SyntheticMnist(200);
  Sample sample;
  size_t spares = 0;
  ASSERT_EQ(one.indices.size(), one.labels.size());
  for (size_t b = 0; b < one.indices.size(); ++b) {
    for (size_t i = 0; i < one.indices[b].size(); ++i) {
      const int64_t idx = one.indices[b][i];
      ASSERT_NE(idx % 10, 3) << "batch " << b << " slot " << i << " holds a bad sample";
      ASSERT_TRUE(clean->Read(static_cast<size_t>(idx), &sample).ok());
      EXPECT_EQ(one.labels[b][i], sample.label()) << "batch " << b << " slot " << i;
      EXPECT_FLOAT_EQ(one.images[b][i * 784 + 400], sample.pixels()[400] / 255.0f) << "batch " << b << " slot " << i;
    }
    spares += one.indices[b].size();
  }
  EXPECT_EQ(spares, 200u);
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
  // Two workers may both be past the budget when it stops; the total and
  // its parts come from one snapshot, so they agree.
  unsigned total = 0, unreadable = 0;
  ASSERT_EQ(std::sscanf(m.c_str(), "%u bad samples (%u unreadable, 0 undecodable", &total,
                        &unreadable), 2) << m;
  EXPECT_GE(total, 2u) << m;
  EXPECT_EQ(total, unreadable) << m;
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

// ---- decoded images ----------------------------------------------------------------

// An ImageNet-like folder: `classes` x `per_class` JPEGs of varied sizes and
// aspect ratios (some gray), plus `corrupt` undecodable .jpg files in the
// first class.
void WriteJpegFolder(const std::string& root, int classes, int per_class, int corrupt = 0) {
  int n = 0;
  for (int c = 0; c < classes; ++c) {
    const std::string dir = root + "/class" + std::to_string(c) + (c % 2 ? "/nested" : "");
    fs::create_directories(dir);
    for (int i = 0; i < per_class; ++i, ++n) {
      const int h = 40 + (n * 37) % 90, w = 40 + (n * 53) % 110;
      const int ch = n % 5 == 4 ? 1 : 3;
      test::WriteFile(dir + "/" + std::to_string(1000 + i) + ".jpg",
                      test::EncodeJpeg(test::PhotoLike(h, w, ch, static_cast<uint32_t>(n)), h, w, ch, 90));
    }
  }
  for (int i = 0; i < corrupt; ++i) {
    test::WriteFile(root + "/class0/bad" + std::to_string(i) + ".jpg", test::Bytes("\xff\xd8\xffnot a jpeg"));
  }
}

// What the pipeline makes of dataset sample `index` on its own: the
// reference a producer's batch must reproduce.
std::vector<float> Reference(const Dataset& ds, const Pipeline& p, size_t index, uint64_t seed,
                             uint64_t epoch) {
  Sample s;
  EXPECT_TRUE(ds.Get(index, &s).ok());
  const ImageShape shape = SampleOutputShape(ds, p).value();
  std::vector<float> out(shape.num_elements());
  EXPECT_TRUE(p.Run(s.pixels(), s.height(), s.width(), s.channels(), out.data(),
                    SampleRng(seed, epoch, index)).ok());
  return out;
}

TEST(ImageProducer, PresetsServeAFolderOfJpegsOfEverySize) {
  test::TempDir root;
  WriteJpegFolder(root.path().string(), 3, 7);
  std::shared_ptr<const Dataset> ds = ImageFolderDataset::Open(root.path().string()).value();
  ASSERT_EQ(ds->size(), 21u);
  for (const char* preset : {"imagenet-train", "imagenet-eval"}) {
    const std::string spec = Pipeline::Preset(preset).value();
    ProducerOptions po;
    po.sampler.batch_size = 8;
    po.sampler.shuffle = true;
    po.sampler.seed = 5;
    po.threads = 3;
    po.chunk = 3;
    Collected c = RunProducer(ds, spec, po);
    ASSERT_TRUE(c.status.ok()) << preset << ": " << c.status.ToString();
    ASSERT_EQ(c.images.size(), 3u);
    EXPECT_EQ(c.image_shapes[0], (std::vector<int64_t>{8, 3, 224, 224}));
    EXPECT_EQ(c.image_shapes[2], (std::vector<int64_t>{5, 3, 224, 224}));
    EXPECT_EQ(c.stats.bad_samples, 0u);
    // Every sample is what the pipeline makes of its image with its stream.
    const Pipeline p = Pipeline::Make(spec).value();
    const std::vector<uint64_t> order = Sampler::EpochOrder(21, true, 5, 0);
    const size_t per = 3 * 224 * 224;
    for (size_t k = 0; k < 21; ++k) {
      const std::vector<float>& batch = c.images[k / 8];
      const std::vector<float> want = Reference(*ds, p, order[k], 5, 0);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), batch.begin() + (k % 8) * per))
          << preset << " sample " << order[k];
      EXPECT_EQ(c.labels[k / 8][k % 8], static_cast<const ImageFolderDataset&>(*ds).label(order[k]));
    }
  }
}

TEST(ImageProducer, SplitPresetShipsUint8ThatFinishesToTheSameFloats) {
  test::TempDir root;
  WriteJpegFolder(root.path().string(), 2, 5);
  std::shared_ptr<const Dataset> ds = ImageFolderDataset::Open(root.path().string()).value();
  const std::string spec = Pipeline::Preset("imagenet-train").value();
  ProducerOptions po;
  po.sampler.batch_size = 10;
  po.threads = 2;
  Collected whole = RunProducer(ds, spec, po);
  Collected split = RunProducer(ds, Pipeline::MoveFinishToConsumer(spec).value(), po);
  ASSERT_TRUE(whole.status.ok() && split.status.ok()) << split.status.ToString();
  ASSERT_EQ(split.u8_images.size(), 1u);
  EXPECT_EQ(split.image_shapes[0], (std::vector<int64_t>{10, 3, 224, 224}));
  const Finish finish = Finish::Parse("to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)").value();
  std::vector<float> finished(split.u8_images[0].size());
  ASSERT_TRUE(finish.Apply(split.u8_images[0].data(), split.image_shapes[0], finished.data(),
                           finished.size()).ok());
  EXPECT_EQ(finished, whole.images[0]);
}

TEST(ImageProducer, APipelineWhoseOutputSizeVariesIsRefusedWithTheFix) {
  test::TempDir root;
  WriteJpegFolder(root.path().string(), 1, 2);
  std::shared_ptr<const Dataset> ds = ImageFolderDataset::Open(root.path().string()).value();
  auto writer = OpenWriter(ParseEndpoint("inproc://" + Unique("vary")).value(), WriterOptions{}).value();
  for (const char* spec : {"to_tensor", "resize(64),to_tensor", "random_horizontal_flip,to_tensor"}) {
    auto p = Producer::Make(ds, Pipeline::Make(spec).value(), ProducerOptions{}, writer.get());
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << spec;
    EXPECT_NE(p.status().message().find("end the pipeline's geometric steps with center_crop(S), "
                                        "random_resized_crop(S) or resize(H, W)"),
              std::string::npos) << p.status().message();
    EXPECT_EQ(MakeBatchLayout(*ds, Pipeline::Make(spec).value(), 4).status().code(),
              StatusCode::kInvalidArgument);
  }
  // Fixed at the end: fine, and the layout is what the producer writes.
  const Pipeline ok = Pipeline::Make("resize(64),center_crop(48),to_tensor").value();
  auto layout = MakeBatchLayout(*ds, ok, 4);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ((*layout)->spec(0).shape, (std::vector<int64_t>{4, 3, 48, 48}));
  EXPECT_EQ((*layout)->spec(1).shape, (std::vector<int64_t>{4}));
  auto p = Producer::Make(ds, ok, ProducerOptions{}, writer.get());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ((*p)->BatchLayoutFor(4).value()->frame_bytes(), (*layout)->frame_bytes());
}

TEST(ImageProducer, CorruptJpegsAreLeftOutCountedAndNamed) {
  test::TempDir root;
  WriteJpegFolder(root.path().string(), 2, 20, /*corrupt=*/2);
  std::shared_ptr<const Dataset> ds = ImageFolderDataset::Open(root.path().string()).value();
  ASSERT_EQ(ds->size(), 42u);
  ProducerOptions po;
  po.sampler.batch_size = 42;
  po.threads = 2;
  po.max_bad_fraction = 0.05;
  std::vector<std::string> lines;
  std::mutex mu;
  po.log = [&](const std::string& l) {
    std::lock_guard<std::mutex> lock(mu);
    lines.push_back(l);
  };
  po.bad_samples = BadSamples::kZero;
  Collected c = RunProducer(ds, "resize(32),center_crop(32),to_tensor", po);
  ASSERT_TRUE(c.status.ok()) << c.status.ToString();
  EXPECT_EQ(c.stats.bad_decode, 2u);
  EXPECT_EQ(std::count(c.labels[0].begin(), c.labels[0].end(), kSkippedLabel), 2);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0].find("/class0/bad"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("not a readable JPEG"), std::string::npos) << lines[0];
  // The default budget (0.1%) does not allow 2 of 42.
  po.max_bad_fraction = 0.001;
  EXPECT_EQ(RunProducer(ds, "resize(32),center_crop(32),to_tensor", po).status.code(),
            StatusCode::kDataLoss);
}

TEST(ImageProducer, AFixedSizeNoImageHasFailsAtOnce) {
  test::TempDir root;
  WriteJpegFolder(root.path().string(), 2, 20);
  ImageDatasetOptions o;
  o.height = 28;
  o.width = 28;
  std::shared_ptr<const Dataset> ds = ImageFolderDataset::Open(root.path().string(), o).value();
  ProducerOptions po;
  po.sampler.batch_size = 40;
  po.threads = 2;
  po.max_bad_fraction = 1;
  po.log = [](const std::string&) {};
  Collected c = RunProducer(ds, "to_tensor", po);
  EXPECT_EQ(c.status.code(), StatusCode::kInvalidArgument) << c.status.ToString();
  EXPECT_NE(c.status.message().find("samples all failed"), std::string::npos) << c.status.message();
  EXPECT_NE(c.status.message().find("but the dataset requires 28x28"), std::string::npos);
  EXPECT_GE(c.stats.bad_size, kAllBadProbe);
}

TEST(ImageProducer, WebDatasetShardsCoverEverySampleOnceAcrossProducersAndThreads) {
  test::TempDir dir;
  // 6 shards of 9 samples; sample n's label is n.
  int n = 0;
  for (int s = 0; s < 6; ++s) {
    std::vector<test::TarMember> members;
    for (int i = 0; i < 9; ++i, ++n) {
      const int h = 30 + n % 20, w = 30 + (n * 3) % 25;
      const std::string key = "s" + std::to_string(s) + "/" + std::to_string(n);
      members.push_back({key + ".jpg", test::EncodeJpeg(test::PhotoLike(h, w, 3, n), h, w, 3)});
      members.push_back({key + ".cls", test::Bytes(std::to_string(n))});
    }
    test::WriteTar(dir / ("train-" + std::to_string(s) + ".tar"), members);
  }
  std::multiset<int64_t> seen;
  for (size_t shard = 0; shard < 2; ++shard) {
    WebDatasetOptions o;
    o.shard_index = shard;
    o.num_shards = 2;
    std::shared_ptr<const Dataset> ds = WebDataset::Open(dir / "train-{0..5}.tar", o).value();
    ProducerOptions po;
    po.sampler.batch_size = 5;
    po.sampler.shuffle = true;
    po.sampler.seed = 3;
    po.threads = 3;
    po.chunk = 2;
    po.ordered = false;
    Collected c = RunProducer(ds, "random_resized_crop(24),to_tensor", po);
    ASSERT_TRUE(c.status.ok()) << c.status.ToString();
    EXPECT_EQ(c.stats.samples, 27u);
    for (const auto& labels : c.labels) seen.insert(labels.begin(), labels.end());
  }
  ASSERT_EQ(seen.size(), 54u);
  for (int64_t k = 0; k < 54; ++k) EXPECT_EQ(seen.count(k), 1u) << k;
}

TEST(ImageProducer, ReducedDecodeIsCloseToExactAndSameShaped) {
  test::TempDir root;
  // Large images shrunk a lot: where the scaled DCT pays.
  fs::create_directories(root.path() / "c");
  for (int i = 0; i < 12; ++i) {
    const int h = 375 + i * 7, w = 500 - i * 5;
    test::WriteFile(root / ("c/" + std::to_string(i) + ".jpg"),
                    test::EncodeJpeg(test::PhotoLike(h, w, 3, i), h, w, 3, 90));
  }
  std::shared_ptr<const Dataset> ds = ImageFolderDataset::Open(root.path().string()).value();
  for (const char* spec : {"random_resized_crop(64),to_tensor", "resize(72),center_crop(64),to_tensor"}) {
    ProducerOptions po;
    po.sampler.batch_size = 12;
    po.threads = 2;
    Collected exact = RunProducer(ds, spec, po);
    po.decode = DecodeMode::kReduced;
    Collected reduced = RunProducer(ds, spec, po);
    ASSERT_TRUE(exact.status.ok() && reduced.status.ok()) << reduced.status.ToString();
    ASSERT_EQ(exact.images[0].size(), reduced.images[0].size());
    double sum = 0, worst = 0;
    for (size_t i = 0; i < exact.images[0].size(); ++i) {
      const double d = std::fabs(exact.images[0][i] - reduced.images[0][i]) * 255.0;
      sum += d;
      worst = std::max(worst, d);
    }
    const double mean = sum / static_cast<double>(exact.images[0].size());
    std::printf("[ reduced ] %s: mean |reduced - exact| %.2f, max %.0f (uint8 steps)\n", spec, mean, worst);
    EXPECT_NE(exact.images[0], reduced.images[0]);  // it did decode smaller
    EXPECT_LT(mean, 3.0) << spec;
    EXPECT_EQ(exact.labels, reduced.labels);
  }
}

}  // namespace
}  // namespace datafeed
