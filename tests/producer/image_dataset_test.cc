// Decoding and the datasets of encoded images: parity with PIL (goldens from
// producer/tools/make_goldens.py), JPEGs of many sizes written here, corrupt
// files, image folders of any depth, list files and WebDataset shards.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/transform.h"
#include "golden_util.h"
#include "image_decode_internal.h"
#include "image_fixtures.h"
#include "test_files.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;
using test::Bytes;
using test::EncodeJpeg;
using test::ExpectError;
using test::PhotoLike;
using test::ReadFile;
using test::TempDir;
using test::WriteFile;

// Decodes `bytes` with `channels`; fails the test on an error.
Sample DecodeOrDie(const std::vector<uint8_t>& bytes, int channels) {
  Sample s;
  std::copy(bytes.begin(), bytes.end(), s.AllocateEncoded(bytes.size()));
  Status st = DecodeSample(&s, channels);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return s;
}

Status DecodeStatus(const std::vector<uint8_t>& bytes, int channels = 3) {
  Sample s;
  std::copy(bytes.begin(), bytes.end(), s.AllocateEncoded(bytes.size()));
  return DecodeSample(&s, channels);
}

double MeanAbs(const uint8_t* a, const uint8_t* b, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::abs(int{a[i]} - int{b[i]});
  return n ? sum / static_cast<double>(n) : 0;
}

// ---- decoding: parity with PIL ---------------------------------------------------

class DecodeParityTest : public ::testing::TestWithParam<test::GoldenCase> {};

TEST_P(DecodeParityTest, PixelsEqualPils) {
  const test::GoldenCase& c = GetParam();
  const int channels = std::stoi(c.fields.at(0));
  const auto file = ReadFile(test::GoldenPath("decode/" + c.input));
  ASSERT_FALSE(file.empty()) << c.input;
  const Sample s = DecodeOrDie(file, channels);
  const test::GoldenArray want = test::ReadGoldenArray(c.output);
  ASSERT_EQ(want.dims, (std::vector<int>{s.height(), s.width(), s.channels()})) << c.input;
  const test::ByteDiff d = test::CompareBytes(s.pixels(), want.u8(), want.numel());
  EXPECT_EQ(d.max, 0) << c.input << " as " << channels << " channels: max diff " << d.max
                      << ", mean " << d.mean;
}

std::vector<test::GoldenCase> CasesOf(const std::string& kind) {
  std::vector<test::GoldenCase> out;
  for (const auto& c : test::LoadManifest()) {
    if (c.kind == kind) out.push_back(c);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Pil, DecodeParityTest, ::testing::ValuesIn(CasesOf("decode")),
                         [](const ::testing::TestParamInfo<test::GoldenCase>& info) {
                           return info.param.output;
                         });

TEST(DecodeParitySummary, EveryFormatIsCoveredAndTheWorstIsReported) {
  const auto cases = CasesOf("decode");
  ASSERT_GE(cases.size(), 14u);
  int worst = 0;
  double mean = 0;
  std::set<std::string> kinds;
  for (const auto& c : cases) {
    kinds.insert(c.input.substr(c.input.rfind('.')));
    const auto file = ReadFile(test::GoldenPath("decode/" + c.input));
    const Sample s = DecodeOrDie(file, std::stoi(c.fields.at(0)));
    const test::GoldenArray want = test::ReadGoldenArray(c.output);
    if (want.numel() != s.pixel_bytes()) {
      ADD_FAILURE() << c.input;
      continue;
    }
    const test::ByteDiff d = test::CompareBytes(s.pixels(), want.u8(), want.numel());
    worst = std::max(worst, d.max);
    mean += d.mean / static_cast<double>(cases.size());
  }
  EXPECT_EQ(kinds, (std::set<std::string>{".bmp", ".jpg", ".png", ".ppm"}));
  std::printf("[ decode  ] %zu files against PIL: max diff %d, mean %.4f\n", cases.size(), worst,
              mean);
  EXPECT_EQ(worst, 0);
}

// Decode then pipeline, against torchvision's loader + transforms.
TEST(DecodeParity, DecodedFilesThroughAPipelineMatchTorchvision) {
  const auto cases = CasesOf("file");
  ASSERT_GE(cases.size(), 2u);
  for (const auto& c : cases) {
    const int channels = std::stoi(c.fields.at(0));
    const std::string& spec = c.fields.at(1);
    const Sample s = DecodeOrDie(ReadFile(test::GoldenPath("decode/" + c.input)), channels);
    auto p = Pipeline::Make(spec);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    const test::GoldenArray want = test::ReadGoldenArray(c.output);
    std::vector<float> got(want.numel());
    ASSERT_TRUE(p->Run(s.pixels(), s.height(), s.width(), s.channels(), got.data(), SampleRng(0)).ok());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::fabs(got[i] - want.f32()[i])));
    EXPECT_LE(worst, 1e-5) << spec << " on " << c.input;
  }
}

