// The libtorch adapter: tensors hold what the producer wrote (values, dtype,
// shape) over every transport, the transport memory is released exactly
// when the last tensor referencing it dies, and a short CPU training run on
// synthetic MNIST makes the loss fall.
#include "datafeed/torch/tensors.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <optional>
#include <thread>
#include <vector>

#include "datafeed/consumer/consumer.h"
#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/producer/transform.h"
#include "mnist_model.h"
#include "transport_kinds.h"

namespace datafeed {
namespace {

using namespace std::chrono_literals;
using testing::TestLayout;

// A temporary directory holding a synthetic MNIST training set.
class SyntheticMnist {
 public:
  SyntheticMnist(size_t count, uint64_t seed) {
    dir_ = std::filesystem::temp_directory_path() / testing::UniqueName("df-torch-mnist");
    std::filesystem::create_directories(dir_);
    Status st = WriteSyntheticMnist(dir_.string(), "train", count, seed);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  ~SyntheticMnist() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::shared_ptr<const Dataset> Open() const {
    return std::shared_ptr<const Dataset>(MnistDataset::OpenDir(dir_.string(), "train").value());
  }

 private:
  std::filesystem::path dir_;
};

// Runs a Producer on its own thread into `writer` and closes the stream at
// the end.
class ProducerThread {
 public:
  ProducerThread(std::shared_ptr<const Dataset> dataset, const std::string& spec,
                 ProducerOptions options, BatchWriter* writer)
      : writer_(writer) {
    producer_ = Producer::Make(std::move(dataset), Pipeline::Make(spec).value(), options, writer)
                    .value();
    thread_ = std::thread([this] {
      status_ = producer_->Run();
      (void)writer_->Close();
    });
  }
  ~ProducerThread() {
    producer_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  // Waits for Run() to end; its status.
  Status Join() {
    if (thread_.joinable()) thread_.join();
    return status_;
  }

 private:
  BatchWriter* writer_;
  std::unique_ptr<Producer> producer_;
  std::thread thread_;
  Status status_;
};

template <typename Kind>
class TorchTransportTest : public ::testing::Test {
 protected:
  // Opens the writer first; readers then open the endpoint it reports.
  std::unique_ptr<BatchWriter> Writer(size_t slots, size_t slot_bytes) {
    WriterOptions o;
    o.shm.slot_count = slots;
    o.shm.slot_bytes = slot_bytes;
    o.inproc_capacity = slots;
    auto w = OpenWriter(ParseEndpoint(Kind::WriterUri("torch")).value(), o);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    endpoint_ = ParseEndpoint((*w)->endpoint()).value();
    return std::move(w).value();
  }
  std::unique_ptr<BatchReader> Reader() {
    auto r = OpenReader(endpoint_, ReaderOptions{});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }
  Endpoint endpoint_;
};

TYPED_TEST_SUITE(TorchTransportTest, testing::TransportKinds);

TYPED_TEST(TorchTransportTest, TensorsHoldWhatTheProducerWrote) {
  SyntheticMnist mnist(300, 7);
  auto dataset = mnist.Open();
  const std::string spec = "to_tensor,normalize(0.1307,0.3081)";
  ProducerOptions po;
  po.sampler.batch_size = 64;  // 4 full batches and one of 44
  po.threads = 2;
  auto w = this->Writer(3, 1 << 20);
  auto c = Consumer::Open(this->endpoint_).value();
  ProducerThread producer(dataset, spec, po, w.get());

  const Pipeline pipeline = Pipeline::Make(spec).value();
  std::vector<uint8_t> raw(28 * 28);
  std::vector<float> expect(28 * 28);
  size_t seen = 0;
  for (BatchView& view : *c) {
    Result<TensorBatch> batch = ToTensors(view);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    at::Tensor image = batch->Get("image").value();
    at::Tensor label = batch->Get("label").value();
    const int64_t n = seen + 64 <= 300 ? 64 : 300 - static_cast<int64_t>(seen);
    EXPECT_EQ(image.scalar_type(), at::kFloat);
    EXPECT_EQ(image.sizes(), (std::vector<int64_t>{n, 1, 28, 28}));
    EXPECT_EQ(label.scalar_type(), at::kLong);
    EXPECT_EQ(label.sizes(), (std::vector<int64_t>{n}));
    EXPECT_TRUE(image.is_contiguous());
    EXPECT_FALSE(image.requires_grad());
    EXPECT_EQ(batch->num_samples(), n);
    EXPECT_EQ(batch->meta().first_index, seen);
    // Zero-copy: the tensor is the frame's memory.
    EXPECT_EQ(image.data_ptr(), static_cast<const void*>(view.Find("image")->data));
    for (int64_t i = 0; i < n; ++i) {
      int64_t want_label = 0;
      ASSERT_TRUE(dataset->Get(seen + i, raw.data(), &want_label).ok());
      ASSERT_TRUE(pipeline.Run(raw.data(), 28, 28, 1, expect.data(), SampleRng(0, 0, seen + i)).ok());
      EXPECT_EQ(label[i].item<int64_t>(), want_label) << "sample " << seen + i;
      at::Tensor want = at::from_blob(expect.data(), {1, 28, 28}, at::kFloat);
      EXPECT_TRUE(image[i].equal(want)) << "sample " << seen + i;
    }
    seen += n;
  }
  EXPECT_TRUE(c->status().IsEndOfStream()) << c->status().ToString();
  EXPECT_EQ(seen, 300u);
  EXPECT_TRUE(producer.Join().ok());
}

TYPED_TEST(TorchTransportTest, EveryDTypeKeepsItsValuesShapeAndType) {
  struct Case {
    DType dtype;
    at::ScalarType torch_dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {
      {DType::kUInt8, at::kByte, {3, 5}},       {DType::kInt8, at::kChar, {7}},
      {DType::kInt16, at::kShort, {2, 2, 2}},   {DType::kInt32, at::kInt, {4, 1}},
      {DType::kInt64, at::kLong, {3}},          {DType::kFloat16, at::kHalf, {2, 3}},
      {DType::kBFloat16, at::kBFloat16, {5}},   {DType::kFloat32, at::kFloat, {2, 1, 3, 2}},
      {DType::kFloat64, at::kDouble, {6}},      {DType::kBool, at::kBool, {9}},
      {DType::kFloat32, at::kFloat, {0, 4}},    // empty
      {DType::kInt64, at::kLong, {}},           // a scalar
  };
  std::vector<TensorSpec> specs;
  std::vector<at::Tensor> expected;
  for (size_t i = 0; i < cases.size(); ++i) {
    specs.push_back({"t" + std::to_string(i), cases[i].dtype, cases[i].shape});
    const int64_t numel = std::accumulate(cases[i].shape.begin(), cases[i].shape.end(), int64_t{1},
                                          std::multiplies<int64_t>());
    // Small integers with signs: exact in every dtype (bool: 0/1).
    at::Tensor v = (at::arange(numel, at::kDouble) * 3 - 7).remainder(100) - 50;
    if (cases[i].dtype == DType::kUInt8) v = v.abs();
    if (cases[i].dtype == DType::kBool) v = v.remainder(2);
    expected.push_back(v.reshape(cases[i].shape).to(cases[i].torch_dtype).contiguous());
  }
  auto layout = std::make_shared<const BatchLayout>(BatchLayout::Make(specs).value());
  auto w = this->Writer(2, 1 << 16);
  auto r = this->Reader();
  auto b = w->Loan(layout, Deadline::AfterMillis(5000)).value();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_EQ(static_cast<size_t>(expected[i].nbytes()), layout->nbytes(i));
    if (layout->nbytes(i) > 0) std::memcpy(b.data(i), expected[i].data_ptr(), layout->nbytes(i));
  }
  ASSERT_TRUE(w->Publish(std::move(b)).ok());
  BatchView view = r->Next(Deadline::AfterMillis(5000)).value();
  Result<TensorBatch> batch = ToTensors(view);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(std::string(DTypeName(cases[i].dtype)) + " " + batch->name(i));
    const at::Tensor& got = batch->tensor(i);
    EXPECT_EQ(batch->name(i), "t" + std::to_string(i));
    EXPECT_EQ(got.scalar_type(), cases[i].torch_dtype);
    EXPECT_EQ(got.sizes(), at::IntArrayRef(cases[i].shape));
    EXPECT_TRUE(got.equal(expected[i]));
    EXPECT_EQ(ToTensor(view, batch->name(i)).value().scalar_type(), cases[i].torch_dtype);
  }
}

TYPED_TEST(TorchTransportTest, SlotIsReleasedExactlyWhenTheLastTensorDies) {
  // Two slots, both published and read. On transports whose views pin the
  // producer's memory, a Loan succeeds only once a slot is given back; on
  // every transport the batch's keepalive must die with the last tensor.
  constexpr bool kPins = TypeParam::kViewsPinProducerMemory;
  auto w = this->Writer(2, 1 << 16);
  auto r = this->Reader();
  auto layout = TestLayout(4, 64);
  for (uint64_t id = 0; id < 2; ++id) {
    auto b = w->Loan(layout, Deadline::AfterMillis(5000)).value();
    testing::FillBatch(b, id);
    ASSERT_TRUE(w->Publish(std::move(b)).ok());
  }
  auto full = [&] {
    return !kPins ||
           w->Loan(layout, Deadline::After(30ms)).status().code() == StatusCode::kDeadlineExceeded;
  };
  std::optional<BatchView> v0 = r->Next(Deadline::AfterMillis(5000)).value();
  std::optional<BatchView> v1 = r->Next(Deadline::AfterMillis(5000)).value();
  std::weak_ptr<void> memory0 = v0->keepalive();
  std::weak_ptr<void> memory1 = v1->keepalive();
  ASSERT_FALSE(memory0.expired());
  ASSERT_TRUE(full());

  // Batch 0: the memory outlives the view, the batch, the tensor and a view
  // of the tensor, and is freed when that last one goes.
  std::optional<TensorBatch> tensors = ToTensors(*v0).value();
  v0.reset();
  EXPECT_FALSE(memory0.expired());
  EXPECT_TRUE(full());
  at::Tensor payload = tensors->Get("payload").value();
  tensors.reset();
  EXPECT_FALSE(memory0.expired());
  EXPECT_TRUE(full());
  at::Tensor row = payload[1];  // shares the storage
  payload.reset();
  EXPECT_FALSE(memory0.expired());
  EXPECT_TRUE(full());
  EXPECT_EQ(row.size(0), 64);
  EXPECT_EQ(row[0].item<uint8_t>(), testing::PatternByte(0, 64));  // still readable
  row.reset();
  EXPECT_TRUE(memory0.expired());
  std::optional<WritableBatch> freed;
  if (kPins) {
    auto loan = w->Loan(layout, Deadline::AfterMillis(5000));
    ASSERT_TRUE(loan.ok()) << loan.status().ToString();
    freed = std::move(loan).value();  // holds the free slot; batch 1 the other
  }

  // Batch 1: a clone holds no transport memory.
  EXPECT_TRUE(full());
  at::Tensor label = ToTensor(*v1, "label").value();
  at::Tensor copy = label.clone();
  v1.reset();
  EXPECT_FALSE(memory1.expired());
  EXPECT_TRUE(full());
  label.reset();
  EXPECT_TRUE(memory1.expired());
  if (kPins) {
    auto again = w->Loan(layout, Deadline::AfterMillis(5000));
    EXPECT_TRUE(again.ok()) << again.status().ToString();
  }
  EXPECT_EQ(copy[3].item<int64_t>(), 1000 + 3);
}

// A split pipeline ('|'): the producer sends uint8, the adapter finishes it
// into exactly the floats the unsplit pipeline gives, on every transport.
TYPED_TEST(TorchTransportTest, SplitPipelineGivesTheUnsplitFloatsInAQuarterOfTheBytes) {
  SyntheticMnist mnist(200, 11);
  auto dataset = mnist.Open();
  const std::string split_spec = "random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)";
  const std::string unsplit_spec = "random_crop(28,2),to_tensor,normalize(0.1307,0.3081)";
  ProducerOptions po;
  po.sampler.batch_size = 64;
  po.sampler.seed = 5;
  po.threads = 2;
  auto w = this->Writer(3, 1 << 20);
  auto c = Consumer::Open(this->endpoint_).value();
  ProducerThread producer(dataset, split_spec, po, w.get());

  const Pipeline unsplit = Pipeline::Make(unsplit_spec).value();
  const size_t float_frame = BatchLayout::Make({{"image", DType::kFloat32, {64, 1, 28, 28}},
                                                {"label", DType::kInt64, {64}}})
                                 ->frame_bytes();
  std::vector<uint8_t> raw(28 * 28);
  std::vector<float> expect(28 * 28);
  size_t seen = 0;
  for (BatchView& view : *c) {
    const TensorView* wire = view.Find("image");
    ASSERT_NE(wire, nullptr);
    EXPECT_EQ(wire->dtype, DType::kUInt8);
    EXPECT_EQ(wire->finish, "to_tensor,normalize(0.1307,0.3081)");
    const int64_t n = wire->shape[0];
    if (n == 64) {
      // What crosses the transport (and the gRPC wire): the whole frame.
      EXPECT_LT(static_cast<double>(view.frame().size()), float_frame / 3.8)
          << view.frame().size() << " vs " << float_frame;
    }

    // Default: finished, float32, the unsplit values bit for bit.
    Result<TensorBatch> batch = ToTensors(view);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    at::Tensor image = batch->Get("image").value();
    EXPECT_EQ(image.scalar_type(), at::kFloat);
    EXPECT_EQ(image.sizes(), (std::vector<int64_t>{n, 1, 28, 28}));
    EXPECT_TRUE(batch->finish(0).empty());
    for (int64_t i = 0; i < n; ++i) {
      int64_t label = 0;
      ASSERT_TRUE(dataset->Get(seen + i, raw.data(), &label).ok());
      ASSERT_TRUE(unsplit.Run(raw.data(), 28, 28, 1, expect.data(), SampleRng(5, 0, seen + i)).ok());
      at::Tensor want = at::from_blob(expect.data(), {1, 28, 28}, at::kFloat);
      EXPECT_TRUE(image[i].equal(want)) << "sample " << seen + i;
      EXPECT_EQ(batch->Get("label").value()[i].item<int64_t>(), label);
    }

    // finish = false: the zero-copy uint8 tensor and its finish, to run later
    // (on any device; a strided view takes the device path: table lookup).
    Result<TensorBatch> rawbatch = ToTensors(view, ToTensorsOptions{false});
    ASSERT_TRUE(rawbatch.ok()) << rawbatch.status().ToString();
    at::Tensor u8 = rawbatch->Get("image").value();
    EXPECT_EQ(u8.scalar_type(), at::kByte);
    EXPECT_EQ(u8.data_ptr(), static_cast<const void*>(wire->data));
    EXPECT_EQ(rawbatch->finish(0), wire->finish);
    Result<TensorBatch> later = FinishTensors(rawbatch.value());
    ASSERT_TRUE(later.ok()) << later.status().ToString();
    EXPECT_TRUE(later->Get("image").value().equal(image));
    EXPECT_TRUE(later->finish(0).empty());
    Result<at::Tensor> strided = FinishTensor(u8.transpose(2, 3), rawbatch->finish(0));
    ASSERT_TRUE(strided.ok()) << strided.status().ToString();
    EXPECT_TRUE(strided->transpose(2, 3).equal(image));
    seen += static_cast<size_t>(n);
  }
  EXPECT_TRUE(c->status().IsEndOfStream()) << c->status().ToString();
  EXPECT_EQ(seen, 200u);
  EXPECT_TRUE(producer.Join().ok());
}

TEST(TorchAdapter, FinishTensorMatchesTheProducerOnEveryPathAndRefusesBadInput) {
  const std::string spec = "to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)";
  at::Tensor u8 = at::randint(0, 256, {4, 3, 5, 7}, at::TensorOptions().dtype(at::kByte));
  Result<at::Tensor> direct = FinishTensor(u8, spec);
  ASSERT_TRUE(direct.ok()) << direct.status().ToString();
  const Finish finish = Finish::Parse(spec).value();
  auto acc = u8.accessor<uint8_t, 4>();
  auto out = direct->accessor<float, 4>();
  for (int64_t b = 0; b < 4; ++b)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t y = 0; y < 5; ++y)
        for (int64_t x = 0; x < 7; ++x) ASSERT_EQ(out[b][ch][y][x], finish.table(ch)[acc[b][ch][y][x]]);
  // The table-lookup path (what a GPU runs) gives the same bits.
  Result<at::Tensor> looked_up = FinishTensor(u8.transpose(2, 3), spec);
  ASSERT_TRUE(looked_up.ok()) << looked_up.status().ToString();
  EXPECT_TRUE(looked_up->transpose(2, 3).equal(*direct));

