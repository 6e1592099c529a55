#include "datafeed/transport/frame.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "datafeed/schemas/batch_generated.h"

namespace datafeed {
namespace {

constexpr int64_t kBatch = 8;
constexpr size_t kImageBytes = kBatch * 28 * 28 * sizeof(float);
constexpr size_t kLabelBytes = kBatch * sizeof(int64_t);

BatchLayout MnistLayout() {
  auto layout = BatchLayout::Make(
      {{"image", DType::kFloat32, {kBatch, 1, 28, 28}}, {"label", DType::kInt64, {kBatch}}});
  EXPECT_TRUE(layout.ok()) << layout.status().ToString();
  return std::move(layout).value();
}

size_t AlignUp64(size_t n) { return (n + 63) / 64 * 64; }

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedFrame = std::unique_ptr<uint8_t[], FreeDeleter>;

AlignedFrame AllocFrame(size_t bytes) {
  return AlignedFrame(static_cast<uint8_t*>(std::aligned_alloc(kFrameAlignment, AlignUp64(bytes))));
}

// A header with arbitrary field values, for frames BatchLayout refuses to make.
struct RawTensor {
  std::string name;
  uint8_t dtype = 0;
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t nbytes = 0;
  std::string finish;  // written only when non-empty, as BatchLayout does
};

struct RawHeader {
  std::string identifier = "DFB1";
  uint16_t version = kFrameVersion;
  BatchMeta meta;
  std::vector<RawTensor> tensors;
  uint64_t frame_bytes = 0;
};

RawHeader RawFromLayout(const BatchLayout& layout) {
  RawHeader h;
  for (size_t i = 0; i < layout.num_tensors(); ++i) {
    const TensorSpec& spec = layout.spec(i);
    h.tensors.push_back(
        {spec.name, static_cast<uint8_t>(spec.dtype), spec.shape, layout.offset(i), layout.nbytes(i),
         spec.finish});
  }
  h.frame_bytes = layout.frame_bytes();
  return h;
}

// Serializes `h` the way BatchLayout does (so its size matches a layout with
// the same names and shapes), zero-padded to `total` bytes.
std::vector<uint8_t> BuildFrame(const RawHeader& h, size_t total) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
  for (const RawTensor& t : h.tensors) {
    const auto name = fbb.CreateString(t.name);
    const auto shape = fbb.CreateVector(t.shape);
    const auto finish = t.finish.empty() ? flatbuffers::Offset<flatbuffers::String>() : fbb.CreateString(t.finish);
    tensors.push_back(
        fb::CreateTensor(fbb, name, static_cast<fb::DType>(t.dtype), shape, t.offset, t.nbytes, finish));
  }
  const fb::BatchMeta meta(h.meta.sequence, h.meta.first_index, h.meta.producer_id, h.meta.epoch,
                           h.meta.flags, h.meta.fingerprint, h.meta.batch_index, h.meta.shard,
                           h.meta.num_shards, h.meta.attempt, 0);
  const auto root = fb::CreateBatchHeader(fbb, h.version, &meta, fbb.CreateVector(tensors), h.frame_bytes);
  fbb.FinishSizePrefixed(root, h.identifier.c_str());
  std::vector<uint8_t> frame(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  frame.resize(std::max(total, AlignUp64(frame.size())), 0);
  return frame;
}

Result<FrameView> Parse(const std::vector<uint8_t>& frame) { return ParseFrame(frame.data(), frame.size()); }

::testing::AssertionResult IsDataLoss(const Result<FrameView>& r, const std::string& substring) {
  if (r.ok()) {
    return ::testing::AssertionFailure() << "parsed OK, expected DataLoss containing \"" << substring << "\"";
  }
  const Status s = r.status();
  if (s.code() != StatusCode::kDataLoss) {
    return ::testing::AssertionFailure() << "wrong code: " << s.ToString();
  }
  if (s.message().rfind("frame: ", 0) != 0) {
    return ::testing::AssertionFailure() << "message lacks the 'frame: ' prefix: " << s.message();
  }
  if (s.message().find(substring) == std::string::npos) {
    return ::testing::AssertionFailure() << "message \"" << s.message() << "\" lacks \"" << substring << "\"";
  }
  return ::testing::AssertionSuccess();
}

// What must hold for any frame ParseFrame accepts, however it was made.
::testing::AssertionResult ViewIsInBounds(const FrameView& view, const uint8_t* data, size_t size) {
  if (view.data() != data || view.size() > size) return ::testing::AssertionFailure() << "frame out of range";
  for (const TensorView& t : view.tensors()) {
    const size_t offset = static_cast<size_t>(t.data - data);
    if (t.data < data || offset > size || t.nbytes > size - offset || offset % kFrameAlignment != 0 ||
        t.name.empty()) {
      return ::testing::AssertionFailure()
             << "tensor out of range: offset " << offset << " nbytes " << t.nbytes;
    }
  }
  return ::testing::AssertionSuccess();
}

// A valid MNIST frame with a recognizable payload, in exact-size heap memory
// so that ASan flags any read past its end.
std::vector<uint8_t> ValidFrame(const BatchLayout& layout, const BatchMeta& meta = {}) {
  std::vector<uint8_t> frame(layout.frame_bytes(), 0xAB);
  layout.WriteHeader(frame.data(), meta);
  return frame;
}

TEST(DTypeTest, SizesAndNamesRoundTrip) {
  const struct {
    DType dtype;
    size_t size;
    const char* name;
  } kCases[] = {
      {DType::kUInt8, 1, "uint8"},       {DType::kInt8, 1, "int8"},       {DType::kInt16, 2, "int16"},
      {DType::kInt32, 4, "int32"},       {DType::kInt64, 8, "int64"},     {DType::kFloat16, 2, "float16"},
      {DType::kBFloat16, 2, "bfloat16"}, {DType::kFloat32, 4, "float32"}, {DType::kFloat64, 8, "float64"},
      {DType::kBool, 1, "bool"},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(DTypeSize(c.dtype), c.size) << c.name;
    EXPECT_STREQ(DTypeName(c.dtype), c.name);
    auto parsed = DTypeFromName(c.name);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(*parsed, c.dtype);
  }
  EXPECT_EQ(DTypeSize(static_cast<DType>(0)), 0u);
  EXPECT_EQ(DTypeSize(static_cast<DType>(11)), 0u);
  EXPECT_STREQ(DTypeName(static_cast<DType>(200)), "unknown");
  EXPECT_EQ(DTypeOf<float>(), DType::kFloat32);
  EXPECT_EQ(DTypeOf<int64_t>(), DType::kInt64);
}

TEST(DTypeTest, FromNameRejectsUnknownNames) {
  for (const char* name : {"", "float", "Float32", "unknown", "int64 "}) {
    auto parsed = DTypeFromName(name);
    ASSERT_FALSE(parsed.ok()) << name;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find("float32"), std::string::npos) << parsed.status().message();
  }
}

TEST(BatchLayoutTest, OffsetsAreAlignedAndInSpecOrder) {
  const BatchLayout layout = MnistLayout();
  ASSERT_EQ(layout.num_tensors(), 2u);
  EXPECT_EQ(layout.spec(0).name, "image");
  EXPECT_EQ(layout.spec(1).name, "label");
  EXPECT_GT(layout.header_bytes(), 0u);
  EXPECT_EQ(layout.header_bytes() % 64, 0u);
  EXPECT_EQ(layout.offset(0), layout.header_bytes());
  EXPECT_EQ(layout.nbytes(0), kImageBytes);
  EXPECT_EQ(layout.offset(1), layout.header_bytes() + kImageBytes);  // 25088 is a multiple of 64
  EXPECT_EQ(layout.nbytes(1), kLabelBytes);
  EXPECT_EQ(layout.frame_bytes(), layout.offset(1) + 64);
  EXPECT_EQ(layout.IndexOf("image"), 0);
  EXPECT_EQ(layout.IndexOf("label"), 1);
  EXPECT_EQ(layout.IndexOf("imag"), -1);
  EXPECT_EQ(layout.IndexOf(""), -1);
}

TEST(BatchLayoutTest, PadsUnalignedPayloadsTo64Bytes) {
  auto layout =
      BatchLayout::Make({{"a", DType::kUInt8, {3}}, {"b", DType::kInt16, {5}}, {"c", DType::kBool, {}}});
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  const size_t h = layout->header_bytes();
  EXPECT_EQ(layout->offset(0), h);
  EXPECT_EQ(layout->offset(1), h + 64);
  EXPECT_EQ(layout->nbytes(1), 10u);
  EXPECT_EQ(layout->offset(2), h + 128);
  EXPECT_EQ(layout->nbytes(2), 1u);
  EXPECT_EQ(layout->frame_bytes(), h + 192);
}

TEST(BatchLayoutTest, MakeRejectsBadSpecs) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const struct {
    std::vector<TensorSpec> specs;
    const char* message;
  } kCases[] = {
      {{{"", DType::kUInt8, {1}}}, "tensor 0 has an empty name"},
      {{{"x", DType::kUInt8, {1}}, {"y", DType::kUInt8, {1}}, {"x", DType::kInt8, {2}}}, "'x' appears twice"},
      {{{"x", static_cast<DType>(0), {1}}}, "'x' has unknown dtype 0"},
      {{{"x", static_cast<DType>(42), {1}}}, "'x' has unknown dtype 42"},
      {{{"x", DType::kFloat32, {4, -1}}}, "'x' has negative dimension -1 at axis 1"},
      {{{"x", DType::kFloat32, {int64_t{1} << 62}}},
       "'x' of shape [4611686018427387904] float32 is more than 2^64"},
      {{{"x", DType::kUInt8, {1 << 30, 1 << 30, 1 << 30}}}, "is more than 2^64"},
      {{{"x", DType::kUInt8, {kMax}}, {"y", DType::kUInt8, {kMax}}},
       "the tensors up to 'y' add up to more than 2^64"},
      {{{"x", DType::kUInt8, {kMax, 2}}}, "more than 2^64 bytes"},
  };
  for (const auto& c : kCases) {
    auto layout = BatchLayout::Make(c.specs);
    ASSERT_FALSE(layout.ok()) << c.message;
    EXPECT_EQ(layout.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(layout.status().message().find(c.message), std::string::npos)
        << layout.status().message() << " lacks " << c.message;
  }
}

TEST(BatchLayoutTest, EmptyScalarAndZeroSizedTensors) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto layout = BatchLayout::Make({{"empty", DType::kFloat32, {kMax, kMax, 0}},
                                   {"scalar", DType::kFloat64, {}},
                                   {"none", DType::kInt32, {3, 0}}});
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->nbytes(0), 0u);
  EXPECT_EQ(layout->nbytes(1), 8u);
  EXPECT_EQ(layout->offset(0), layout->offset(1));
  EXPECT_EQ(layout->nbytes(2), 0u);

  AlignedFrame frame = AllocFrame(layout->frame_bytes());
  layout->WriteHeader(frame.get(), {});
  auto view = ParseFrame(frame.get(), layout->frame_bytes());
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->Find("empty")->numel(), 0);
  EXPECT_EQ(view->Find("scalar")->numel(), 1);
  EXPECT_EQ(view->Find("scalar")->nbytes, 8u);
  EXPECT_EQ(view->Find("none")->numel(), 0);

  auto no_tensors = BatchLayout::Make({});
  ASSERT_TRUE(no_tensors.ok()) << no_tensors.status().ToString();
  EXPECT_EQ(no_tensors->frame_bytes(), no_tensors->header_bytes());
  std::vector<uint8_t> bare(no_tensors->frame_bytes());
  no_tensors->WriteHeader(bare.data(), {});
  auto bare_view = Parse(bare);
  ASSERT_TRUE(bare_view.ok()) << bare_view.status().ToString();
  EXPECT_EQ(bare_view->num_tensors(), 0u);
}

