#include "datafeed/producer/dataset.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "golden_util.h"
#include "test_files.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;
using test::ExpectError;
using test::ReadFile;
using test::TempDir;
using test::WriteFile;

void Put32(std::vector<uint8_t>* b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b->push_back(static_cast<uint8_t>(v >> s));
}

// An IDX header with the given magic and dims, then `payload` bytes of 7.
std::vector<uint8_t> Idx(uint32_t magic, std::vector<uint32_t> dims, size_t payload) {
  std::vector<uint8_t> b;
  Put32(&b, magic);
  for (uint32_t d : dims) Put32(&b, d);
  b.insert(b.end(), payload, 7);
  return b;
}

// ---- synthetic writer -------------------------------------------------------

TEST(SyntheticMnistTest, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir a, b;
  ASSERT_TRUE(WriteSyntheticMnist(a.path().string(), "train", 200, 7).ok());
  ASSERT_TRUE(WriteSyntheticMnist(b.path().string(), "train", 200, 7).ok());
  const auto ia = ReadFile(a / "train-images-idx3-ubyte");
  const auto la = ReadFile(a / "train-labels-idx1-ubyte");
  EXPECT_EQ(ia.size(), 16u + 200u * 28u * 28u);
  EXPECT_EQ(la.size(), 8u + 200u);
  EXPECT_EQ(ia, ReadFile(b / "train-images-idx3-ubyte"));
  EXPECT_EQ(la, ReadFile(b / "train-labels-idx1-ubyte"));

  ASSERT_TRUE(WriteSyntheticMnist(b.path().string(), "train", 200, 8).ok());
  EXPECT_NE(ia, ReadFile(b / "train-images-idx3-ubyte"));
  EXPECT_NE(la, ReadFile(b / "train-labels-idx1-ubyte"));
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(b.path()), fs::directory_iterator()), 2);
}

TEST(SyntheticMnistTest, LooksLikeDigitsNotNoise) {
  TempDir dir;
  ASSERT_TRUE(WriteSyntheticMnist(dir.path().string(), "t10k", 500, 1).ok());
  auto ds = MnistDataset::OpenDir(dir.path().string(), "t10k");
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  std::vector<int> label_counts(10, 0);
  size_t zeros = 0, full = 0, pixels = 0;
  std::vector<uint8_t> img(28 * 28);
  for (size_t i = 0; i < (*ds)->size(); ++i) {
    int64_t label = -1;
    ASSERT_TRUE((*ds)->Get(i, img.data(), &label).ok());
    ASSERT_GE(label, 0);
    ASSERT_LE(label, 9);
    label_counts[static_cast<size_t>(label)]++;
    for (uint8_t v : img) {
      zeros += v == 0;
      full += v == 255;
      ++pixels;
    }
  }
  // MNIST-like: mostly black background, solid strokes, every digit present.
  EXPECT_GT(zeros, pixels / 2);
  EXPECT_GT(full, pixels / 20);
  for (int d = 0; d < 10; ++d) EXPECT_GT(label_counts[static_cast<size_t>(d)], 20) << d;
  // Soft edges: intermediate values exist (what a blur acts on).
  EXPECT_LT(zeros + full, pixels * 97 / 100);
}

// ---- MNIST IDX parsing ----------------------------------------------------------

class MnistFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteSyntheticMnist(dir_.path().string(), "train", 10, 3).ok());
    images_ = dir_ / "train-images-idx3-ubyte";
    labels_ = dir_ / "train-labels-idx1-ubyte";
  }
  Status Open() { return MnistDataset::Open(images_, labels_).status(); }

  TempDir dir_;
  std::string images_, labels_;
};

TEST_F(MnistFilesTest, OpensAndReadsSamples) {
  auto ds = MnistDataset::Open(images_, labels_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->size(), 10u);
  EXPECT_EQ((*ds)->shape().height, 28);
  EXPECT_EQ((*ds)->shape().width, 28);
  EXPECT_EQ((*ds)->shape().channels, 1);
  const auto raw_images = ReadFile(images_);
  const auto raw_labels = ReadFile(labels_);
  std::vector<uint8_t> img(28 * 28);
  for (size_t i = 0; i < 10; ++i) {
    int64_t label = -1;
    ASSERT_TRUE((*ds)->Get(i, img.data(), &label).ok());
    EXPECT_EQ(label, raw_labels[8 + i]);
    EXPECT_TRUE(std::equal(img.begin(), img.end(), raw_images.begin() + 16 + i * 784));
    EXPECT_EQ((*ds)->image(i), (*ds)->image(0) + i * 784);
  }
  int64_t label;
  EXPECT_EQ((*ds)->Get(10, img.data(), &label).code(), StatusCode::kInvalidArgument);
}