  EXPECT_FALSE(FinishTensor(u8.to(at::kFloat), spec).ok());
  EXPECT_FALSE(FinishTensor(u8[0][0], spec).ok());                      // rank 2
  EXPECT_FALSE(FinishTensor(u8.narrow(1, 0, 1), spec).ok());            // 1 channel, 3 tables
  Status st = FinishTensor(u8, "to_tensor,gaussian_blur(3)").status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("gaussian_blur"), std::string::npos) << st.message();
}

TEST(TorchAdapter, TorchDTypeMapsEveryDTypeAndRejectsUnknownValues) {
  for (int d = 1; d <= 10; ++d) {
    auto t = TorchDType(static_cast<DType>(d));
    ASSERT_TRUE(t.ok()) << d;
    EXPECT_EQ(c10::elementSize(*t), DTypeSize(static_cast<DType>(d))) << DTypeName(static_cast<DType>(d));
  }
  EXPECT_EQ(TorchDType(static_cast<DType>(0)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TorchDType(static_cast<DType>(42)).status().code(), StatusCode::kInvalidArgument);
}

TEST(TorchAdapter, MissingNamesAndForeignTensorsAreErrors) {
  auto w = OpenWriter(ParseEndpoint(testing::InProcKind::WriterUri("names")).value(), WriterOptions{})
               .value();
  auto r = OpenReader(ParseEndpoint(w->endpoint()).value(), ReaderOptions{}).value();
  auto b = w->Loan(TestLayout(2, 8), Deadline::AfterMillis(5000)).value();
  testing::FillBatch(b, 1);
  ASSERT_TRUE(w->Publish(std::move(b)).ok());
  BatchView view = r->Next(Deadline::AfterMillis(5000)).value();

  auto missing = ToTensor(view, "image");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("'label', 'payload'"), std::string::npos)
      << missing.status().ToString();
  TensorBatch batch = ToTensors(view).value();
  EXPECT_EQ(batch.Get("image").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(batch.Find("image"), nullptr);
  EXPECT_NE(batch.Find("label"), nullptr);
  EXPECT_EQ(batch.Add("label", at::zeros({2})).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(batch.Add("x", at::Tensor()).code(), StatusCode::kInvalidArgument);

  // A TensorView from elsewhere is refused, not wrapped.
  std::vector<uint8_t> other(8);
  TensorView foreign{"x", DType::kUInt8, {8}, other.data(), 8};
  EXPECT_EQ(ToTensor(view, foreign).status().code(), StatusCode::kInvalidArgument);
}

TEST(TorchAdapter, ToDeviceCpuStaysZeroCopyAndCudaNeedsCuda) {
  auto w = OpenWriter(ParseEndpoint(testing::InProcKind::WriterUri("dev")).value(), WriterOptions{})
               .value();
  auto r = OpenReader(ParseEndpoint(w->endpoint()).value(), ReaderOptions{}).value();
  auto b = w->Loan(TestLayout(4, 16), Deadline::AfterMillis(5000)).value();
  testing::FillBatch(b, 2);
  ASSERT_TRUE(w->Publish(std::move(b)).ok());
  BatchView view = r->Next(Deadline::AfterMillis(5000)).value();
  TensorBatch batch = ToTensors(view).value();

  auto cpu = ToDevice(batch, DeviceOptions{});
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  EXPECT_EQ(cpu->tensor(0).data_ptr(), batch.tensor(0).data_ptr());

  DeviceOptions cuda;
  cuda.device = c10::Device(c10::DeviceType::CUDA, 0);
  auto on_gpu = ToDevice(batch, cuda);
  if (CudaAvailable()) {
    ASSERT_TRUE(on_gpu.ok()) << on_gpu.status().ToString();
    EXPECT_TRUE(on_gpu->tensor(0).is_cuda());
    EXPECT_TRUE(on_gpu->tensor(1).cpu().equal(batch.tensor(1)));
  } else {
    EXPECT_EQ(on_gpu.status().code(), StatusCode::kUnavailable) << on_gpu.status().ToString();
  }
  DeviceOptions odd;
  odd.device = c10::Device(c10::DeviceType::Meta);
  EXPECT_EQ(ToDevice(batch, odd).status().code(), StatusCode::kInvalidArgument);
}

TEST(TorchTraining, LossFallsOnSyntheticMnist) {
  // Small on purpose: with Debian's libtorch (reference BLAS) a step of this
  // network costs ~6 ms per sample here.
  constexpr int kBatch = 16;
  constexpr int kSteps = 30;
  // One intra-op thread: with other processes on the cores, OpenMP's
  // barriers make two threads several times slower here, not faster.
  at::set_num_threads(1);
  SyntheticMnist mnist(kBatch * kSteps, 3);
  auto w = OpenWriter(ParseEndpoint(testing::InProcKind::WriterUri("train")).value(), WriterOptions{})
               .value();
  ProducerOptions po;
  po.sampler.batch_size = kBatch;
  po.sampler.shuffle = true;
  po.sampler.seed = 5;
  po.threads = 1;
  auto c = Consumer::Open(ParseEndpoint(w->endpoint()).value()).value();
  ProducerThread producer(mnist.Open(), "to_tensor,normalize(0.1307,0.3081)", po, w.get());

  examples::MnistModel model(c10::Device(c10::DeviceType::CPU), 1);
  std::vector<float> losses;
  for (BatchView& view : *c) {
    TensorBatch batch = ToTensors(view).value();
    losses.push_back(
        model.TrainStep(batch.Get("image").value(), batch.Get("label").value()).item<float>());
  }
  EXPECT_TRUE(c->status().IsEndOfStream()) << c->status().ToString();
  ASSERT_EQ(losses.size(), static_cast<size_t>(kSteps));
  const double first = std::accumulate(losses.begin(), losses.begin() + 5, 0.0) / 5;
  const double last = std::accumulate(losses.end() - 5, losses.end(), 0.0) / 5;
  // Untrained, the loss is about ln(10) = 2.3.
  EXPECT_GT(first, 1.8);
  EXPECT_LT(last, 0.8 * first) << "first 5 steps " << first << ", last 5 " << last;
}

}  // namespace
}  // namespace datafeed