TEST(FrameTest, RoundTrip) {
  const BatchLayout layout = MnistLayout();
  AlignedFrame frame = AllocFrame(layout.frame_bytes());
  const BatchMeta meta{/*sequence=*/42, /*first_index=*/8192, /*producer_id=*/0xFEEDFACECAFEBEEFull,
                       /*epoch=*/3, /*flags=*/0};
  layout.WriteHeader(frame.get(), meta);
  auto* image = reinterpret_cast<float*>(frame.get() + layout.offset(0));
  for (size_t i = 0; i < kImageBytes / sizeof(float); ++i) image[i] = static_cast<float>(i) * 0.5f;
  auto* label = reinterpret_cast<int64_t*>(frame.get() + layout.offset(1));
  for (int64_t i = 0; i < kBatch; ++i) label[i] = 9 - i;

  auto view = ParseFrame(frame.get(), layout.frame_bytes());
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->data(), frame.get());
  EXPECT_EQ(view->size(), layout.frame_bytes());
  EXPECT_EQ(view->meta().sequence, 42u);
  EXPECT_EQ(view->meta().first_index, 8192u);
  EXPECT_EQ(view->meta().producer_id, 0xFEEDFACECAFEBEEFull);
  EXPECT_EQ(view->meta().epoch, 3u);
  EXPECT_EQ(view->meta().flags, 0u);
  ASSERT_EQ(view->num_tensors(), 2u);

  const TensorView& img = view->tensor(0);
  EXPECT_EQ(img.name, "image");
  EXPECT_EQ(img.dtype, DType::kFloat32);
  EXPECT_EQ(img.shape, (std::vector<int64_t>{kBatch, 1, 28, 28}));
  EXPECT_EQ(img.numel(), kBatch * 28 * 28);
  EXPECT_EQ(img.nbytes, kImageBytes);
  EXPECT_EQ(img.data, frame.get() + layout.offset(0));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(img.data) % 64, 0u);
  ASSERT_NE(img.as<float>(), nullptr);
  EXPECT_EQ(img.as<int64_t>(), nullptr);
  EXPECT_EQ(img.as<float>()[0], 0.0f);
  EXPECT_EQ(img.as<float>()[6271], 3135.5f);

  const TensorView& lbl = view->tensor(1);
  EXPECT_EQ(lbl.name, "label");
  EXPECT_EQ(lbl.dtype, DType::kInt64);
  EXPECT_EQ(lbl.shape, (std::vector<int64_t>{kBatch}));
  EXPECT_EQ(lbl.nbytes, kLabelBytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(lbl.data) % 64, 0u);
  ASSERT_NE(lbl.as<int64_t>(), nullptr);
  EXPECT_EQ(lbl.as<double>(), nullptr);
  EXPECT_EQ(lbl.as<int64_t>()[0], 9);
  EXPECT_EQ(lbl.as<int64_t>()[7], 2);

  EXPECT_EQ(view->Find("label"), &view->tensor(1));
  EXPECT_EQ(view->Find("image"), &view->tensor(0));
  EXPECT_EQ(view->Find("labels"), nullptr);
  EXPECT_EQ(view->Find(""), nullptr);
}

