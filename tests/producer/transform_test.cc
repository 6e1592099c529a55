#include "datafeed/producer/transform.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.h"
#include "golden_util.h"
#include "transform_internal.h"

namespace datafeed {
namespace {

constexpr double kTolerance = 1e-5;
const char* const kReference = "to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)";

// ---- goldens --------------------------------------------------------------------

using test::GoldenArray;
using test::GoldenCase;
using test::GoldenPath;
using test::ReadGoldenArray;

// Outputs of PIL's uint8 arithmetic (resize, resized_crop, color_jitter on
// PIL images) must match to the uint8 step: datafeed reproduces PIL's fixed
// point exactly, so any difference is a regression.
constexpr int kUint8Tolerance = 0;

// The transform cases: everything but decode and file (image_test.cc).
std::vector<GoldenCase> TransformCases() {
  std::vector<GoldenCase> out;
  for (const GoldenCase& c : test::LoadManifest()) {
    if (c.kind != "decode" && c.kind != "file") out.push_back(c);
  }
  return out;
}

double MaxAbsDiff(const float* a, const float* b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(d <= worst)) worst = d;  // NaN counts as worst
  }
  return worst;
}

// What a case's comparison found: float cases set max_abs, uint8 cases the
// byte difference.
struct CaseResult {
  bool uint8 = false;
  double max_abs = 0;   // float outputs
  test::ByteDiff bytes;  // uint8 outputs
};

double ParseFactor(const std::string& s) { return s == "-" ? std::nan("") : std::stod(s); }

// Runs one golden case against datafeed.
CaseResult RunCase(const GoldenCase& c) {
  CaseResult r;
  r.max_abs = INFINITY;
  const GoldenArray in = ReadGoldenArray(c.input);
  const GoldenArray want = ReadGoldenArray(c.output);
  EXPECT_EQ(in.dtype, 1);
  if (in.dims.size() != 3 || want.dims.size() != 3) return r;
  const int h = in.dims[0], w = in.dims[1], ch = in.dims[2];
  std::vector<float> got(want.numel(), std::nanf(""));
  if (c.kind == "pipeline") {
    const std::string& spec = c.fields.at(0);
    auto p = Pipeline::Make(spec);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return r;
    auto shape = p->OutputShape(h, w, ch);
    EXPECT_TRUE(shape.ok()) << shape.status().ToString();
    if (!shape.ok()) return r;
    EXPECT_EQ(shape->dtype, DType::kFloat32);
    EXPECT_EQ(std::vector<int>({shape->channels, shape->height, shape->width}), want.dims);
    Status st = p->Run(in.u8(), h, w, ch, got.data(), SampleRng(1, 2, 3));
    EXPECT_TRUE(st.ok()) << st.ToString();
  } else if (c.kind == "crop" || (c.kind == "rrc" && want.dtype == 8)) {
    // Float32 CHW in (to_tensor of the input), float32 out.
    auto p = Pipeline::Make("to_tensor");
    EXPECT_TRUE(p.ok());
    std::vector<float> chw(in.numel());
    EXPECT_TRUE(p->Run(in.u8(), h, w, ch, chw.data(), SampleRng(0)).ok());
    const ImageView src{ImageShape{DType::kFloat32, ch, h, w}, chw.data()};
    const int top = std::stoi(c.fields.at(0)), left = std::stoi(c.fields.at(1));
    const int ch_h = std::stoi(c.fields.at(2)), ch_w = std::stoi(c.fields.at(3));
    if (c.kind == "crop") {
      const MutableImageView dst{ImageShape{DType::kFloat32, ch, ch_h, ch_w}, got.data()};
      EXPECT_EQ(std::vector<int>({ch, ch_h, ch_w}), want.dims);
      internal::CropZeroPad(src, top, left, dst);
    } else {
      const MutableImageView dst{ImageShape{DType::kFloat32, ch, want.dims[1], want.dims[2]}, got.data()};
      internal::ResizedCrop(src, internal::CropBox{top, left, ch_h, ch_w}, dst);
    }
  } else {
    // uint8 HWC in and out: PIL's arithmetic.
    r.uint8 = true;
    EXPECT_EQ(want.dtype, 1) << c.output;
    std::vector<uint8_t> out(want.numel(), 0);
    const ImageView src{ImageShape{DType::kUInt8, ch, h, w}, in.u8()};
    const MutableImageView dst{ImageShape{DType::kUInt8, want.dims[2], want.dims[0], want.dims[1]},
                               out.data()};
    if (c.kind == "rrc") {
      internal::ResizedCrop(src, internal::CropBox{std::stoi(c.fields.at(0)), std::stoi(c.fields.at(1)),
                                                   std::stoi(c.fields.at(2)), std::stoi(c.fields.at(3))},
                            dst);
    } else if (c.kind == "jitter") {
      EXPECT_EQ(want.dims, in.dims);
      internal::ColorJitterParams params;
      for (int k = 0; k < 4; ++k) params.order[k] = std::stoi(c.fields.at(static_cast<size_t>(k)));
      for (int k = 0; k < 4; ++k) {
        const double f = ParseFactor(c.fields.at(static_cast<size_t>(4 + k)));
        params.has[k] = !std::isnan(f);
        params.factor[k] = params.has[k] ? f : 0.0;
      }
      internal::ApplyColorJitter(params, src, dst);
    } else {
      ADD_FAILURE() << "unknown golden kind " << c.kind;
      return r;
    }
    r.bytes = test::CompareBytes(out.data(), want.u8(), out.size());
    return r;
  }
  r.max_abs = MaxAbsDiff(got.data(), want.f32(), want.numel());
  return r;
}

class GoldenParityTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenParityTest, MatchesTorchvision) {
  const GoldenCase& c = GetParam();
  const CaseResult r = RunCase(c);
  if (r.uint8) {
    EXPECT_LE(r.bytes.max, kUint8Tolerance)
        << c.kind << " on " << c.input << ": max " << r.bytes.max << ", mean " << r.bytes.mean;
  } else {
    EXPECT_LE(r.max_abs, kTolerance) << c.kind << " " << (c.fields.empty() ? "" : c.fields[0])
                                     << " on " << c.input;
  }
}

INSTANTIATE_TEST_SUITE_P(Torchvision, GoldenParityTest, ::testing::ValuesIn(TransformCases()),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           return info.param.output;
                         });

TEST(GoldenSummaryTest, EveryTransformIsCoveredAndWorstDiffIsReported) {
  const auto cases = TransformCases();
  ASSERT_GE(cases.size(), 60u);
  double worst = 0, worst_ref = 0, byte_sum = 0;
  int exact = 0, byte_worst = 0;
  size_t byte_cases = 0;
  std::string worst_spec;
  std::string all_specs;
  for (const auto& c : cases) {
    const CaseResult r = RunCase(c);
    if (r.uint8) {
      byte_worst = std::max(byte_worst, r.bytes.max);
      byte_sum += r.bytes.mean;
      ++byte_cases;
      exact += r.bytes.max == 0;
      all_specs += c.kind == "rrc" ? "random_resized_crop," : "color_jitter,";
      continue;
    }
    exact += r.max_abs == 0;
    const std::string spec = c.kind == "pipeline" ? c.fields[0] : c.kind;
    if (r.max_abs > worst) {
      worst = r.max_abs;
      worst_spec = spec;
    }
    if (spec == kReference) worst_ref = std::max(worst_ref, r.max_abs);
    all_specs += (c.kind == "rrc" ? "random_resized_crop" : spec) + ",";
  }
  for (const char* name : {"to_tensor", "normalize", "gaussian_blur", "resize", "center_crop",
                           "random_horizontal_flip", "random_resized_crop", "color_jitter"}) {
    EXPECT_NE(all_specs.find(name), std::string::npos) << name << " has no golden";
  }
  std::printf("[ goldens ] %zu cases, %d bit-identical; float: worst max|diff| %.3g (%s), reference "
              "pipeline %.3g; uint8 (PIL resize/resized_crop/color_jitter, %zu cases): max diff %d, "
              "mean diff %.4f\n",
              cases.size(), exact, worst, worst_spec.c_str(), worst_ref, byte_cases, byte_worst,
              byte_cases ? byte_sum / static_cast<double>(byte_cases) : 0.0);
  EXPECT_LE(worst, kTolerance);
  EXPECT_LE(byte_worst, kUint8Tolerance);
}

// ---- pipelines ---------------------------------------------------------------------

Pipeline MakeOrDie(const std::string& spec) {
  auto p = Pipeline::Make(spec);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p).value();
}