TEST_F(MnistFilesTest, AnyLabelByteIsAccepted) {
  auto labels = ReadFile(labels_);
  labels[8] = 200;
  WriteFile(labels_, labels);
  auto ds = MnistDataset::Open(images_, labels_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  std::vector<uint8_t> img(784);
  int64_t label = 0;
  ASSERT_TRUE((*ds)->Get(0, img.data(), &label).ok());
  EXPECT_EQ(label, 200);
}

TEST_F(MnistFilesTest, MissingFileIsNotFound) {
  fs::remove(labels_);
  ExpectError(Open(), StatusCode::kNotFound, labels_, "no such file");
  auto dir = MnistDataset::OpenDir(dir_.path().string(), "t10k");
  ExpectError(dir.status(), StatusCode::kNotFound, dir_ / "t10k-images-idx3-ubyte",
              "no such file");
}

TEST_F(MnistFilesTest, MissingFileNextToGzipSaysGunzip) {
  fs::rename(labels_, labels_ + ".gz");
  ExpectError(Open(), StatusCode::kNotFound, labels_, "gunzip");
}

TEST_F(MnistFilesTest, CorruptMagic) {
  auto bytes = ReadFile(images_);
  bytes[0] = 0x12;
  bytes[1] = 0x34;
  WriteFile(images_, bytes);
  ExpectError(Open(), StatusCode::kDataLoss, images_, "bad magic number 0x12340803");
}

TEST_F(MnistFilesTest, GzipCompressedFile) {
  auto bytes = ReadFile(labels_);
  bytes[0] = 0x1f;
  bytes[1] = 0x8b;
  WriteFile(labels_, bytes);
  ExpectError(Open(), StatusCode::kDataLoss, labels_, "gzip");
}

TEST_F(MnistFilesTest, WrongElementType) {
  WriteFile(images_, Idx(0x00000D03, {10, 28, 28}, 10 * 784));
  ExpectError(Open(), StatusCode::kDataLoss, images_, "float32");
}

TEST_F(MnistFilesTest, WrongDimensionCount) {
  WriteFile(images_, Idx(0x00000802, {10, 784}, 10 * 784));
  ExpectError(Open(), StatusCode::kDataLoss, images_, "says 2 dimensions, but MNIST images have 3");
}

TEST_F(MnistFilesTest, SwappedPathsAreNamed) {
  Status st = MnistDataset::Open(labels_, images_).status();
  ExpectError(st, StatusCode::kDataLoss, labels_, "swapped");
}

TEST_F(MnistFilesTest, ZeroSizedImages) {
  WriteFile(images_, Idx(0x00000803, {10, 0, 28}, 0));
  ExpectError(Open(), StatusCode::kDataLoss, images_, "0 x 28 pixels");
}

TEST_F(MnistFilesTest, TruncatedPayload) {
  auto bytes = ReadFile(images_);
  bytes.resize(1000);
  WriteFile(images_, bytes);
  ExpectError(Open(), StatusCode::kDataLoss, images_,
              "file is 1000 bytes but its header promises 7856 (10 x 28 x 28 + 16); the file is "
              "truncated");
}

TEST_F(MnistFilesTest, TruncatedHeader) {
  WriteFile(labels_, {0, 0, 8, 1, 0, 0});
  ExpectError(Open(), StatusCode::kDataLoss, labels_, "truncated");
  WriteFile(labels_, {0, 0});
  ExpectError(Open(), StatusCode::kDataLoss, labels_, "truncated");
  WriteFile(labels_, {});
  ExpectError(Open(), StatusCode::kDataLoss, labels_, "truncated");
}

TEST_F(MnistFilesTest, TrailingBytes) {
  auto bytes = ReadFile(labels_);
  bytes.push_back(0);
  bytes.push_back(0);
  WriteFile(labels_, bytes);
  ExpectError(Open(), StatusCode::kDataLoss, labels_,
              "file is 20 bytes but its header promises 18 (10 + 8); it has 2 trailing bytes");
}

TEST_F(MnistFilesTest, CountMismatch) {
  WriteFile(labels_, Idx(0x00000801, {9}, 9));
  Status st = Open();
  ExpectError(st, StatusCode::kDataLoss, images_, "holds 10 images but");
  EXPECT_NE(st.message().find(labels_ + " holds 9 labels"), std::string::npos) << st.message();
}

TEST_F(MnistFilesTest, DirectoryInsteadOfFile) {
  fs::remove(images_);
  fs::create_directory(images_);
  ExpectError(Open(), StatusCode::kInvalidArgument, images_, "not a regular file");
}

TEST_F(MnistFilesTest, FilesTruncatedAfterOpeningChangeNothing) {
  // The dataset holds the bytes it opened: a file truncated (or rewritten)
  // underneath a running producer must not kill it with SIGBUS, as a
  // memory-mapped file would.
  auto ds = MnistDataset::Open(images_, labels_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  const auto raw_images = ReadFile(images_);
  ASSERT_EQ(::truncate(images_.c_str(), 20), 0);
  ASSERT_EQ(::truncate(labels_.c_str(), 0), 0);
  std::vector<uint8_t> img(784);
  for (size_t i = 0; i < 10; ++i) {
    int64_t label = -1;
    ASSERT_TRUE((*ds)->Get(i, img.data(), &label).ok());
    EXPECT_TRUE(std::equal(img.begin(), img.end(), raw_images.begin() + 16 + i * 784)) << i;
  }
  // Opening it again now sees the truncation.
  ExpectError(Open(), StatusCode::kDataLoss, images_, "truncated");
}

TEST_F(MnistFilesTest, ReadHandsOutPixelsWithoutACopy) {
  auto ds = MnistDataset::Open(images_, labels_);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  Sample s;
  ASSERT_TRUE((*ds)->Read(3, &s).ok());
  EXPECT_TRUE(s.has_pixels());
  EXPECT_EQ(s.pixels(), (*ds)->image(3));
  EXPECT_EQ(s.height(), 28);
  EXPECT_EQ(s.width(), 28);
  EXPECT_EQ(s.channels(), 1);
  EXPECT_EQ(s.label(), (*ds)->label(3));
  EXPECT_NE((*ds)->SampleName(3).find("image 3 of " + images_), std::string::npos);
  EXPECT_EQ((*ds)->Read(10, &s).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace datafeed