TEST(FrameTest, WriteHeaderTouchesOnlyTheHeader) {
  const BatchLayout layout = MnistLayout();
  std::vector<uint8_t> frame(layout.frame_bytes(), 0xAB);
  layout.WriteHeader(frame.data(), {});
  for (size_t i = layout.header_bytes(); i < frame.size(); ++i) ASSERT_EQ(frame[i], 0xAB) << "byte " << i;
  // The padding after the flatbuffer is zeros, not whatever was in the slot.
  uint32_t prefix = 0;
  std::memcpy(&prefix, frame.data(), 4);
  ASSERT_LE(4 + prefix, layout.header_bytes());
  EXPECT_GT(4 + prefix + 64, layout.header_bytes());
  for (size_t i = 4 + prefix; i < layout.header_bytes(); ++i) EXPECT_EQ(frame[i], 0) << "byte " << i;
}

TEST(FrameTest, UpdateMetaRewritesOnlyTheMetadata) {
  const BatchLayout layout = MnistLayout();
  std::vector<uint8_t> frame = ValidFrame(layout, {1, 2, 3, 4, 0});
  const std::vector<uint8_t> before = frame;
  const BatchMeta meta{std::numeric_limits<uint64_t>::max(), 1ull << 40, 7,
                       std::numeric_limits<uint32_t>::max(), 5};
  BatchLayout::UpdateMeta(frame.data(), meta);

  size_t changed = 0;
  size_t first = frame.size(), last = 0;
  for (size_t i = 0; i < frame.size(); ++i) {
    if (frame[i] != before[i]) {
      ++changed;
      first = std::min(first, i);
      last = std::max(last, i);
    }
  }
  EXPECT_GT(changed, 0u);
  EXPECT_LT(last - first, sizeof(fb::BatchMeta)) << "UpdateMeta wrote outside the meta struct";

  auto view = Parse(frame);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->meta().sequence, meta.sequence);
  EXPECT_EQ(view->meta().first_index, meta.first_index);
  EXPECT_EQ(view->meta().producer_id, meta.producer_id);
  EXPECT_EQ(view->meta().epoch, meta.epoch);
  EXPECT_EQ(view->meta().flags, meta.flags);

  // The same bytes as writing the header with that meta in the first place.
  std::vector<uint8_t> direct = ValidFrame(layout, meta);
  EXPECT_EQ(frame, direct);
}