std::vector<uint8_t> TestImage(int h, int w, int c, uint32_t salt = 0) {
  std::vector<uint8_t> img(static_cast<size_t>(h) * w * c);
  uint64_t x = 0x1234 + salt;
  for (auto& v : img) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<uint8_t>(x >> 56);
  }
  return img;
}

std::vector<float> RunOrDie(const Pipeline& p, const std::vector<uint8_t>& img, int h, int w, int c,
                            SampleRng rng) {
  auto shape = p.OutputShape(h, w, c);
  EXPECT_TRUE(shape.ok()) << shape.status().ToString();
  std::vector<float> out(shape.ok() ? shape->num_elements() : 0);
  Status st = p.Run(img.data(), h, w, c, out.data(), rng);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

TEST(PipelineTest, FusesToTensorAndNormalizeAndResolvesDefaults) {
  Pipeline p = MakeOrDie(kReference);
  EXPECT_EQ(p.spec(), kReference);
  EXPECT_EQ(p.Describe(), "to_tensor+normalize(0.1307, 0.3081) -> gaussian_blur(11, 2)");
  EXPECT_EQ(MakeOrDie(" to_tensor , random_horizontal_flip ").Describe(),
            "to_tensor -> random_horizontal_flip(0.5)");
}

TEST(PipelineTest, FusedNormalizeIsBitIdenticalToUnfused) {
  const auto img = TestImage(28, 28, 3);
  for (const char* norm : {"normalize(0.1307,0.3081)", "normalize(0.485,0.456,0.406,0.229,0.224,0.225)"}) {
    const Pipeline fused = MakeOrDie(std::string("to_tensor,") + norm);
    // A no-op flip in between prevents fusion.
    const Pipeline unfused = MakeOrDie(std::string("to_tensor,random_horizontal_flip(0),") + norm);
    EXPECT_NE(unfused.Describe().find("-> normalize"), std::string::npos);
    const auto a = RunOrDie(fused, img, 28, 28, 3, SampleRng(0));
    const auto b = RunOrDie(unfused, img, 28, 28, 3, SampleRng(0));
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << norm;
  }
}

TEST(PipelineTest, OutputShapes) {
  auto shape = [](const std::string& spec, int h, int w, int c) {
    auto p = Pipeline::Make(spec);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    auto s = p->OutputShape(h, w, c);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::vector<int>{s->channels, s->height, s->width} : std::vector<int>{};
  };
  EXPECT_EQ(shape(kReference, 28, 28, 1), (std::vector<int>{1, 28, 28}));
  EXPECT_EQ(shape("to_tensor,resize(16)", 32, 40, 3), (std::vector<int>{3, 16, 20}));
  EXPECT_EQ(shape("to_tensor,resize(16)", 40, 32, 3), (std::vector<int>{3, 20, 16}));
  EXPECT_EQ(shape("resize(10,12),to_tensor", 32, 40, 3), (std::vector<int>{3, 10, 12}));
  EXPECT_EQ(shape("to_tensor,center_crop(20)", 28, 28, 1), (std::vector<int>{1, 20, 20}));
  EXPECT_EQ(shape("random_crop(24,20,2),to_tensor", 28, 28, 1), (std::vector<int>{1, 24, 20}));
}

TEST(PipelineTest, ShapeErrorsNameTheTransform) {
  const Pipeline blur = MakeOrDie("to_tensor,gaussian_blur(11)");
  Status st = blur.OutputShape(5, 28, 1).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("gaussian_blur(11"), std::string::npos) << st.message();
  std::vector<float> out(5 * 28);
  const auto img = TestImage(5, 28, 1);
  EXPECT_EQ(blur.Run(img.data(), 5, 28, 1, out.data(), SampleRng(0)).code(),
            StatusCode::kInvalidArgument);

  const Pipeline crop = MakeOrDie("random_crop(40,4),to_tensor");
  st = crop.OutputShape(28, 28, 1).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("36x36 after padding"), std::string::npos) << st.message();

  const Pipeline norm = MakeOrDie("to_tensor,normalize(0.1,0.2,0.3,0.4,0.5,0.6)");
  st = norm.OutputShape(28, 28, 1).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("3 means and stds but the image has 1 channel"), std::string::npos)
      << st.message();
}