// ---- decoding: generated JPEGs, corrupt files -----------------------------------

TEST(DecodeTest, JpegsOfManySizesAndAspectRatiosDecodeToTheirSize) {
  struct Size {
    int h, w;
  };
  const Size sizes[] = {{1, 1},   {1, 300}, {300, 1},  {2, 3},    {17, 33},  {33, 17},
                        {64, 64}, {375, 500}, {500, 375}, {123, 457}, {240, 16}};
  int n = 0;
  for (const Size& sz : sizes) {
    for (int c : {1, 3}) {
      for (auto sub : {test::Subsampling::k420, test::Subsampling::k422, test::Subsampling::k444}) {
        if (c == 1 && sub != test::Subsampling::k420) continue;
        const auto src = PhotoLike(sz.h, sz.w, c, static_cast<uint32_t>(n++));
        const auto jpeg = EncodeJpeg(src, sz.h, sz.w, c, 92, sub);
        const Sample rgb = DecodeOrDie(jpeg, 3);
        ASSERT_EQ(rgb.height(), sz.h);
        ASSERT_EQ(rgb.width(), sz.w);
        ASSERT_EQ(rgb.channels(), 3);
        const Sample gray = DecodeOrDie(jpeg, 1);
        ASSERT_EQ(gray.channels(), 1);
        const size_t pixels = static_cast<size_t>(sz.h) * sz.w;
        if (c == 1) {
          // A gray JPEG: RGB replicates the gray values, gray is them.
          for (size_t i = 0; i < pixels; ++i) {
            ASSERT_EQ(rgb.pixels()[3 * i], gray.pixels()[i]);
            ASSERT_EQ(rgb.pixels()[3 * i + 2], gray.pixels()[i]);
          }
          if (pixels >= 64) {  // tiny images are all edge
            EXPECT_LT(MeanAbs(gray.pixels(), src.data(), pixels), 4.0) << sz.h << "x" << sz.w;
          }
        } else {
          // A colour JPEG to gray is PIL's L of its RGB decode.
          for (size_t i = 0; i < pixels; ++i) {
            ASSERT_EQ(gray.pixels()[i], internal::PilLuma(rgb.pixels()[3 * i], rgb.pixels()[3 * i + 1],
                                                          rgb.pixels()[3 * i + 2]));
          }
          // Close to the source, in RGB order (tiny images are all edge).
          if (pixels >= 64) {
            EXPECT_LT(MeanAbs(rgb.pixels(), src.data(), pixels * 3), 8.0) << sz.h << "x" << sz.w;
          }
        }
      }
    }
  }
}

TEST(DecodeTest, CorruptTruncatedAndEmptyFilesAreDataLossAndDoNotPoisonTheNext) {
  const auto src = PhotoLike(40, 60, 3, 1);
  const auto good = EncodeJpeg(src, 40, 60, 3);
  std::vector<uint8_t> truncated(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2));
  std::vector<uint8_t> garbage = {0xFF, 0xD8, 0xFF, ' ', 'n', 'o', 't', ' ', 'a', ' ', 'j', 'p', 'g'};
  std::vector<uint8_t> not_image = Bytes("just some text, not an image at all");
  const struct {
    std::vector<uint8_t> bytes;
    const char* what;
  } bad[] = {{truncated, "Premature end"}, {garbage, "not a readable JPEG"},
             {not_image, "not an image"}, {{}, "empty"}};
  for (const auto& b : bad) {
    const Status st = DecodeStatus(b.bytes);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << b.what << ": " << st.ToString();
    EXPECT_NE(st.message().find(b.what), std::string::npos) << st.message();
    // The thread's decoder recovers: a good file right after decodes.
    const Sample s = DecodeOrDie(good, 3);
    EXPECT_EQ(s.height(), 40);
  }
  EXPECT_EQ(DecodeStatus(good, 2).code(), StatusCode::kInvalidArgument);
}