TEST(FrameTest, AcceptsAFrameInsideALargerSlot) {
  const BatchLayout layout = MnistLayout();
  std::vector<uint8_t> slot(layout.frame_bytes() + 4096, 0);
  layout.WriteHeader(slot.data(), {9, 0, 0, 0, 0});
  auto view = Parse(slot);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->size(), layout.frame_bytes());
  EXPECT_EQ(view->meta().sequence, 9u);
}

TEST(FrameTest, ParseNeverTouchesPayloadBytes) {
  const BatchLayout layout = MnistLayout();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  ASSERT_LT(layout.header_bytes(), page);
  const size_t mapped = (layout.frame_bytes() + page - 1) / page * page;
  void* mem = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* frame = static_cast<uint8_t*>(mem);
  layout.WriteHeader(frame, {});
  // Everything past the first page faults if read.
  ASSERT_EQ(mprotect(frame + page, mapped - page, PROT_NONE), 0);
  auto view = ParseFrame(frame, layout.frame_bytes());
  EXPECT_TRUE(view.ok()) << view.status().ToString();
  munmap(mem, mapped);
}

TEST(FrameTest, RawHeaderHelperMatchesBatchLayout) {
  const BatchLayout layout = MnistLayout();
  const std::vector<uint8_t> raw = BuildFrame(RawFromLayout(layout), layout.frame_bytes());
  ASSERT_EQ(raw.size(), layout.frame_bytes());
  uint32_t raw_prefix = 0, layout_prefix = 0;
  std::memcpy(&raw_prefix, raw.data(), 4);
  const std::vector<uint8_t> valid = ValidFrame(layout);
  std::memcpy(&layout_prefix, valid.data(), 4);
  EXPECT_EQ(raw_prefix, layout_prefix);
  auto view = Parse(raw);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->tensor(1).data, raw.data() + layout.offset(1));
}

TEST(FrameTest, RejectsEveryTruncation) {
  const BatchLayout layout = MnistLayout();
  const std::vector<uint8_t> frame = ValidFrame(layout);
  uint32_t prefix = 0;
  std::memcpy(&prefix, frame.data(), 4);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= layout.header_bytes(); ++n) lengths.push_back(n);
  for (size_t n : {layout.header_bytes() + 1, layout.offset(1), layout.frame_bytes() - 1})
    lengths.push_back(n);
  for (size_t n : lengths) {
    const std::vector<uint8_t> truncated(frame.begin(), frame.begin() + n);
    const char* expected = n < 4            ? "cannot hold the header's size prefix"
                           : n < 4 + prefix ? "follow its size prefix"
                                            : "bytes were given";
    EXPECT_TRUE(IsDataLoss(Parse(truncated), expected)) << "length " << n;
  }
  EXPECT_TRUE(IsDataLoss(ParseFrame(nullptr, 0), "0 bytes cannot hold"));
}

TEST(FrameTest, RejectsSizePrefixPastTheBuffer) {
  const BatchLayout layout = MnistLayout();
  std::vector<uint8_t> frame = ValidFrame(layout);
  const uint32_t huge = 0xFFFFFFFF;
  std::memcpy(frame.data(), &huge, 4);
  EXPECT_TRUE(IsDataLoss(Parse(frame), "the header claims 4294967295 bytes"));
}