// Pipeline::Make refuses `spec` with InvalidArgument, quoting the spec and
// saying `expect`.
void ExpectRefused(const char* spec, const char* expect) {
  auto p = Pipeline::Make(spec);
  ASSERT_FALSE(p.ok()) << spec;
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << spec;
  EXPECT_NE(p.status().message().find(expect), std::string::npos)
      << "spec '" << spec << "' gave: " << p.status().message();
  EXPECT_NE(p.status().message().find(std::string("'") + spec + "'"), std::string::npos)
      << p.status().message();
}

TEST(PipelineTest, BadSpecsAreInvalidArgumentNamingThePart) {
  struct Bad {
    const char* spec;
    const char* expect;  // substring of the message
  };
  const Bad bad[] = {
      {"to_tensor,normalise(0.1,0.2)", "unknown transform 'normalise'; known transforms: "
                                       "center_crop, color_jitter, gaussian_blur, normalize, "
                                       "random_crop, random_horizontal_flip, random_resized_crop, "
                                       "resize, to_tensor"},
      {"", "is empty"},
      {"to_tensor,,normalize(0.1,0.2)", "stray comma"},
      {"to_tensor,normalize(0.1,0.2", "unmatched '('"},
      {"to_tensor,normalize(0.1,(0.2))", "nested parentheses"},
      {"to_tensor,normalize(0.1,abc)", "'abc' is not a number"},
      {"to_tensor,normalize(0.1,0.2)x", "text after ')'"},
      {"to_tensor,normalize(0.1)", "normalize(0.1): takes (mean, std)"},
      {"to_tensor,normalize(0.1,0)", "divide by zero"},
      {"to_tensor,gaussian_blur(10)", "gaussian_blur(10): kernel_size must be odd"},
      {"to_tensor,gaussian_blur(11,-1)", "sigma must be positive"},
      {"to_tensor,gaussian_blur(11,2,1)", "min <= max"},
      {"to_tensor,gaussian_blur(3.5)", "kernel_size must be an integer"},
      {"to_tensor,resize(0)", "resize(0): size must be an integer"},
      {"to_tensor,resize(1,2,3)", "takes (size) or (height, width), got 3 arguments"},
      {"to_tensor,random_horizontal_flip(1.5)", "p must be in [0, 1]"},
      {"to_tensor(1)", "to_tensor(1): takes no arguments"},
      {"normalize(0.1,0.2),to_tensor", "normalize(0.1, 0.2) gets a uint8 HWC image here but takes "
                                       "float32 CHW; put it after to_tensor"},
      {"to_tensor,to_tensor", "to_tensor gets a float32 CHW image here but takes uint8 HWC"},
      {"center_crop(20)", "a pipeline must produce float32, add to_tensor"},
      // Found by tests/fuzz/pipeline_fuzz.cc (corpus/pipeline/repro-jitter-1e98):
      // a factor past float's range made NaN pixels (undefined behaviour).
      {"color_jitter(0.4,1e98),to_tensor", "contrast must be at most"},
  };
  for (const Bad& b : bad) ExpectRefused(b.spec, b.expect);
}

// A user transform: 1 - x on float images.
class Invert final : public Transform {
 public:
  std::string ToString() const override { return "invert"; }
  Result<ImageShape> OutputShape(const ImageShape& in) const override { return in; }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng&) const override {
    for (size_t i = 0; i < in.shape.num_elements(); ++i) out.as<float>()[i] = 1.0f - in.as<float>()[i];
    return Status::OK();
  }
};