// Found by tests/fuzz/image_fuzz.cc (corpus/image/repro-jpeg-tables-only):
// TurboJPEG reads a tables-only JPEG (no frame) as 0 x 0 pixels; decoding
// it gave an OK, empty sample when the thread's scratch buffer had been
// grown by an earlier decode (and an error otherwise).
TEST(DecodeTest, ATablesOnlyJpegIsDataLossWhateverWasDecodedBefore) {
  const auto good = EncodeJpeg(PhotoLike(40, 60, 3, 1), 40, 60, 3);
  // SOI, the quantization and Huffman tables of `good` (DQT, DHT), EOI: an
  // "abbreviated table specification" datastream.
  std::vector<uint8_t> tables_only = {0xFF, 0xD8};
  for (size_t i = 2; i + 4 <= good.size() && good[i] == 0xFF && good[i + 1] != 0xDA;) {  // up to SOS
    const size_t len = 2 + (size_t{good[i + 2]} << 8 | good[i + 3]);
    if (good[i + 1] == 0xDB || good[i + 1] == 0xC4) {
      tables_only.insert(tables_only.end(), good.begin() + static_cast<std::ptrdiff_t>(i),
                         good.begin() + static_cast<std::ptrdiff_t>(i + len));
    }
    i += len;
  }
  ASSERT_GT(tables_only.size(), 100u);
  // Stray bytes before EOI: libjpeg warns about them, which made the error
  // that follows ("no image") count as a mere warning.
  tables_only.insert(tables_only.end(), {0x00, 0x00, 0x00, 0xFF, 0xD9});
  for (int channels : {1, 3, 4}) {
    (void)DecodeOrDie(good, 1);  // gray from RGB: grows the thread's scratch buffer
    const Status st = DecodeStatus(tables_only, channels);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
    EXPECT_NE(st.message().find("without an image"), std::string::npos) << st.message();
    int h = -1, w = -1;
    EXPECT_EQ(datafeed::internal::ReadJpegSize(tables_only.data(), tables_only.size(), &h, &w).code(),
              StatusCode::kDataLoss);
  }
}

// A header that claims more pixels than --max-image-pixels is DataLoss
// before anything is allocated (the fuzzer's 1.3 KB JPEG claiming 63222 x
// 65293 made the decoder allocate more than 2 GB); the limit is a setting.
TEST(DecodeTest, AnImageWhoseHeaderClaimsTooManyPixelsIsRefusedBeforeDecoding) {
  const auto good = EncodeJpeg(PhotoLike(40, 60, 3, 1), 40, 60, 3);
  // The frame header (SOF0/SOF2: FF C0/C2, length, precision, height, width).
  std::vector<uint8_t> bomb = good;
  size_t sof = 0;
  for (size_t i = 2; i + 9 < bomb.size(); ++i) {
    if (bomb[i] == 0xFF && (bomb[i + 1] == 0xC0 || bomb[i + 1] == 0xC2)) {
      sof = i;
      break;
    }
  }
  ASSERT_GT(sof, 0u);
  bomb[sof + 5] = 0xFF, bomb[sof + 6] = 0x00;  // height 65280
  bomb[sof + 7] = 0xF6, bomb[sof + 8] = 0x00;  // width 62976
  // A PNG whose IHDR claims 70000 x 70000 (its CRC is wrong too: the size
  // is refused first, by name).
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                              0, 1, 0x11, 0x70, 0, 1, 0x11, 0x70, 8, 2, 0, 0, 0, 0, 0, 0, 0};
  for (const auto* bytes : {&bomb, &png}) {
    const Status st = DecodeStatus(*bytes);
    EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
    EXPECT_NE(st.message().find("--max-image-pixels"), std::string::npos) << st.message();
  }
  EXPECT_NE(DecodeStatus(bomb).message().find("62976 x 65280"), std::string::npos) << DecodeStatus(bomb).message();
  // The limit is the caller's: the good image passes at exactly its size,
  // and is refused one pixel below it.
  ASSERT_EQ(datafeed::MaxImagePixels(), datafeed::kDefaultMaxImagePixels);
  datafeed::SetMaxImagePixels(40 * 60);
  EXPECT_TRUE(DecodeStatus(good).ok());
  datafeed::SetMaxImagePixels(40 * 60 - 1);
  EXPECT_EQ(DecodeStatus(good).code(), StatusCode::kDataLoss);
  datafeed::SetMaxImagePixels(datafeed::kDefaultMaxImagePixels);
  EXPECT_TRUE(DecodeStatus(good).ok());
}

TEST(DecodeTest, ScaledJpegDecodeHasTheScaledSize) {
  const auto jpeg = EncodeJpeg(PhotoLike(375, 500, 3, 2), 375, 500, 3);
  for (int k = 1; k <= 8; ++k) {
    Sample s;
    std::copy(jpeg.begin(), jpeg.end(), s.AllocateEncoded(jpeg.size()));
    ASSERT_TRUE(internal::DecodeJpegScaled(s.encoded(), s.encoded_size(), 3, k, &s).ok());
    EXPECT_EQ(s.height(), (375 * k + 7) / 8);
    EXPECT_EQ(s.width(), (500 * k + 7) / 8);
  }
  int h = 0, w = 0;
  ASSERT_TRUE(internal::ReadJpegSize(jpeg.data(), jpeg.size(), &h, &w).ok());
  EXPECT_EQ(h, 375);
  EXPECT_EQ(w, 500);
}