TEST(FrameTest, RejectsAHeaderTheVerifierRefuses) {
  const BatchLayout layout = MnistLayout();
  std::vector<uint8_t> frame = ValidFrame(layout);
  const uint32_t root = 0x7FFFFFF0;  // root table offset far outside the header
  std::memcpy(frame.data() + 4, &root, 4);
  EXPECT_TRUE(IsDataLoss(Parse(frame), "failed flatbuffers verification"));
}

TEST(FrameTest, RejectsBadIdentifier) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.identifier = "XYZ1";
  EXPECT_TRUE(
      IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "file identifier is 'XYZ1', expected 'DFB1'"));

  std::vector<uint8_t> frame = ValidFrame(layout);
  frame[8] = 0x00;
  frame[11] = 0xFF;
  EXPECT_TRUE(IsDataLoss(Parse(frame), "file identifier is '\\x00FB\\xff'"));
}

TEST(FrameTest, RejectsBadVersion) {
  const BatchLayout layout = MnistLayout();
  for (uint16_t version : {0, 1, 3, 0xFFFF}) {
    RawHeader h = RawFromLayout(layout);
    h.version = version;
    EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                           "header version " + std::to_string(version) + " is not supported"));
  }
}

TEST(FrameTest, RejectsUnknownDType) {
  const BatchLayout layout = MnistLayout();
  for (uint8_t dtype : {0, 11, 255}) {
    RawHeader h = RawFromLayout(layout);
    h.tensors[1].dtype = dtype;
    EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                           "tensor 'label' has unknown dtype " + std::to_string(dtype)));
  }
}

TEST(FrameTest, RejectsNegativeDimension) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.tensors[0].shape = {-8, -1, 28, 28};  // multiplies out to the right size
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                         "tensor 'image' has negative dimension -8 at axis 0"));
  h.tensors[0].shape = {8, 1, 28, std::numeric_limits<int64_t>::min()};
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "at axis 3"));
}

TEST(FrameTest, RejectsNbytesThatDoNotMatchTheShape) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.tensors[0].nbytes = kImageBytes - 4;
  EXPECT_TRUE(IsDataLoss(
      Parse(BuildFrame(h, layout.frame_bytes())),
      "tensor 'image' of shape [8, 1, 28, 28] float32 needs 25088 bytes but the header says 25084"));
  h = RawFromLayout(layout);
  h.tensors[1].dtype = static_cast<uint8_t>(DType::kInt32);
  EXPECT_TRUE(
      IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "needs 32 bytes but the header says 64"));
}

TEST(FrameTest, RejectsOverflowingShape) {
  // Shapes keep their rank so that the header, and so the offsets, stay put.
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.tensors[0].shape = {1 << 16, 1 << 16, 1 << 16, 1 << 16};  // 2^64 elements
  EXPECT_TRUE(
      IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                 "tensor 'image' of shape [65536, 65536, 65536, 65536] float32 is more than 2^64 bytes"));
  // 2^61 int64s are 2^64 bytes: the element count fits, the byte count does not.
  h = RawFromLayout(layout);
  h.tensors[1].shape = {int64_t{1} << 61};
  h.tensors[1].nbytes = 0;
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                         "tensor 'label' of shape [2305843009213693952] int64 is more than 2^64 bytes"));
}

TEST(FrameTest, RejectsMisalignedOffset) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.tensors[1].offset -= 8;
  EXPECT_TRUE(IsDataLoss(
      Parse(BuildFrame(h, layout.frame_bytes())),
      "tensor 'label' is at offset " + std::to_string(layout.offset(1) - 8) + ", not a multiple of 64"));
}

TEST(FrameTest, RejectsOffsetInsideHeader) {
  const BatchLayout layout = MnistLayout();
  for (uint64_t offset : {uint64_t{0}, uint64_t{layout.header_bytes() - 64}}) {
    RawHeader h = RawFromLayout(layout);
    h.tensors[1].offset = offset;
    EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                           "tensor 'label' is at offset " + std::to_string(offset) + ", inside the " +
                               std::to_string(layout.header_bytes()) + "-byte header"));
  }
}

TEST(FrameTest, RejectsPayloadPastTheEnd) {
  const BatchLayout layout = MnistLayout();
  const std::string frame_bytes = std::to_string(layout.frame_bytes());
  RawHeader h = RawFromLayout(layout);
  h.tensors[1].offset = layout.frame_bytes();
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                         "frame: tensor 'label' claims 64 bytes at offset " + frame_bytes +
                             " but the frame is " + frame_bytes + " bytes"));

  // offset + nbytes wraps around to a small number.
  h.tensors[1].offset = std::numeric_limits<uint64_t>::max() - 63;
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                         "claims 64 bytes at offset 18446744073709551552"));

  // A shape and nbytes that agree but are far larger than the frame.
  h = RawFromLayout(layout);
  h.tensors[0].shape = {int64_t{1} << 40};
  h.tensors[0].nbytes = uint64_t{4} << 40;
  EXPECT_TRUE(
      IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "tensor 'image' claims 4398046511104 bytes"));
}