TEST(PipelineTest, UserTransformsRegisterByName) {
  TransformFactory factory = [](const std::vector<double>& args) -> Result<std::unique_ptr<Transform>> {
    if (!args.empty()) return Status::InvalidArgument("invert takes no arguments");
    return std::unique_ptr<Transform>(new Invert());
  };
  ASSERT_TRUE(RegisterTransform("test_invert", factory).ok());
  EXPECT_EQ(RegisterTransform("test_invert", factory).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(RegisterTransform("resize", factory).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(RegisterTransform("Bad Name", factory).code(), StatusCode::kInvalidArgument);
  const auto names = KnownTransforms();
  EXPECT_NE(std::find(names.begin(), names.end(), "test_invert"), names.end());

  const auto img = TestImage(8, 8, 1);
  const auto plain = RunOrDie(MakeOrDie("to_tensor"), img, 8, 8, 1, SampleRng(0));
  const auto inverted = RunOrDie(MakeOrDie("to_tensor,test_invert"), img, 8, 8, 1, SampleRng(0));
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(inverted[i], 1.0f - plain[i]);
  EXPECT_FALSE(Pipeline::Make("to_tensor,test_invert(1)").ok());
  // A float-only user transform cannot run on uint8.
  EXPECT_FALSE(Pipeline::Make("test_invert,to_tensor").ok());
}

// ---- random transforms ----------------------------------------------------------------

TEST(RandomTransformTest, SameStreamSameResultAndSeedTripleMatters) {
  const Pipeline p = MakeOrDie("random_crop(24,4),random_horizontal_flip,to_tensor,gaussian_blur(5,0.1,2)");
  const auto img = TestImage(28, 28, 1);
  const auto a = RunOrDie(p, img, 28, 28, 1, SampleRng(1, 0, 5));
  const auto b = RunOrDie(p, img, 28, 28, 1, SampleRng(1, 0, 5));
  EXPECT_EQ(a, b);
  int differ = 0;
  for (uint64_t i = 0; i < 8; ++i) differ += RunOrDie(p, img, 28, 28, 1, SampleRng(1, 0, 100 + i)) != a;
  EXPECT_GE(differ, 7);
  EXPECT_NE(RunOrDie(p, img, 28, 28, 1, SampleRng(1, 1, 5)), a);  // other epoch
  EXPECT_NE(RunOrDie(p, img, 28, 28, 1, SampleRng(2, 0, 5)), a);  // other seed
}

TEST(RandomTransformTest, RandomCropIsTheDrawnOffsetCropAndCoversEveryOffset) {
  const Pipeline p = MakeOrDie("to_tensor,random_crop(24,4)");
  const Pipeline to_tensor = MakeOrDie("to_tensor");
  const auto img = TestImage(28, 28, 1);
  const auto chw = RunOrDie(to_tensor, img, 28, 28, 1, SampleRng(0));
  std::vector<int> tops(13, 0), lefts(13, 0);
  std::vector<float> want(24 * 24);
  for (uint64_t i = 0; i < 600; ++i) {
    const SampleRng rng(9, 0, i);
    SampleRng copy = rng;
    const internal::CropOffset o = internal::DrawRandomCrop(copy, 36, 36, 24, 24);
    ASSERT_GE(o.top, 0);
    ASSERT_LE(o.top, 12);
    ASSERT_GE(o.left, 0);
    ASSERT_LE(o.left, 12);
    tops[static_cast<size_t>(o.top)]++;
    lefts[static_cast<size_t>(o.left)]++;
    internal::CropZeroPad(ImageView{ImageShape{DType::kFloat32, 1, 28, 28}, chw.data()},
                          o.top - 4, o.left - 4,
                          MutableImageView{ImageShape{DType::kFloat32, 1, 24, 24}, want.data()});
    ASSERT_EQ(RunOrDie(p, img, 28, 28, 1, rng), want) << "sample " << i;
  }
  for (int k = 0; k < 13; ++k) {
    EXPECT_GT(tops[static_cast<size_t>(k)], 15) << "top " << k;
    EXPECT_GT(lefts[static_cast<size_t>(k)], 15) << "left " << k;
  }
}

// Found by tests/fuzz/pipeline_fuzz.cc (corpus/pipeline/repro-crop-beside-image,
// "random_crop(9,72)" on a 5 x 25 image): a window beside the image made
// CropZeroPad compute a source pointer outside it (undefined behaviour that
// UBSan reports, though nothing was copied). Such a window is all padding.
TEST(RandomTransformTest, ACropWindowBesideTheImageIsAllPadding) {
  std::vector<uint8_t> img(5 * 25, 7);
  const ImageView src{ImageShape{DType::kUInt8, 1, 5, 25}, img.data()};
  std::vector<uint8_t> out(9 * 9, 1);
  const MutableImageView dst{ImageShape{DType::kUInt8, 1, 9, 9}, out.data()};
  for (const auto& [top, left] : {std::pair{-2, -40}, std::pair{0, 30}, std::pair{-70, 0}, std::pair{1, -9}}) {
    std::fill(out.begin(), out.end(), uint8_t{1});
    internal::CropZeroPad(src, top, left, dst);
    EXPECT_EQ(out, std::vector<uint8_t>(out.size(), 0)) << "top " << top << " left " << left;
  }
  // Overlapping by one column on the right still copies that column.
  internal::CropZeroPad(src, 0, 24, dst);
  EXPECT_EQ(out[0], 7);
  EXPECT_EQ(out[1], 0);
}

TEST(RandomTransformTest, RandomCropOnUint8EqualsCropOnFloat) {
  const auto img = TestImage(20, 22, 3);
  const auto a = RunOrDie(MakeOrDie("random_crop(16,18,3),to_tensor"), img, 20, 22, 3, SampleRng(4, 0, 1));
  const auto b = RunOrDie(MakeOrDie("to_tensor,random_crop(16,18,3)"), img, 20, 22, 3, SampleRng(4, 0, 1));
  EXPECT_EQ(a, b);
}

TEST(RandomTransformTest, FlipProbability) {
  const Pipeline p = MakeOrDie("to_tensor,random_horizontal_flip(0.5)");
  const Pipeline never = MakeOrDie("to_tensor");
  const Pipeline always = MakeOrDie("to_tensor,random_horizontal_flip(1)");
  const auto img = TestImage(6, 7, 3);
  const auto plain = RunOrDie(never, img, 6, 7, 3, SampleRng(0));
  const auto flipped = RunOrDie(always, img, 6, 7, 3, SampleRng(0));
  ASSERT_NE(plain, flipped);
  int flips = 0;
  for (uint64_t i = 0; i < 2000; ++i) {
    const auto out = RunOrDie(p, img, 6, 7, 3, SampleRng(3, 0, i));
    if (out == flipped) {
      ++flips;
    } else {
      ASSERT_EQ(out, plain);
    }
  }
  EXPECT_GT(flips, 900);
  EXPECT_LT(flips, 1100);
}

TEST(RandomTransformTest, RandomSigmaBlurEqualsFixedBlurAtTheDrawnSigma) {
  const Pipeline p = MakeOrDie("to_tensor,gaussian_blur(11,0.1,2)");
  const auto img = TestImage(28, 28, 1);
  for (uint64_t i = 0; i < 5; ++i) {
    SampleRng rng(7, 0, i);
    SampleRng copy = rng;
    const double sigma = copy.NextDouble(0.1, 2.0);
    char spec[96];
    std::snprintf(spec, sizeof(spec), "to_tensor,gaussian_blur(11,%.17g)", sigma);
    EXPECT_EQ(RunOrDie(p, img, 28, 28, 1, rng), RunOrDie(MakeOrDie(spec), img, 28, 28, 1, SampleRng(0)))
        << spec;
  }
}

TEST(RandomTransformTest, ResultsDoNotDependOnThreads) {
  const Pipeline p = MakeOrDie(
      "random_crop(26,2),random_horizontal_flip,to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)");
  const int n = 64;
  const size_t per = 26 * 26;
  std::vector<std::vector<uint8_t>> imgs;
  for (int i = 0; i < n; ++i) imgs.push_back(TestImage(28, 28, 1, static_cast<uint32_t>(i)));
  std::vector<float> serial(n * per), parallel(n * per);
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(p.Run(imgs[i].data(), 28, 28, 1, serial.data() + i * per, SampleRng(11, 2, i)).ok());
  }
  std::vector<std::thread> threads;
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < n;) {
        if (!p.Run(imgs[i].data(), 28, 28, 1, parallel.data() + i * per, SampleRng(11, 2, i)).ok()) {
          failures++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(std::memcmp(serial.data(), parallel.data(), serial.size() * sizeof(float)), 0);
}

// ---- allocation ---------------------------------------------------------------------------

long AllocationsPerRun(const Pipeline& p, int h, int w, int c) {
  const auto img = TestImage(h, w, c);
  auto shape = p.OutputShape(h, w, c);
  EXPECT_TRUE(shape.ok());
  std::vector<float> out(shape->num_elements());
  EXPECT_TRUE(p.Run(img.data(), h, w, c, out.data(), SampleRng(0, 0, 0)).ok());  // warm up
  test::StartCountingAllocations();
  for (uint64_t i = 0; i < 100; ++i) {
    if (!p.Run(img.data(), h, w, c, out.data(), SampleRng(0, 0, i)).ok()) break;
  }
  return test::StopCountingAllocations() / 100;
}

TEST(AllocationTest, WarmRunDoesNotAllocate) {
  if (!test::CountingAllocations()) GTEST_SKIP() << "ThreadSanitizer owns operator new here";
  EXPECT_EQ(AllocationsPerRun(MakeOrDie("to_tensor,normalize(0.1307,0.3081)"), 28, 28, 1), 0);
  EXPECT_EQ(AllocationsPerRun(MakeOrDie("random_crop(28,4),random_horizontal_flip,resize(32),"
                                        "to_tensor,center_crop(30),normalize(0.5,0.5)"),
                              28, 28, 3),
            0);
  // OpenCV's separable filter allocates its row buffers internally (not via
  // datafeed's scratch); report it rather than hide it.
  const long blur = AllocationsPerRun(MakeOrDie(kReference), 28, 28, 1);
  std::printf("[ allocs  ] %s: %ld operator-new calls per Run (inside cv::sepFilter2D)\n",
              kReference, blur);
}

// ---- split pipelines ('|') ---------------------------------------------------

// The split pipeline's uint8 CHW output, finished as a consumer would.
std::vector<float> RunSplitAndFinish(const Pipeline& p, const std::vector<uint8_t>& img, int h, int w,
                                     int c, SampleRng rng) {
  auto shape = p.OutputShape(h, w, c);
  EXPECT_TRUE(shape.ok()) << shape.status().ToString();
  if (!shape.ok()) return {};
  EXPECT_EQ(shape->dtype, DType::kUInt8);
  std::vector<uint8_t> chw(shape->num_elements());
  Status st = p.Run(img.data(), h, w, c, chw.data(), rng);
  EXPECT_TRUE(st.ok()) << st.ToString();
  std::vector<float> out(chw.size());
  st = p.finish()->Apply(chw.data(), {shape->channels, shape->height, shape->width}, out.data(), out.size());
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

TEST(SplitPipelineTest, ParsesBothPartsAndRecordsTheFinish) {
  const Pipeline p = MakeOrDie("random_crop(28,2) | to_tensor, normalize(0.1307, 0.3081)");
  EXPECT_TRUE(p.split());
  ASSERT_NE(p.finish(), nullptr);
  EXPECT_EQ(p.finish()->spec(), "to_tensor,normalize(0.1307,0.3081)");
  EXPECT_EQ(p.Describe(), "random_crop(28, 28, 2) | consumer finishes: to_tensor,normalize(0.1307,0.3081)");
  auto shape = p.OutputShape(28, 28, 1);
  ASSERT_TRUE(shape.ok());
  EXPECT_EQ(*shape, (ImageShape{DType::kUInt8, 1, 28, 28}));
  EXPECT_EQ(*p.FinishedShape(28, 28, 1), (ImageShape{DType::kFloat32, 1, 28, 28}));

  const Pipeline bare = MakeOrDie("|to_tensor");
  EXPECT_TRUE(bare.split());
  EXPECT_EQ(bare.finish()->spec(), "to_tensor");
  EXPECT_FALSE(MakeOrDie(kReference).split());
  EXPECT_EQ(MakeOrDie(kReference).finish(), nullptr);

  // The wrong Run overload is refused rather than misused.
  const auto img = TestImage(28, 28, 1);
  std::vector<float> f(28 * 28);
  std::vector<uint8_t> u(28 * 28);
  EXPECT_EQ(p.Run(img.data(), 28, 28, 1, f.data(), SampleRng(0)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(MakeOrDie(kReference).Run(img.data(), 28, 28, 1, u.data(), SampleRng(0)).code(),
            StatusCode::kFailedPrecondition);
}

TEST(SplitPipelineTest, BadSplitsSayWhy) {
  struct Bad {
    const char* spec;
    const char* expect;
  };
  const Bad bad[] = {
      {"|to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)",
       "gaussian_blur(11, 2) cannot run in the consumer's finish (after '|'): only to_tensor and normalize"},
      {"|to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)", "cannot be split"},
      {"to_tensor,normalize(0.1307,0.3081)|gaussian_blur(11)", "must stay uint8 HWC: move to_tensor after '|'"},
      {"to_tensor|normalize(0.1,0.2)", "must stay uint8 HWC"},
      {"gaussian_blur(3)|to_tensor", "gaussian_blur(3, 0.8) takes float32 CHW, but the part before '|' runs on "
                                     "the producer and stays uint8 HWC"},
      {"|to_tensor,resize(14)", "resize(14) cannot run in the consumer's finish"},
      {"|normalize(0.1,0.2)", "must start with to_tensor"},
      {"|to_tensor,to_tensor", "to_tensor appears twice"},
      {"resize(20)|", "nothing follows '|'"},
      {"resize(20)|to_tensor|normalize(0.1,0.2)", "more than one '|'"},
      {"|to_tensor,normalise(0.1,0.2)", "unknown transform 'normalise'"},
      {"|to_tensor,normalize(0.1,0)", "divide by zero"},
  };
  for (const Bad& b : bad) ExpectRefused(b.spec, b.expect);
  // Channels are checked against the image, like normalize's.
  const Pipeline rgb = MakeOrDie("|to_tensor,normalize(0.1,0.2,0.3,0.4,0.5,0.6)");
  EXPECT_TRUE(rgb.OutputShape(8, 8, 3).ok());
  Status st = rgb.OutputShape(8, 8, 1).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("3 channels but the image has 1"), std::string::npos) << st.message();
}

TEST(SplitPipelineTest, SplitGivesTheSameFloatsAsUnsplit) {
  const struct {
    const char* split;
    const char* unsplit;
    int h, w, c;
  } cases[] = {
      {"|to_tensor,normalize(0.1307,0.3081)", "to_tensor,normalize(0.1307,0.3081)", 28, 28, 1},
      {"|to_tensor", "to_tensor", 28, 28, 1},
      {"random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)",
       "random_crop(28,2),to_tensor,normalize(0.1307,0.3081)", 28, 28, 1},
      {"random_horizontal_flip,resize(20),center_crop(18)|to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)",
       "random_horizontal_flip,resize(20),center_crop(18),to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)",
       24, 30, 3},
      {"random_crop(16,3)|to_tensor,normalize(0.5,0.25),normalize(0.1,0.2,0.3,0.4,0.5,0.6)",
       "random_crop(16,3),to_tensor,normalize(0.5,0.25),normalize(0.1,0.2,0.3,0.4,0.5,0.6)", 20, 20, 3},
  };
  for (const auto& k : cases) {
    const Pipeline split = MakeOrDie(k.split), unsplit = MakeOrDie(k.unsplit);
    const auto img = TestImage(k.h, k.w, k.c);
    for (uint64_t i = 0; i < 20; ++i) {
      const SampleRng rng(3, 1, i);
      const auto want = RunOrDie(unsplit, img, k.h, k.w, k.c, rng);
      const auto got = RunSplitAndFinish(split, img, k.h, k.w, k.c, rng);
      ASSERT_EQ(got.size(), want.size()) << k.split;
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << k.split << " sample " << i;
    }
  }
}

TEST(SplitPipelineTest, MoveFinishToConsumerSplitsBeforeTheTrailingToTensor) {
  auto moved = Pipeline::MoveFinishToConsumer("random_crop(28,2), to_tensor, normalize(0.1307,0.3081)");
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(*moved, "random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)");
  EXPECT_EQ(*Pipeline::MoveFinishToConsumer("to_tensor"), "|to_tensor");
  EXPECT_EQ(*Pipeline::MoveFinishToConsumer("a|b"), "a|b");  // already split: as is
  EXPECT_TRUE(Pipeline::Make(*moved).ok());

  auto blur = Pipeline::MoveFinishToConsumer(kReference);
  ASSERT_FALSE(blur.ok());
  EXPECT_NE(blur.status().message().find("'gaussian_blur(11)' runs after to_tensor"), std::string::npos)
      << blur.status().message();
  auto none = Pipeline::MoveFinishToConsumer("resize(20)");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no to_tensor"), std::string::npos) << none.status().message();
}

TEST(SplitPipelineTest, WarmSplitRunDoesNotAllocate) {
  if (!test::CountingAllocations()) GTEST_SKIP() << "ThreadSanitizer owns operator new here";
  const Pipeline p = MakeOrDie("random_crop(28,4),random_horizontal_flip|to_tensor,normalize(0.5,0.5)");
  const auto img = TestImage(28, 28, 3);
  std::vector<uint8_t> out(3 * 28 * 28);
  ASSERT_TRUE(p.Run(img.data(), 28, 28, 3, out.data(), SampleRng(0)).ok());
  test::StartCountingAllocations();
  for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(p.Run(img.data(), 28, 28, 3, out.data(), SampleRng(0, 0, i)).ok());
  EXPECT_EQ(test::StopCountingAllocations(), 0);
}

}  // namespace
}  // namespace datafeed