TEST(DecodeTest, ARegionDecodesToTheSamePixelsAsTheWholeImage) {
  // DecodeForPipeline's exact mode relies on this: inside the requested
  // region, a region decode is the full decode's pixels, byte for byte.
  struct Kind {
    int h, w, c;
    test::Subsampling sub;
  };
  const Kind kinds[] = {{375, 500, 3, test::Subsampling::k420}, {333, 497, 3, test::Subsampling::k422},
                        {301, 211, 3, test::Subsampling::k444}, {257, 389, 1, test::Subsampling::k420},
                        {64, 48, 3, test::Subsampling::k420}};
  int checked = 0, identical_whole = 0;
  for (const Kind& k : kinds) {
    const auto jpeg = EncodeJpeg(PhotoLike(k.h, k.w, k.c, static_cast<uint32_t>(k.h)), k.h, k.w, k.c, 90, k.sub);
    for (int channels : {3, 1}) {
      const Sample full = DecodeOrDie(jpeg, channels);
      SampleRng rng(7, 0, static_cast<uint64_t>(k.h * 10 + channels));
      for (int trial = 0; trial < 40; ++trial) {
        internal::JpegRegion want;
        want.top = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(k.h)));
        want.left = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(k.w)));
        want.bottom = want.top + 1 + static_cast<int>(rng.NextBelow(static_cast<uint64_t>(k.h - want.top)));
        want.right = want.left + 1 + static_cast<int>(rng.NextBelow(static_cast<uint64_t>(k.w - want.left)));
        Sample part;
        internal::JpegRegion got;
        ASSERT_TRUE(internal::DecodeJpegRegion(jpeg.data(), jpeg.size(), channels, want, 16, &part, &got).ok());
        ASSERT_LE(got.top, want.top);
        ASSERT_LE(got.left, want.left);
        ASSERT_GE(got.bottom, want.bottom);
        ASSERT_GE(got.right, want.right);
        ASSERT_EQ(part.height(), got.bottom - got.top);
        ASSERT_EQ(part.width(), got.right - got.left);
        bool whole_same = true;
        for (int y = got.top; y < got.bottom; ++y) {
          for (int x = got.left; x < got.right; ++x) {
            for (int ch = 0; ch < channels; ++ch) {
              const uint8_t a = part.pixels()[((y - got.top) * part.width() + (x - got.left)) * channels + ch];
              const uint8_t b = full.pixels()[(static_cast<size_t>(y) * k.w + x) * channels + ch];
              const bool inside = y >= want.top && y < want.bottom && x >= want.left && x < want.right;
              if (inside) {
                ASSERT_EQ(a, b) << k.h << "x" << k.w << "x" << k.c << " as " << channels << " at (" << y
                                << ", " << x << ") of region " << want.top << ".." << want.bottom << " x "
                                << want.left << ".." << want.right;
              }
              whole_same &= a == b;
            }
          }
        }
        identical_whole += whole_same;
        ++checked;
      }
    }
  }
  std::printf("[ region  ] %d region decodes equal to the full decode inside the region; %d of them "
              "also over the margin\n", checked, identical_whole);
}

TEST(DecodeTest, RegionDecodeRefusesWhatItCannotCropAndFindsTruncation) {
  test::TempDir dir;
  const auto jpeg = EncodeJpeg(PhotoLike(40, 60, 3, 1), 40, 60, 3);
  const auto progressive = ReadFile(test::GoldenPath("decode/progressive.jpg"));
  const auto cmyk = ReadFile(test::GoldenPath("decode/cmyk.jpg"));
  internal::JpegRegion want{5, 5, 20, 20, 8}, got;
  Sample s;
  EXPECT_EQ(internal::DecodeJpegRegion(progressive.data(), progressive.size(), 3, want, 16, &s, &got).code(),
            StatusCode::kUnimplemented);
  EXPECT_EQ(internal::DecodeJpegRegion(cmyk.data(), cmyk.size(), 3, want, 16, &s, &got).code(),
            StatusCode::kUnimplemented);
  want.num = 3;
  EXPECT_EQ(internal::DecodeJpegRegion(jpeg.data(), jpeg.size(), 3, want, 16, &s, &got).code(),
            StatusCode::kInvalidArgument);
  want.num = 8;
  const std::vector<uint8_t> garbage = {0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 'x', 'y', 0xFF, 0xD9};
  EXPECT_EQ(internal::DecodeJpegRegion(garbage.data(), garbage.size(), 3, want, 16, &s, &got).code(),
            StatusCode::kDataLoss);
  // The thread's libjpeg state recovers after an error.
  EXPECT_TRUE(internal::DecodeJpegRegion(jpeg.data(), jpeg.size(), 3, want, 16, &s, &got).ok());
}

// ---- image folders --------------------------------------------------------------

// Writes a binary PGM (channels 1) or PPM (channels 3) of the given HWC bytes.
void WritePnm(const std::string& path, int h, int w, int channels, const std::vector<uint8_t>& hwc) {
  std::string header = (channels == 1 ? "P5\n" : "P6\n") + std::to_string(w) + " " +
                       std::to_string(h) + "\n255\n";
  std::vector<uint8_t> bytes(header.begin(), header.end());
  bytes.insert(bytes.end(), hwc.begin(), hwc.end());
  WriteFile(path, bytes);
}