TEST(FrameTest, RejectsOverlappingPayloads) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.tensors[1].offset = layout.offset(0) + 128;  // inside image
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "overlap"));
  const std::string image_end = std::to_string(layout.offset(0) + kImageBytes);
  EXPECT_TRUE(IsDataLoss(
      Parse(BuildFrame(h, layout.frame_bytes())),
      "tensors 'image' [" + std::to_string(layout.offset(0)) + ", " + image_end + ") and 'label'"));

  // Same start, reversed header order.
  h.tensors[1].offset = layout.offset(0);
  std::swap(h.tensors[0], h.tensors[1]);
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "overlap"));
}

TEST(FrameTest, RejectsDuplicateAndEmptyNames) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.tensors[1].name = "image";
  EXPECT_TRUE(
      IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "tensor name 'image' appears more than once"));
  h.tensors[1].name = "";
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "tensor 1 has an empty name"));
}

TEST(FrameTest, RejectsFrameBytesOutOfRange) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.frame_bytes = layout.frame_bytes() + 64;
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                         "the header says the frame is " + std::to_string(layout.frame_bytes() + 64) +
                             " bytes but only " + std::to_string(layout.frame_bytes()) +
                             " bytes were given"));
  h.frame_bytes = std::numeric_limits<uint64_t>::max();
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())), "bytes were given"));
  h.frame_bytes = 64;
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(h, layout.frame_bytes())),
                         "less than its own " + std::to_string(layout.header_bytes()) + "-byte header"));
}

TEST(FrameTest, NamesInMessagesAreEscapedAndCapped) {
  const BatchLayout layout = MnistLayout();
  RawHeader h = RawFromLayout(layout);
  h.tensors[0].name = std::string("a\nb'") + std::string(100, 'z');
  h.tensors[0].dtype = 0;
  auto r = Parse(BuildFrame(h, layout.frame_bytes()));
  EXPECT_TRUE(IsDataLoss(r, "tensor 'a\\x0ab\\x27zzz"));
  EXPECT_TRUE(IsDataLoss(r, "zzz...' has unknown dtype 0"));
}

TEST(FrameTest, FlippedHeaderBytesNeverCrash) {
  const BatchLayout layout = MnistLayout();
  const std::vector<uint8_t> frame = ValidFrame(layout);
  int rejected = 0;
  for (size_t i = 0; i < layout.header_bytes(); ++i) {
    for (uint8_t x : {0x01, 0x02, 0x10, 0x40, 0x80, 0xFF}) {
      std::vector<uint8_t> corrupt = frame;
      corrupt[i] ^= x;
      auto r = Parse(corrupt);
      if (r.ok()) {
        EXPECT_TRUE(ViewIsInBounds(*r, corrupt.data(), corrupt.size())) << "byte " << i << " ^ " << int{x};
      } else {
        ++rejected;
        EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
      }
    }
  }
  // Most header bytes matter; a parser that accepts everything fails here.
  EXPECT_GT(rejected, static_cast<int>(layout.header_bytes()));
}

TEST(FrameTest, RandomCorruptionNeverCrashes) {
  const BatchLayout layout = MnistLayout();
  const std::vector<uint8_t> frame = ValidFrame(layout);
  std::mt19937 rng(12345);
  std::uniform_int_distribution<size_t> pos(0, layout.header_bytes() - 1);
  std::uniform_int_distribution<int> byte(0, 255), count(1, 8);
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> corrupt = frame;
    for (int n = count(rng); n > 0; --n) corrupt[pos(rng)] = static_cast<uint8_t>(byte(rng));
    auto r = Parse(corrupt);
    if (r.ok()) {
      EXPECT_TRUE(ViewIsInBounds(*r, corrupt.data(), corrupt.size())) << "iteration " << iter;
    } else {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
    }
  }
}

// ---- split pipelines: the finish ------------------------------------------

constexpr char kNorm[] = "to_tensor,normalize(0.1307,0.3081)";

BatchLayout SplitLayout(const std::string& finish, int64_t channels = 1) {
  auto layout = BatchLayout::Make({{"image", DType::kUInt8, {kBatch, channels, 28, 28}, finish},
                                   {"label", DType::kInt64, {kBatch}}});
  EXPECT_TRUE(layout.ok()) << layout.status().ToString();
  return std::move(layout).value();
}

TEST(FinishTest, ParsesToACanonicalSpecAndTorchvisionValues) {
  auto f = Finish::Parse(" to_tensor , normalize( 0.1307 , 0.3081 ) ");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->spec(), kNorm);
  EXPECT_EQ(f->num_tables(), 1u);
  for (int v = 0; v < 256; ++v) {
    // torchvision: x.to(float32).div(255), then .sub_(mean).div_(std), in float32.
    const float want = (static_cast<float>(v) / 255.0f - 0.1307f) / 0.3081f;
    EXPECT_EQ(f->table(0)[v], want) << v;
  }
  auto plain = Finish::Parse("to_tensor");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->table(0)[255], 1.0f);
  EXPECT_EQ(plain->table(0)[51], 51.0f / 255.0f);
  // The canonical text reads back to the same float32 values.
  auto odd = Finish::Make({{{0.1f / 3.0f, 0.7f}, {1.0f / 7.0f, 3.0f}}});
  ASSERT_TRUE(odd.ok()) << odd.status().ToString();
  auto again = Finish::Parse(odd->spec());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->normalizes()[0].mean, odd->normalizes()[0].mean) << odd->spec();
  EXPECT_EQ(again->normalizes()[0].std, odd->normalizes()[0].std) << odd->spec();
  EXPECT_EQ(std::memcmp(again->table(1), odd->table(1), 256 * sizeof(float)), 0);
}

