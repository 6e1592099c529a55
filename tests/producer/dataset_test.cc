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

namespace datafeed {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::path(::testing::TempDir()) /
            ("datafeed_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

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

// Expects `st` to have `code` and a message naming `path` and containing `what`.
void ExpectError(const Status& st, StatusCode code, const std::string& path,
                 const std::string& what) {
  EXPECT_EQ(st.code(), code) << st.ToString();
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(what), std::string::npos) << "missing '" << what << "' in: "
                                                        << st.message();
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

// ---- image folders ---------------------------------------------------------------

// Writes a binary PGM (channels 1) or PPM (channels 3) of the given HWC bytes.
void WritePnm(const std::string& path, int h, int w, int channels, const std::vector<uint8_t>& hwc) {
  std::string header = (channels == 1 ? "P5\n" : "P6\n") + std::to_string(w) + " " +
                       std::to_string(h) + "\n255\n";
  std::vector<uint8_t> bytes(header.begin(), header.end());
  bytes.insert(bytes.end(), hwc.begin(), hwc.end());
  WriteFile(path, bytes);
}

std::vector<uint8_t> Pattern(size_t n, uint8_t salt) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 7 + salt);
  return v;
}

TEST(ImageFolderTest, ClassesSortedAndPixelsInRgbOrder) {
  TempDir root;
  fs::create_directories(root.path() / "dog");
  fs::create_directories(root.path() / "cat");
  fs::create_directories(root.path() / ".hidden");
  const auto a = Pattern(4 * 5 * 3, 1), b = Pattern(4 * 5 * 3, 2), c = Pattern(4 * 5 * 3, 3);
  WritePnm(root / "dog/b.ppm", 4, 5, 3, b);
  WritePnm(root / "dog/a.ppm", 4, 5, 3, a);
  WritePnm(root / "cat/z.ppm", 4, 5, 3, c);
  WriteFile(root / "cat/notes.txt", {'h', 'i'});

  auto ds = ImageFolderDataset::Open(root.path().string(), 4, 5, 3);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->classes(), (std::vector<std::string>{"cat", "dog"}));
  ASSERT_EQ((*ds)->size(), 3u);
  std::vector<uint8_t> out(4 * 5 * 3);
  int64_t label = -1;
  // Sorted: cat/z, dog/a, dog/b. PPM stores RGB; Get returns RGB.
  ASSERT_TRUE((*ds)->Get(0, out.data(), &label).ok());
  EXPECT_EQ(label, 0);
  EXPECT_EQ(out, c);
  ASSERT_TRUE((*ds)->Get(1, out.data(), &label).ok());
  EXPECT_EQ(label, 1);
  EXPECT_EQ(out, a);
  ASSERT_TRUE((*ds)->Get(2, out.data(), &label).ok());
  EXPECT_EQ(out, b);
}

// PNG and JPEG files written by PIL (producer/tools/make_goldens.py).
TEST(ImageFolderTest, DecodesPngAndJpegLikePil) {
  auto ds = ImageFolderDataset::Open(test::GoldenPath("image_folder"), 32, 40, 3);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ((*ds)->size(), 3u);  // cat/0_rgb.png, cat/1_gray.png, dog/0.jpg
  const auto color0 = test::ReadGoldenArray("color0");
  const auto color1 = test::ReadGoldenArray("color1");
  const auto gray2 = test::ReadGoldenArray("gray2");
  std::vector<uint8_t> out(32 * 40 * 3);
  int64_t label = -1;
  // Lossless PNG: exactly PIL's RGB bytes.
  ASSERT_TRUE((*ds)->Get(0, out.data(), &label).ok());
  EXPECT_EQ(label, 0);
  EXPECT_EQ(out, color0.bytes);
  // A 28x28 grayscale PNG: the wrong size for Get(); Decode() gives it as RGB.
  EXPECT_EQ((*ds)->Get(1, out.data(), &label).code(), StatusCode::kInvalidArgument);
  std::vector<uint8_t> decoded;
  int h = 0, w = 0;
  ASSERT_TRUE((*ds)->Decode(1, &decoded, &h, &w, &label).ok());
  ASSERT_EQ(h * w * 3, 28 * 28 * 3);
  for (size_t i = 0; i < 28 * 28; ++i) {
    ASSERT_EQ(decoded[3 * i], gray2.bytes[i]);
    ASSERT_EQ(decoded[3 * i + 2], gray2.bytes[i]);
  }
  // JPEG is lossy: close to the source, and in RGB order (a BGR mix-up of
  // this gradient image would be far off).
  ASSERT_TRUE((*ds)->Get(2, out.data(), &label).ok());
  EXPECT_EQ(label, 1);
  double err = 0, swapped_err = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const size_t swapped = i - i % 3 + (2 - i % 3);  // the same pixel, R and B exchanged
    err += std::abs(int{out[i]} - int{color1.bytes[i]});
    swapped_err += std::abs(int{out[swapped]} - int{color1.bytes[i]});
  }
  err /= static_cast<double>(out.size());
  swapped_err /= static_cast<double>(out.size());
  EXPECT_LT(err, 8.0);
  EXPECT_GT(swapped_err, 4 * err) << "mean abs error " << err;
}

TEST(ImageFolderTest, GrayscaleAndOwnSizeDecode) {
  TempDir root;
  fs::create_directories(root.path() / "x");
  const auto g = Pattern(6 * 9, 5);
  WritePnm(root / "x/big.pgm", 6, 9, 1, g);
  auto ds = ImageFolderDataset::Open(root.path().string(), 4, 4, 1);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  std::vector<uint8_t> out(16);
  int64_t label;
  // Get() wants the configured 4x4; the file is 6x9.
  ExpectError((*ds)->Get(0, out.data(), &label), StatusCode::kInvalidArgument, root / "x/big.pgm",
              "image is 6x9 (HxW) but the dataset was opened for 4x4");
  std::vector<uint8_t> decoded;
  int h = 0, w = 0;
  ASSERT_TRUE((*ds)->Decode(0, &decoded, &h, &w, &label).ok());
  EXPECT_EQ(h, 6);
  EXPECT_EQ(w, 9);
  EXPECT_EQ(label, 0);
  EXPECT_EQ(decoded, g);
}

TEST(ImageFolderTest, UndecodableImageIsDataLossNamingTheFile) {
  TempDir root;
  fs::create_directories(root.path() / "x");
  WriteFile(root / "x/broken.png", {0x89, 'P', 'N', 'G', 1, 2, 3});
  auto ds = ImageFolderDataset::Open(root.path().string(), 4, 4, 3);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  std::vector<uint8_t> out(48);
  int64_t label;
  ExpectError((*ds)->Get(0, out.data(), &label), StatusCode::kDataLoss, root / "x/broken.png",
              "cannot decode");
}

TEST(ImageFolderTest, OpenErrors) {
  TempDir root;
  ExpectError(ImageFolderDataset::Open(root / "nope", 4, 4, 3).status(), StatusCode::kNotFound,
              root / "nope", "no such directory");
  ExpectError(ImageFolderDataset::Open(root.path().string(), 4, 4, 3).status(),
              StatusCode::kNotFound, root.path().string(), "no class subfolders");
  fs::create_directories(root.path() / "empty");
  ExpectError(ImageFolderDataset::Open(root.path().string(), 4, 4, 3).status(),
              StatusCode::kNotFound, root / "empty", "no images");
  EXPECT_EQ(ImageFolderDataset::Open(root.path().string(), 4, 4, 2).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace datafeed