std::vector<std::string> Paths(const ImageFolderDataset& ds, const std::string& root) {
  std::vector<std::string> out;
  for (size_t i = 0; i < ds.size(); ++i) out.push_back(ds.path(i).substr(root.size() + 1));
  return out;
}

TEST(ImageFolderTest, ClassesSortedPixelsInRgbOrderAnySize) {
  TempDir root;
  fs::create_directories(root.path() / "dog");
  fs::create_directories(root.path() / "cat");
  fs::create_directories(root.path() / ".hidden");
  const auto a = PhotoLike(4, 5, 3, 1), b = PhotoLike(7, 3, 3, 2), c = PhotoLike(2, 9, 3, 3);
  WritePnm(root / "dog/b.ppm", 7, 3, 3, b);
  WritePnm(root / "dog/a.ppm", 4, 5, 3, a);
  WritePnm(root / "cat/z.ppm", 2, 9, 3, c);
  WritePnm(root / ".hidden/x.ppm", 2, 9, 3, c);
  WritePnm(root / "cat/.y.ppm", 2, 9, 3, c);
  WriteFile(root / "cat/notes.txt", Bytes("hi"));

  auto ds = ImageFolderDataset::Open(root.path().string());
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->classes(), (std::vector<std::string>{"cat", "dog"}));
  EXPECT_FALSE((*ds)->shape().fixed_size());
  EXPECT_EQ((*ds)->shape().channels, 3);
  ASSERT_EQ((*ds)->size(), 3u);
  Sample s;
  // Sorted: cat/z, dog/a, dog/b. PPM stores RGB; samples are RGB.
  const std::vector<uint8_t>* want[] = {&c, &a, &b};
  const int64_t labels[] = {0, 1, 1};
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE((*ds)->Get(i, &s).ok());
    EXPECT_EQ(s.label(), labels[i]);
    EXPECT_EQ(std::vector<uint8_t>(s.pixels(), s.pixels() + s.pixel_bytes()), *want[i]) << i;
  }
  // The buffer form needs one size.
  std::vector<uint8_t> buf(64);
  int64_t label;
  EXPECT_EQ((*ds)->Get(0, buf.data(), &label).code(), StatusCode::kFailedPrecondition);
}

TEST(ImageFolderTest, ImagesAtAnyDepthInTorchvisionsOrder) {
  TempDir root;
  for (const char* d : {"c/a/b", "c/a-b", "c/A", "d/deep/er/est", "d/.git"}) fs::create_directories(root.path() / d);
  const auto img = PhotoLike(3, 4, 3, 0);
  for (const char* f : {"c/w.jpg", "c/a/x.JPG", "c/a-b/y.png", "c/a/b/z.jpeg", "c/A/v.webp",
                        "c/a/b/u.bmp", "d/deep/er/est/q.tif", "d/deep/p.ppm", "d/.git/h.png"}) {
    WriteFile(root / f, Bytes("x"));
  }
  // A link back up the tree must not make the scan endless.
  fs::create_directory_symlink("..", root.path() / "c/a/b/up");
  std::vector<ScanProgress> reports;
  ImageDatasetOptions o;
  o.progress = [&](const ScanProgress& p) { reports.push_back(p); };
  auto ds = ImageFolderDataset::Open(root.path().string() + "/", o);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  // torchvision: sorted(os.walk(class)) orders folders by path string, so
  // "" < "A" < "a" < "a-b" < "a/b" ('-' 0x2D sorts before '/' 0x2F), then
  // the files of each folder sorted.
  EXPECT_EQ(Paths(**ds, root.path().string()),
            (std::vector<std::string>{"c/w.jpg", "c/A/v.webp", "c/a/x.JPG", "c/a-b/y.png",
                                      "c/a/b/u.bmp", "c/a/b/z.jpeg", "d/deep/p.ppm",
                                      "d/deep/er/est/q.tif"}));
  EXPECT_EQ((*ds)->label(6), 1);
  ASSERT_FALSE(reports.empty());
  EXPECT_TRUE(reports.back().done);
  EXPECT_EQ(reports.back().samples, 8u);
}

TEST(ImageFolderTest, GrayChannelsAndAFixedSize) {
  TempDir root;
  fs::create_directories(root.path() / "x");
  const auto rgb = PhotoLike(6, 9, 3, 4);
  WritePnm(root / "x/big.ppm", 6, 9, 3, rgb);
  ImageDatasetOptions o;
  o.channels = 1;
  auto ds = ImageFolderDataset::Open(root.path().string(), o);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  Sample s;
  ASSERT_TRUE((*ds)->Get(0, &s).ok());
  ASSERT_EQ(s.channels(), 1);
  for (size_t i = 0; i < 54; ++i) {
    ASSERT_EQ(s.pixels()[i], internal::PilLuma(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]));
  }
  o.height = 4;
  o.width = 4;
  ds = ImageFolderDataset::Open(root.path().string(), o);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_TRUE((*ds)->shape().fixed_size());
  std::vector<uint8_t> out(16);
  int64_t label;
  ExpectError((*ds)->Get(0, out.data(), &label), StatusCode::kInvalidArgument, root / "x/big.ppm",
              "the image is 6x9 (HxW) but the dataset requires 4x4");
}