TEST(FinishTest, ParsingAgainAndAlternatingSpecsGiveTheSameTables) {
  // Parse remembers the last spec per thread; alternating specs must not mix.
  const std::string a = "to_tensor,normalize(0.5,0.25)", b = "to_tensor";
  for (int round = 0; round < 3; ++round) {
    auto fa = Finish::Parse(a);
    auto fb = Finish::Parse(b);
    ASSERT_TRUE(fa.ok() && fb.ok());
    EXPECT_EQ(fa->spec(), a);
    EXPECT_EQ(fb->spec(), b);
    EXPECT_EQ(fa->table(0)[255], (1.0f - 0.5f) / 0.25f);
    EXPECT_EQ(fb->table(0)[255], 1.0f);
    EXPECT_FALSE(Finish::Parse("to_tensor,blur(3)").ok());
  }
}

TEST(FinishTest, PerChannelTablesAndChainedNormalizes) {
  auto f = Finish::Parse("to_tensor,normalize(0.1,0.2,0.3,0.4,0.5,0.6),normalize(0.5,2)");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->num_tables(), 3u);
  EXPECT_TRUE(f->CheckChannels(3).ok());
  EXPECT_FALSE(f->CheckChannels(1).ok());
  const float m[3] = {0.1f, 0.2f, 0.3f}, s[3] = {0.4f, 0.5f, 0.6f};
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; v += 17) {
      float want = (static_cast<float>(v) / 255.0f - m[c]) / s[c];
      want = (want - 0.5f) / 2.0f;
      EXPECT_EQ(f->table(c)[v], want) << c << " " << v;
    }
  }
  // Apply: [N, C, H, W] uint8 -> float through the tables.
  std::vector<int64_t> shape = {2, 3, 2, 5};
  std::vector<uint8_t> in(60);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 37);
  std::vector<float> out(60);
  ASSERT_TRUE(f->Apply(in.data(), shape, out.data(), out.size()).ok());
  for (size_t i = 0; i < in.size(); ++i) EXPECT_EQ(out[i], f->table((i / 10) % 3)[in[i]]) << i;
  EXPECT_FALSE(f->Apply(in.data(), shape, out.data(), 59).ok());
  EXPECT_FALSE(f->Apply(in.data(), {60}, out.data(), 60).ok());
  EXPECT_FALSE(f->Apply(in.data(), {2, 1, 6, 5}, out.data(), 60).ok());  // 1 channel, 3 tables
}

TEST(FinishTest, RefusesWhatIsNotElementwiseWithAClearError) {
  const struct {
    const char* spec;
    const char* says;
  } bad[] = {
      {"", "must start with to_tensor"},
      {"normalize(0.5,0.5)", "must start with to_tensor"},
      {"to_tensor,gaussian_blur(11)", "'gaussian_blur(11)' cannot be part of a finish: only to_tensor and normalize"},
      {"to_tensor,resize(14)", "'resize(14)' cannot be part of a finish"},
      {"to_tensor,to_tensor", "to_tensor appears twice"},
      {"to_tensor,normalize(0.5,0)", "non-zero"},
      {"to_tensor,normalize(0.5,0.2,0.1)", "got 3 numbers"},
      {"to_tensor,normalize(0.5,x)", "'x' is not a number"},
      {"to_tensor,normalize(0.5,0.2", "unmatched '('"},
      {"to_tensor,normalize(0.1,0.2,0.3,0.4),normalize(1,2,3,4,5,6)", "give 2 and 3 channels"},
  };
  for (const auto& b : bad) {
    auto f = Finish::Parse(b.spec);
    ASSERT_FALSE(f.ok()) << b.spec;
    EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(f.status().message().find(b.says), std::string::npos) << f.status().message();
  }
  EXPECT_FALSE(Finish::Parse("to_tensor" + std::string(kMaxFinishSpecBytes, ' ')).ok());
}

TEST(FinishFrameTest, LayoutCarriesTheFinishAndParseReturnsIt) {
  const BatchLayout layout = SplitLayout(kNorm);
  EXPECT_EQ(layout.nbytes(0), static_cast<size_t>(kBatch * 28 * 28));
  std::vector<uint8_t> frame = ValidFrame(layout);
  auto view = Parse(frame);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->tensor(0).finish, kNorm);
  EXPECT_EQ(view->tensor(0).dtype, DType::kUInt8);
  EXPECT_TRUE(view->tensor(1).finish.empty());
  EXPECT_EQ(RawFromLayout(layout).tensors[0].finish, kNorm);
  const std::vector<uint8_t> rebuilt = BuildFrame(RawFromLayout(layout), layout.frame_bytes());
  EXPECT_TRUE(std::equal(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(layout.header_bytes()),
                         rebuilt.begin()));
}