TEST(ImageFolderTest, UnreadableAndUndecodableFilesAreNamed) {
  TempDir root;
  fs::create_directories(root.path() / "x");
  WriteFile(root / "x/broken.png", {0x89, 'P', 'N', 'G', 1, 2, 3});
  WriteFile(root / "x/gone.jpg", Bytes("soon deleted"));
  auto ds = ImageFolderDataset::Open(root.path().string());
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  Sample s;
  ExpectError((*ds)->Get(0, &s), StatusCode::kDataLoss, root / "x/broken.png", "not an image");
  fs::remove(root / "x/gone.jpg");
  ExpectError((*ds)->Get(1, &s), StatusCode::kNotFound, root / "x/gone.jpg", "moved or deleted");
  EXPECT_EQ((*ds)->Read(2, &s).code(), StatusCode::kInvalidArgument);
}

TEST(ImageFolderTest, OpenErrors) {
  TempDir root;
  ExpectError(ImageFolderDataset::Open(root / "nope").status(), StatusCode::kNotFound,
              root / "nope", "no such directory");
  ExpectError(ImageFolderDataset::Open(root.path().string()).status(), StatusCode::kNotFound,
              root.path().string(), "no class subfolders");
  fs::create_directories(root.path() / "empty/sub");
  WriteFile(root / "empty/sub/readme.txt", Bytes("no images"));
  ExpectError(ImageFolderDataset::Open(root.path().string()).status(), StatusCode::kNotFound,
              root / "empty", "no images");
  ImageDatasetOptions o;
  o.channels = 2;
  EXPECT_EQ(ImageFolderDataset::Open(root.path().string(), o).status().code(),
            StatusCode::kInvalidArgument);
  o.channels = 3;
  o.height = 10;
  EXPECT_EQ(ImageFolderDataset::Open(root.path().string(), o).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ImageFolderTest, FingerprintFollowsFilesLabelsAndOptions) {
  TempDir root;
  fs::create_directories(root.path() / "a");
  fs::create_directories(root.path() / "b");
  WriteFile(root / "a/1.jpg", Bytes("one"));
  WriteFile(root / "b/2.jpg", Bytes("two"));
  WriteFile(root / "b/3.jpg", Bytes("three"));
  auto fp = [&](ImageDatasetOptions o = {}) {
    auto ds = ImageFolderDataset::Open(root.path().string(), o);
    EXPECT_TRUE(ds.ok()) << ds.status().ToString();
    return ds.ok() ? (*ds)->Fingerprint() : 0;
  };
  const uint64_t base = fp();
  EXPECT_EQ(fp(), base);
  ImageDatasetOptions gray;
  gray.channels = 1;
  EXPECT_NE(fp(gray), base);
  WriteFile(root / "a/1.jpg", Bytes("ONE!"));  // another size
  const uint64_t resized = fp();
  EXPECT_NE(resized, base);
  fs::last_write_time(root / "a/1.jpg", fs::last_write_time(root / "a/1.jpg") - std::chrono::hours(1));
  EXPECT_NE(fp(), resized);  // another mtime
  fs::rename(root / "b/2.jpg", root / "a/2.jpg");  // another label
  EXPECT_NE(fp(), resized);
}

// ---- list files -----------------------------------------------------------------

TEST(ImageListTest, LinesArePathCommaLabelRelativeToTheList) {
  TempDir dir;
  fs::create_directories(dir.path() / "imgs");
  const auto a = PhotoLike(5, 6, 3, 5), b = PhotoLike(3, 3, 3, 6);
  WritePnm(dir / "imgs/a.ppm", 5, 6, 3, a);
  WritePnm(dir / "imgs/b,c.ppm", 3, 3, 3, b);
  WriteFile(dir / "list.txt",
            Bytes("# path,label\n\nimgs/a.ppm,3\n  imgs/b,c.ppm , 12  \r\n" + (dir / "imgs/a.ppm") +
                  ",-7\n"));
  auto ds = ImageListDataset::Open(dir / "list.txt");
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ((*ds)->size(), 3u);
  EXPECT_EQ((*ds)->path(1), dir / "imgs/b,c.ppm");
  Sample s;
  ASSERT_TRUE((*ds)->Get(0, &s).ok());
  EXPECT_EQ(s.label(), 3);
  EXPECT_EQ(std::vector<uint8_t>(s.pixels(), s.pixels() + s.pixel_bytes()), a);
  ASSERT_TRUE((*ds)->Get(1, &s).ok());
  EXPECT_EQ(s.label(), 12);
  EXPECT_EQ(std::vector<uint8_t>(s.pixels(), s.pixels() + s.pixel_bytes()), b);
  ASSERT_TRUE((*ds)->Get(2, &s).ok());
  EXPECT_EQ(s.label(), -7);

  // Another root; the fingerprint is the list's bytes and the root.
  auto rooted = ImageListDataset::Open(dir / "list.txt", {}, dir / "imgs/..");
  ASSERT_TRUE(rooted.ok());
  EXPECT_NE((*rooted)->Fingerprint(), (*ds)->Fingerprint());
  EXPECT_EQ(ImageListDataset::Open(dir / "list.txt").value()->Fingerprint(), (*ds)->Fingerprint());
}

TEST(ImageListTest, BadLinesNameFileAndLine) {
  TempDir dir;
  const struct {
    const char* text;
    const char* what;
  } bad[] = {{"a.jpg,1\nb.jpg\n", ":2: 'b.jpg' has no comma"},
             {"a.jpg,one\n", ":1: label 'one' is not an integer"},
             {"\n,4\n", ":2: the path before the comma is empty"},
             {"# nothing\n\n", "lists no images"}};
  for (const auto& b : bad) {
    WriteFile(dir / "list.txt", Bytes(b.text));
    ExpectError(ImageListDataset::Open(dir / "list.txt").status(), StatusCode::kInvalidArgument,
                dir / "list.txt", b.what);
  }
  ExpectError(ImageListDataset::Open(dir / "missing.txt").status(), StatusCode::kNotFound,
              dir / "missing.txt", "cannot open the image list");
}

// ---- WebDataset -----------------------------------------------------------------

TEST(ShardPatternTest, BraceRangesAndLists) {
  auto ok = [](const std::string& p) {
    auto r = ExpandShardPattern(p);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<std::string>{};
  };
  EXPECT_EQ(ok("s/train-{000000..000002}.tar"),
            (std::vector<std::string>{"s/train-000000.tar", "s/train-000001.tar", "s/train-000002.tar"}));
  EXPECT_EQ(ok("x{8..11}.tar"), (std::vector<std::string>{"x8.tar", "x9.tar", "x10.tar", "x11.tar"}));
  EXPECT_EQ(ok("{a,b}-{0..1}.tar"), (std::vector<std::string>{"a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"}));
  EXPECT_EQ(ok("one.tar  two.tar"), (std::vector<std::string>{"one.tar", "two.tar"}));
  EXPECT_EQ(ok("{0098..0101}"), (std::vector<std::string>{"0098", "0099", "0100", "0101"}));
  for (const char* bad : {"x{1..}.tar", "x{3..1}.tar", "x{1..2.tar", "x}.tar", "x{a..b}.tar", ""}) {
    EXPECT_EQ(ExpandShardPattern(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// Shards of `per_shard` samples each: sample n has key "dir/sample%05d",
// a JPEG of its own size and label n (so a label names its sample).
struct Shards {
  std::string pattern;
  std::vector<std::vector<uint8_t>> jpegs;  // by label
};

Shards WriteShards(const TempDir& dir, int shards, int per_shard) {
  Shards out;
  char pattern[64];
  std::snprintf(pattern, sizeof pattern, "shard-{000..%03d}.tar", shards - 1);
  out.pattern = dir / pattern;
  int n = 0;
  for (int s = 0; s < shards; ++s) {
    std::vector<test::TarMember> members;
    for (int i = 0; i < per_shard; ++i, ++n) {
      char key[64];
      std::snprintf(key, sizeof key, "dir/sample%05d", n);
      const int h = 8 + n % 13, w = 9 + (n * 7) % 17;
      out.jpegs.push_back(EncodeJpeg(PhotoLike(h, w, 3, static_cast<uint32_t>(n)), h, w, 3));
      // WebDataset writers put members of a sample together, in any order.
      if (n % 2) members.push_back({std::string(key) + ".cls", Bytes(std::to_string(n) + "\n")});
      members.push_back({std::string(key) + ".jpg", out.jpegs.back()});
      members.push_back({std::string(key) + ".json", Bytes("{}")});
      if (n % 2 == 0) members.push_back({std::string(key) + ".cls", Bytes(std::to_string(n))});
    }
    char name[32];
    std::snprintf(name, sizeof name, "shard-%03d.tar", s);
    test::WriteTar(dir / name, members);
  }
  return out;
}

TEST(WebDatasetTest, ReadsEverySampleInPlace) {
  TempDir dir;
  const Shards shards = WriteShards(dir, 3, 7);
  WebDatasetOptions o;
  std::vector<ScanProgress> reports;
  o.image.progress = [&](const ScanProgress& p) { reports.push_back(p); };
  auto ds = WebDataset::Open(shards.pattern, o);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  ASSERT_EQ((*ds)->size(), 21u);
  EXPECT_EQ((*ds)->shards().size(), 3u);
  ASSERT_FALSE(reports.empty());
  EXPECT_TRUE(reports.back().done);
  Sample s;
  for (size_t i = 0; i < 21; ++i) {
    ASSERT_TRUE((*ds)->Read(i, &s).ok());
    EXPECT_EQ(s.label(), static_cast<int64_t>(i));
    // Exactly the member's bytes, read at the offset the scan recorded.
    EXPECT_EQ(std::vector<uint8_t>(s.encoded(), s.encoded() + s.encoded_size()), shards.jpegs[i]) << i;
    ASSERT_TRUE((*ds)->Get(i, &s).ok());
    EXPECT_EQ(s.height(), 8 + static_cast<int>(i) % 13);
  }
  char key[32];
  std::snprintf(key, sizeof key, "dir/sample%05d", 9);
  EXPECT_EQ((*ds)->key(9), key);
  EXPECT_EQ((*ds)->SampleName(9), dir / "shard-001.tar" + ":" + key + ".jpg");
  EXPECT_EQ((*ds)->shard_of(9), 1u);
  EXPECT_EQ(WebDataset::Open(shards.pattern).value()->Fingerprint(), (*ds)->Fingerprint());
}

TEST(WebDatasetTest, ProducersSplitWholeShards) {
  TempDir dir;
  const Shards shards = WriteShards(dir, 5, 4);
  std::multiset<int64_t> seen;
  std::set<uint64_t> fingerprints;
  for (size_t p = 0; p < 2; ++p) {
    WebDatasetOptions o;
    o.shard_index = p;
    o.num_shards = 2;
    auto ds = WebDataset::Open(shards.pattern, o);
    ASSERT_TRUE(ds.ok()) << ds.status().ToString();
    EXPECT_EQ((*ds)->shards().size(), p == 0 ? 3u : 2u);
    fingerprints.insert((*ds)->Fingerprint());
    Sample s;
    for (size_t i = 0; i < (*ds)->size(); ++i) {
      ASSERT_TRUE((*ds)->Read(i, &s).ok());
      seen.insert(s.label());
      // Shard k holds samples 4k .. 4k + 3.
      EXPECT_EQ(s.label() / 4 % 2, static_cast<int64_t>(p));
    }
  }
  EXPECT_EQ(fingerprints.size(), 2u);
  ASSERT_EQ(seen.size(), 20u);
  for (int64_t n = 0; n < 20; ++n) EXPECT_EQ(seen.count(n), 1u) << n;
  WebDatasetOptions too_many;
  too_many.shard_index = 5;
  too_many.num_shards = 6;
  ExpectError(WebDataset::Open(shards.pattern, too_many).status(), StatusCode::kInvalidArgument,
              shards.pattern, "has 5 shards, too few for shard 5 of 6");
}

TEST(WebDatasetTest, BadShardsAreRefusedNamingShardAndKey) {
  TempDir dir;
  const auto jpeg = EncodeJpeg(PhotoLike(8, 8, 3, 0), 8, 8, 3);
  test::WriteTar(dir / "nolabel.tar", {{"a.jpg", jpeg}, {"b.jpg", jpeg}, {"b.cls", Bytes("1")}});
  ExpectError(WebDataset::Open(dir / "nolabel.tar").status(), StatusCode::kInvalidArgument,
              dir / "nolabel.tar", "sample 'a' has no .cls label member");
  test::WriteTar(dir / "noimage.tar", {{"a.txt", Bytes("x")}, {"a.cls", Bytes("1")}});
  ExpectError(WebDataset::Open(dir / "noimage.tar").status(), StatusCode::kInvalidArgument,
              dir / "noimage.tar", "sample 'a' has no image");
  test::WriteTar(dir / "badlabel.tar", {{"a.jpg", jpeg}, {"a.cls", Bytes("cat")}});
  ExpectError(WebDataset::Open(dir / "badlabel.tar").status(), StatusCode::kInvalidArgument,
              dir / "badlabel.tar:a.cls", "label 'cat' is not an integer");
  test::WriteTar(dir / "gz.tar.gz", {{"a.jpg", jpeg}, {"a.cls", Bytes("1")}}, /*gzip=*/true);
  ExpectError(WebDataset::Open(dir / "gz.tar.gz").status(), StatusCode::kInvalidArgument,
              dir / "gz.tar.gz", "compressed (gzip)");
  WriteFile(dir / "notatar.tar", Bytes("hello, this is not a tar file at all"));
  EXPECT_FALSE(WebDataset::Open(dir / "notatar.tar").ok());
  ExpectError(WebDataset::Open(dir / "missing-{0..1}.tar").status(), StatusCode::kNotFound,
              dir / "missing-0.tar", "no such shard");
  // Another label member.
  test::WriteTar(dir / "other.tar", {{"a.jpg", jpeg}, {"a.label", Bytes("5")}});
  WebDatasetOptions o;
  o.label_extension = "label";
  auto ds = WebDataset::Open(dir / "other.tar", o);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->label(0), 5);
}

}  // namespace
}  // namespace datafeed