TEST(FinishFrameTest, OldFramesWithoutTheFieldStillParse) {
  // BatchLayout writes no finish field for an unsplit tensor: those frames
  // are exactly what version-1 writers made before the field existed.
  const BatchLayout layout = MnistLayout();
  const std::vector<uint8_t> frame = ValidFrame(layout);
  const fb::BatchHeader* header = fb::GetSizePrefixedBatchHeader(frame.data());
  EXPECT_EQ(header->tensors()->Get(0)->finish(), nullptr);
  EXPECT_FALSE(reinterpret_cast<const flatbuffers::Table*>(header->tensors()->Get(0))
                   ->CheckField(fb::Tensor::VT_FINISH));
  auto view = Parse(frame);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_TRUE(view->tensor(0).finish.empty());
  // An empty string written by some other writer means "none" too.
  RawHeader raw = RawFromLayout(layout);
  auto empty = Parse(BuildFrame(raw, layout.frame_bytes()));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->tensor(0).finish.empty());
}

TEST(FinishFrameTest, LayoutRefusesABadFinish) {
  auto float_image = BatchLayout::Make({{"image", DType::kFloat32, {kBatch, 1, 28, 28}, kNorm}});
  ASSERT_FALSE(float_image.ok());
  EXPECT_NE(float_image.status().message().find("needs a uint8 [..., C, H, W] tensor"), std::string::npos)
      << float_image.status().message();
  EXPECT_FALSE(BatchLayout::Make({{"image", DType::kUInt8, {kBatch, 784}, kNorm}}).ok());
  auto blur = BatchLayout::Make({{"image", DType::kUInt8, {kBatch, 1, 28, 28}, "to_tensor,gaussian_blur(3)"}});
  ASSERT_FALSE(blur.ok());
  EXPECT_NE(blur.status().message().find("gaussian_blur"), std::string::npos) << blur.status().message();
  auto channels = BatchLayout::Make(
      {{"image", DType::kUInt8, {kBatch, 1, 28, 28}, "to_tensor,normalize(0.1,0.2,0.3,0.4,0.5,0.6)"}});
  ASSERT_FALSE(channels.ok());
  EXPECT_NE(channels.status().message().find("3 channels"), std::string::npos) << channels.status().message();
}

TEST(FinishFrameTest, ParseRejectsABadFinish) {
  // Payloads moved past any longer header, so only the finish is wrong.
  const auto shifted = [](RawHeader h) {
    for (RawTensor& t : h.tensors) t.offset += 2048;
    h.frame_bytes += 2048;
    return h;
  };
  RawHeader raw = shifted(RawFromLayout(MnistLayout()));
  raw.tensors[0].finish = kNorm;  // on a float32 tensor
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(raw, raw.frame_bytes)), "not uint8 [..., C, H, W]"));

  RawHeader r2 = shifted(RawFromLayout(SplitLayout(kNorm)));
  EXPECT_TRUE(Parse(BuildFrame(r2, r2.frame_bytes)).ok());
  r2.tensors[0].finish = "to_tensor,gaussian_blur(11)";
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(r2, r2.frame_bytes)), "has a bad finish"));
  r2.tensors[0].finish = "to_tensor,normalize(1,2,3,4)";  // 2 channels, image has 1
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(r2, r2.frame_bytes)), "has a bad finish"));
  r2.tensors[0].finish = "to_tensor" + std::string(kMaxFinishSpecBytes, ' ');
  EXPECT_TRUE(IsDataLoss(Parse(BuildFrame(r2, r2.frame_bytes)), "finish spec; at most 1024"));
  r2.tensors[0].finish = "to_tensor" + std::string(kMaxFinishSpecBytes - 9, ' ');  // exactly the limit
  EXPECT_TRUE(Parse(BuildFrame(r2, r2.frame_bytes)).ok());
}

TEST(FinishFrameTest, CorruptedSplitFramesNeverCrash) {
  const BatchLayout layout = SplitLayout("to_tensor,normalize(0.1,0.2,0.3,0.4,0.5,0.6)", 3);
  const std::vector<uint8_t> frame = ValidFrame(layout);
  std::mt19937 rng(777);
  std::uniform_int_distribution<size_t> pos(0, layout.header_bytes() - 1);
  std::uniform_int_distribution<int> byte(0, 255), count(1, 4);
  int parsed_with_finish = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> corrupt = frame;
    for (int n = count(rng); n > 0; --n) corrupt[pos(rng)] = static_cast<uint8_t>(byte(rng));
    auto r = Parse(corrupt);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
      continue;
    }
    EXPECT_TRUE(ViewIsInBounds(*r, corrupt.data(), corrupt.size()));
    for (const TensorView& t : r->tensors()) {
      if (t.finish.empty()) continue;
      ++parsed_with_finish;
      // Whatever got through is a finish a consumer can run on that tensor.
      auto f = Finish::Parse(t.finish);
      ASSERT_TRUE(f.ok()) << f.status().ToString();
      EXPECT_TRUE(f->CheckChannels(t.shape[t.shape.size() - 3]).ok());
      EXPECT_EQ(t.dtype, DType::kUInt8);
    }
  }
  EXPECT_GT(parsed_with_finish, 0);
}

}  // namespace
}  // namespace datafeed
