// The built-in transforms and their image kernels. The only file of the
// transform code that includes OpenCV.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "pil_ops_internal.h"
#include "transform_internal.h"

namespace datafeed {
namespace internal {

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string Call(const std::string& name, const std::vector<double>& args) {
  std::string s = name + "(";
  for (size_t i = 0; i < args.size(); ++i) s += (i ? ", " : "") + Num(args[i]);
  return s + ")";
}

std::string Dims(int h, int w) { return std::to_string(h) + "x" + std::to_string(w); }

// args[i] as an integer in [lo, hi], or InvalidArgument naming the call.
Result<int> IntArg(const std::string& call, const std::vector<double>& args, size_t i,
                   const char* what, int lo, int hi) {
  const double v = args[i];
  if (!(v >= lo && v <= hi) || v != std::floor(v)) {
    return Status::InvalidArgument(call + ": " + what + " must be an integer in " +
                                   std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                                   Num(v));
  }
  return static_cast<int>(v);
}

Status ArgCount(const std::string& call, const std::vector<double>& args, size_t lo, size_t hi,
                const char* forms) {
  if (args.size() < lo || args.size() > hi) {
    return Status::InvalidArgument(call + ": takes " + forms + ", got " +
                                   std::to_string(args.size()) + " argument" +
                                   (args.size() == 1 ? "" : "s"));
  }
  return Status::OK();
}

namespace {

// How an image's elements are grouped: `planes` planes of height x width
// pixels, each pixel `px` contiguous elements. uint8 HWC is one plane of
// C-element pixels; float CHW is C planes of 1-element pixels.
struct Planes {
  int planes;
  int px;
};
Planes PlanesOf(const ImageShape& s) {
  return s.dtype == DType::kUInt8 ? Planes{1, s.channels} : Planes{s.channels, 1};
}

// ---- to_tensor / normalize ------------------------------------------------

// The value tables and the HWC -> CHW mapping of to_tensor and the fused
// to_tensor+normalize are datafeed::Finish's (frame.h): the same code
// finishes a split pipeline's uint8 batch on the consumer, so both give
// identical floats.
Finish MakeFinish(std::vector<Finish::Normalize> normalizes) {
  Result<Finish> f = Finish::Make(std::move(normalizes));
  // The normalize factory has already refused what Make() would refuse.
  if (!f.ok()) throw std::invalid_argument(f.status().ToString());
  return std::move(f).value();
}

void MapThroughFinish(const Finish& finish, const ImageView& in, const MutableImageView& out) {
  const size_t hw = static_cast<size_t>(in.shape.height) * static_cast<size_t>(in.shape.width);
  finish.MapHWC(in.as<uint8_t>(), in.shape.channels, hw, out.as<float>());
}

class ToTensor final : public Transform {
 public:
  // torchvision: img.to(float32).div(255).
  ToTensor() : finish_(MakeFinish({})) {}
  std::string ToString() const override { return "to_tensor"; }
  bool Accepts(DType dtype) const override { return dtype == DType::kUInt8; }
  DType OutputDType(DType) const override { return DType::kFloat32; }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    return ImageShape{DType::kFloat32, in.channels, in.height, in.width};
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng&) const override {
    MapThroughFinish(finish_, in, out);
    return Status::OK();
  }

 private:
  Finish finish_;
};

// Means and stds as float32, the dtype torchvision computes in.
struct NormalizeParams {
  std::vector<float> mean;
  std::vector<float> std;
  std::vector<double> args;  // as given, for ToString

  // `self` names the transform in the error (built only on failure: this
  // runs per sample).
  Status CheckChannels(int channels, const Transform& self) const {
    if (mean.size() != 1 && mean.size() != static_cast<size_t>(channels)) {
      return Status::InvalidArgument(self.ToString() + ": gives " + std::to_string(mean.size()) +
                                     " means and stds but the image has " +
                                     std::to_string(channels) + " channel" +
                                     (channels == 1 ? "" : "s") +
                                     "; give one (mean, std) pair or one per channel");
    }
    return Status::OK();
  }
};

class Normalize final : public Transform {
 public:
  explicit Normalize(NormalizeParams p) : p_(std::move(p)) {}
  const NormalizeParams& params() const { return p_; }
  std::string ToString() const override { return Call("normalize", p_.args); }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    DATAFEED_RETURN_NOT_OK(p_.CheckChannels(in.channels, *this));
    return in;
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng&) const override {
    const size_t hw = static_cast<size_t>(in.shape.height) * static_cast<size_t>(in.shape.width);
    for (int ch = 0; ch < in.shape.channels; ++ch) {
      const size_t k = p_.mean.size() == 1 ? 0 : static_cast<size_t>(ch);
      const float m = p_.mean[k], s = p_.std[k];
      const float* src = in.as<float>() + static_cast<size_t>(ch) * hw;
      float* dst = out.as<float>() + static_cast<size_t>(ch) * hw;
      // torchvision: tensor.sub_(mean).div_(std); a division, not a multiply
      // by 1/std, to round the same way.
      for (size_t i = 0; i < hw; ++i) dst[i] = (src[i] - m) / s;
    }
    return Status::OK();
  }

 private:
  NormalizeParams p_;
};

// to_tensor followed by normalize: one table lookup per element, exactly the
// float32 result of the two steps ((v / 255 - mean) / std, rounded the same).
class ToTensorNormalize final : public Transform {
 public:
  explicit ToTensorNormalize(NormalizeParams p)
      : p_(std::move(p)), finish_(MakeFinish({Finish::Normalize{p_.mean, p_.std}})) {}
  std::string ToString() const override { return "to_tensor+" + Call("normalize", p_.args); }
  bool Accepts(DType dtype) const override { return dtype == DType::kUInt8; }
  DType OutputDType(DType) const override { return DType::kFloat32; }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    DATAFEED_RETURN_NOT_OK(p_.CheckChannels(in.channels, *this));
    return ImageShape{DType::kFloat32, in.channels, in.height, in.width};
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng&) const override {
    MapThroughFinish(finish_, in, out);
    return Status::OK();
  }

 private:
  NormalizeParams p_;
  Finish finish_;
};

Result<std::unique_ptr<Transform>> MakeToTensor(const std::vector<double>& args) {
  DATAFEED_RETURN_NOT_OK(ArgCount(Call("to_tensor", args), args, 0, 0, "no arguments"));
  return std::unique_ptr<Transform>(new ToTensor());
}

Result<std::unique_ptr<Transform>> MakeNormalize(const std::vector<double>& args) {
  const std::string call = Call("normalize", args);
  if (args.empty() || args.size() % 2 != 0) {
    return Status::InvalidArgument(call + ": takes (mean, std) or (m1, ..., mC, s1, ..., sC), got " +
                                   std::to_string(args.size()) + " numbers");
  }
  NormalizeParams p;
  p.args = args;
  const size_t n = args.size() / 2;
  for (size_t i = 0; i < n; ++i) {
    p.mean.push_back(static_cast<float>(args[i]));
    p.std.push_back(static_cast<float>(args[n + i]));
    if (p.std.back() == 0.0f || !std::isfinite(p.std.back()) || !std::isfinite(p.mean.back())) {
      return Status::InvalidArgument(call + ": std " + Num(args[n + i]) +
                                     " would divide by zero or is not finite");
    }
  }
  return std::unique_ptr<Transform>(new Normalize(std::move(p)));
}

// ---- gaussian_blur ----------------------------------------------------------

class GaussianBlur final : public Transform {
 public:
  GaussianBlur(int k, double sigma_lo, double sigma_hi)
      : k_(k), sigma_lo_(sigma_lo), sigma_hi_(sigma_hi) {
    if (sigma_lo_ == sigma_hi_) {
      kernel_.resize(static_cast<size_t>(k_));
      GaussianKernel1d(k_, sigma_lo_, kernel_.data());
    }
  }
  std::string ToString() const override {
    std::vector<double> shown = {static_cast<double>(k_), sigma_lo_};
    if (sigma_hi_ != sigma_lo_) shown.push_back(sigma_hi_);
    return Call("gaussian_blur", shown);
  }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    const int pad = k_ / 2;
    // 0: the size varies with the input; each image is checked when it runs.
    if ((in.height != 0 && in.height <= pad) || (in.width != 0 && in.width <= pad)) {
      // torch.nn.functional.pad(mode="reflect") needs padding < the size.
      return Status::InvalidArgument(ToString() + ": the image is " + Dims(in.height, in.width) +
                                     " but reflect padding by " + std::to_string(pad) +
                                     " needs both sides larger than " + std::to_string(pad) +
                                     "; use a smaller kernel");
    }
    return in;
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng& rng) const override {
    const float* kernel = kernel_.data();
    thread_local std::vector<float> drawn;
    if (kernel_.empty()) {
      // torchvision GaussianBlur: sigma uniform in [lo, hi) per call.
      drawn.resize(static_cast<size_t>(k_));
      GaussianKernel1d(k_, rng.NextDouble(sigma_lo_, sigma_hi_), drawn.data());
      kernel = drawn.data();
    }
    const cv::Mat kmat(1, k_, CV_32F, const_cast<float*>(kernel));
    const int h = in.shape.height, w = in.shape.width;
    const size_t plane = static_cast<size_t>(h) * static_cast<size_t>(w);
    for (int c = 0; c < in.shape.channels; ++c) {
      const cv::Mat src(h, w, CV_32F, const_cast<float*>(in.as<float>() + c * plane));
      cv::Mat dst(h, w, CV_32F, out.as<float>() + c * plane);
      // BORDER_REFLECT_101 is torch's "reflect" padding (edge not repeated).
      cv::sepFilter2D(src, dst, CV_32F, kmat, kmat, cv::Point(-1, -1), 0.0,
                      cv::BORDER_REFLECT_101);
      if (dst.data != reinterpret_cast<uchar*>(out.as<float>() + c * plane)) {
        return Status::Internal(ToString() + ": OpenCV reallocated the output plane");
      }
    }
    return Status::OK();
  }

 private:
  int k_;
  double sigma_lo_, sigma_hi_;
  std::vector<float> kernel_;  // when sigma is fixed
};

Result<std::unique_ptr<Transform>> MakeGaussianBlur(const std::vector<double>& args) {
  const std::string call = Call("gaussian_blur", args);
  DATAFEED_RETURN_NOT_OK(ArgCount(call, args, 1, 3,
                                  "(kernel_size), (kernel_size, sigma) or (kernel_size, "
                                  "sigma_min, sigma_max)"));
  DATAFEED_ASSIGN_OR_RETURN(int k, IntArg(call, args, 0, "kernel_size", 1, 1023));
  if (k % 2 == 0) {
    return Status::InvalidArgument(call + ": kernel_size must be odd, got " + std::to_string(k));
  }
  double lo = DefaultGaussianSigma(k), hi = lo;
  if (args.size() >= 2) lo = hi = args[1];
  if (args.size() == 3) hi = args[2];
  if (!(lo > 0) || !(hi >= lo) || !std::isfinite(hi)) {
    return Status::InvalidArgument(call + ": sigma must be positive (and min <= max)");
  }
  return std::unique_ptr<Transform>(new GaussianBlur(k, lo, hi));
}

// ---- resize -------------------------------------------------------------------

class Resize final : public Transform {
 public:
  // height == 0: `width` is the target of the shorter edge.
  Resize(int height, int width) : height_(height), width_(width) {}
  std::string ToString() const override {
    return height_ == 0 ? Call("resize", {static_cast<double>(width_)})
                        : Call("resize", {static_cast<double>(height_), static_cast<double>(width_)});
  }
  bool Accepts(DType dtype) const override {
    return dtype == DType::kUInt8 || dtype == DType::kFloat32;
  }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    ImageShape out = in;
    if (height_ != 0) {
      out.height = height_;
      out.width = width_;
      return out;
    }
    if (in.height == 0 || in.width == 0) {
      // Which edge is shorter depends on the image: the size varies.
      out.height = out.width = 0;
      return out;
    }
    // torchvision _compute_resized_output_size: the shorter edge becomes
    // `size`, the longer int(size * long / short) (true division, truncated).
    const int64_t s = width_;
    const int64_t short_side = std::min(in.height, in.width);
    const int64_t long_side = std::max(in.height, in.width);
    const int64_t new_long = static_cast<int64_t>(static_cast<double>(s * long_side) /
                                                  static_cast<double>(short_side));
    if (new_long > (1 << 20)) {
      return Status::InvalidArgument(ToString() + ": a " + Dims(in.height, in.width) +
                                     " image would become too large");
    }
    if (in.width <= in.height) {
      out.width = static_cast<int>(s);
      out.height = static_cast<int>(new_long);
    } else {
      out.height = static_cast<int>(s);
      out.width = static_cast<int>(new_long);
    }
    return out;
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng&) const override {
    if (in.shape.dtype == DType::kUInt8) {
      // A PIL image in torchvision: Image.resize(size, BILINEAR), antialiased.
      const U8Plane plane{in.as<uint8_t>(), in.shape.height, in.shape.width, in.shape.channels,
                          static_cast<size_t>(in.shape.width) * in.shape.channels};
      const float whole[4] = {0.0f, 0.0f, static_cast<float>(in.shape.width),
                              static_cast<float>(in.shape.height)};
      PilResizeBilinear(plane, whole, out.as<uint8_t>(), out.shape.height, out.shape.width);
    } else {
      ResizeBilinear(in, out);
    }
    return Status::OK();
  }
  bool PlanDecode(const ImageShape& full, SampleRng, DecodePlan* plan) const override {
    if (full.dtype != DType::kUInt8) return false;
    Result<ImageShape> out = OutputShape(full);
    if (!out.ok()) return false;
    *plan = DecodePlan{0, 0, double(full.height), double(full.width), out->height, out->width};
    return true;
  }
  Status ApplyFramed(const ImageView& in, const ImageFrame& frame, const MutableImageView& out,
                     SampleRng&) const override {
    ResizeFramedRegion(in, frame, 0, 0, frame.full_height, frame.full_width, out);
    return Status::OK();
  }

 private:
  int height_, width_;
};

Result<std::unique_ptr<Transform>> MakeResize(const std::vector<double>& args) {
  const std::string call = Call("resize", args);
  DATAFEED_RETURN_NOT_OK(ArgCount(call, args, 1, 2, "(size) or (height, width)"));
  if (args.size() == 1) {
    DATAFEED_ASSIGN_OR_RETURN(int s, IntArg(call, args, 0, "size", 1));
    return std::unique_ptr<Transform>(new Resize(0, s));
  }
  DATAFEED_ASSIGN_OR_RETURN(int h, IntArg(call, args, 0, "height", 1));
  DATAFEED_ASSIGN_OR_RETURN(int w, IntArg(call, args, 1, "width", 1));
  return std::unique_ptr<Transform>(new Resize(h, w));
}

// ---- crops and flips -------------------------------------------------------------

class CenterCrop final : public Transform {
 public:
  CenterCrop(int h, int w) : h_(h), w_(w) {}
  std::string ToString() const override {
    return Call("center_crop", {static_cast<double>(h_), static_cast<double>(w_)});
  }
  bool Accepts(DType dtype) const override {
    return dtype == DType::kUInt8 || dtype == DType::kFloat32;
  }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    ImageShape out = in;
    out.height = h_;
    out.width = w_;
    return out;
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng&) const override {
    CropZeroPad(in, CenterCropOffset(in.shape.height, h_), CenterCropOffset(in.shape.width, w_),
                out);
    return Status::OK();
  }

 private:
  int h_, w_;
};

Result<std::unique_ptr<Transform>> MakeCenterCrop(const std::vector<double>& args) {
  const std::string call = Call("center_crop", args);
  DATAFEED_RETURN_NOT_OK(ArgCount(call, args, 1, 2, "(size) or (height, width)"));
  DATAFEED_ASSIGN_OR_RETURN(int h, IntArg(call, args, 0, args.size() == 1 ? "size" : "height", 1));
  int w = h;
  if (args.size() == 2) {
    DATAFEED_ASSIGN_OR_RETURN(w, IntArg(call, args, 1, "width", 1));
  }
  return std::unique_ptr<Transform>(new CenterCrop(h, w));
}

class RandomCrop final : public Transform {
 public:
  RandomCrop(int h, int w, int pad) : h_(h), w_(w), pad_(pad) {}
  std::string ToString() const override {
    return Call("random_crop",
                {static_cast<double>(h_), static_cast<double>(w_), static_cast<double>(pad_)});
  }
  bool Accepts(DType dtype) const override {
    return dtype == DType::kUInt8 || dtype == DType::kFloat32;
  }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    const int ph = in.height + 2 * pad_, pw = in.width + 2 * pad_;
    // A size of 0 varies with the input: each image is checked when it runs.
    if ((in.height != 0 && ph < h_) || (in.width != 0 && pw < w_)) {
      return Status::InvalidArgument(ToString() + ": the image is " + Dims(in.height, in.width) +
                                     ", " + Dims(ph, pw) + " after padding, smaller than the " +
                                     Dims(h_, w_) + " crop; pad more or crop less");
    }
    ImageShape out = in;
    out.height = h_;
    out.width = w_;
    return out;
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng& rng) const override {
    const CropOffset o =
        DrawRandomCrop(rng, in.shape.height + 2 * pad_, in.shape.width + 2 * pad_, h_, w_);
    CropZeroPad(in, o.top - pad_, o.left - pad_, out);
    return Status::OK();
  }

 private:
  int h_, w_, pad_;
};

Result<std::unique_ptr<Transform>> MakeRandomCrop(const std::vector<double>& args) {
  const std::string call = Call("random_crop", args);
  DATAFEED_RETURN_NOT_OK(
      ArgCount(call, args, 1, 3, "(size), (size, padding) or (height, width, padding)"));
  int h = 0, w = 0, pad = 0;
  if (args.size() <= 2) {
    DATAFEED_ASSIGN_OR_RETURN(h, IntArg(call, args, 0, "size", 1));
    w = h;
    if (args.size() == 2) {
      DATAFEED_ASSIGN_OR_RETURN(pad, IntArg(call, args, 1, "padding", 0));
    }
  } else {
    DATAFEED_ASSIGN_OR_RETURN(h, IntArg(call, args, 0, "height", 1));
    DATAFEED_ASSIGN_OR_RETURN(w, IntArg(call, args, 1, "width", 1));
    DATAFEED_ASSIGN_OR_RETURN(pad, IntArg(call, args, 2, "padding", 0));
  }
  return std::unique_ptr<Transform>(new RandomCrop(h, w, pad));
}

class RandomHorizontalFlip final : public Transform {
 public:
  explicit RandomHorizontalFlip(double p) : p_(p) {}
  std::string ToString() const override { return Call("random_horizontal_flip", {p_}); }
  bool Accepts(DType dtype) const override {
    return dtype == DType::kUInt8 || dtype == DType::kFloat32;
  }
  Result<ImageShape> OutputShape(const ImageShape& in) const override { return in; }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng& rng) const override {
    // torchvision: flip when rand() < p. One draw per sample whatever p is.
    if (rng.NextDouble() < p_) {
      FlipHorizontal(in, out);
    } else {
      std::memcpy(out.data, in.data, in.shape.nbytes());
    }
    return Status::OK();
  }

 private:
  double p_;
};

Result<std::unique_ptr<Transform>> MakeRandomHorizontalFlip(const std::vector<double>& args) {
  const std::string call = Call("random_horizontal_flip", args);
  DATAFEED_RETURN_NOT_OK(ArgCount(call, args, 0, 1, "() or (p)"));
  const double p = args.empty() ? 0.5 : args[0];
  if (!(p >= 0.0 && p <= 1.0)) {
    return Status::InvalidArgument(call + ": p must be in [0, 1], got " + Num(p));
  }
  return std::unique_ptr<Transform>(new RandomHorizontalFlip(p));
}

// ---- resize kernel ------------------------------------------------------------

// One output coordinate's two source taps and weights, as torch 1.13's
// upsample_bilinear2d (align_corners=False) computes them: the scale is
// float32 in / out, the source coordinate is evaluated in double, and the
// weights are stored as float32 (l0 = 1 - l1 in float32).
struct Tap {
  int i0, i1;
  float l0, l1;
};
inline Tap SourceTap(int out_index, int in_size, int out_size, float scale) {
  if (in_size == out_size) return {out_index, out_index, 1.0f, 0.0f};
  double real = static_cast<double>(scale) * (out_index + 0.5) - 0.5;
  if (real < 0.0) real = 0.0;
  const int i0 = std::min(static_cast<int>(real), in_size - 1);
  const int i1 = i0 + (i0 < in_size - 1 ? 1 : 0);
  const float l1 = static_cast<float>(std::min(std::max(real - i0, 0.0), 1.0));
  return {i0, i1, 1.0f - l1, l1};
}

template <typename T>
void ResizeBilinearT(const ImageView& in, const MutableImageView& out) {
  const Planes pl = PlanesOf(in.shape);
  const int ih = in.shape.height, iw = in.shape.width;
  const int oh = out.shape.height, ow = out.shape.width;
  const int px = pl.px;
  const float sh = static_cast<float>(ih) / static_cast<float>(oh);
  const float sw = static_cast<float>(iw) / static_cast<float>(ow);
  for (int p = 0; p < pl.planes; ++p) {
    const T* src = in.as<T>() + static_cast<size_t>(p) * ih * iw * px;
    T* dst = out.as<T>() + static_cast<size_t>(p) * oh * ow * px;
    for (int oy = 0; oy < oh; ++oy) {
      const Tap ty = SourceTap(oy, ih, oh, sh);
      const T* r0 = src + static_cast<size_t>(ty.i0) * iw * px;
      const T* r1 = src + static_cast<size_t>(ty.i1) * iw * px;
      T* d = dst + static_cast<size_t>(oy) * ow * px;
      for (int ox = 0; ox < ow; ++ox) {
        const Tap tx = SourceTap(ox, iw, ow, sw);
        // torch 1.13's CPU kernel rounds differently for one channel and for
        // several (its loops take different paths); both were matched bit for
        // bit against its output, on integer and fractional inputs.
        //  * 1 channel: the four 2-D weights are float32 products, the
        //    weighted sum is taken in double and rounded once.
        //  * C > 1: t_r = fma(x_r0, w0, x_r1 * w1) per row, then
        //    fma(t_0, h0, t_1 * h1): `a * w0 + b * w1` contracted to FMA.
        const float w00 = ty.l0 * tx.l0, w01 = ty.l0 * tx.l1;
        const float w10 = ty.l1 * tx.l0, w11 = ty.l1 * tx.l1;
        for (int k = 0; k < px; ++k) {
          const size_t a = static_cast<size_t>(tx.i0) * px + k;
          const size_t b = static_cast<size_t>(tx.i1) * px + k;
          const float x00 = static_cast<float>(r0[a]), x01 = static_cast<float>(r0[b]);
          const float x10 = static_cast<float>(r1[a]), x11 = static_cast<float>(r1[b]);
          float v;
          if (in.shape.channels == 1) {
            v = static_cast<float>(static_cast<double>(x00) * w00 + static_cast<double>(x01) * w01 +
                                   static_cast<double>(x10) * w10 + static_cast<double>(x11) * w11);
          } else {
            const float p01 = x01 * tx.l1, p11 = x11 * tx.l1;
            const float t0 = std::fma(x00, tx.l0, p01);
            const float t1 = std::fma(x10, tx.l0, p11);
            const float q1 = t1 * ty.l1;
            v = std::fma(t0, ty.l0, q1);
          }
          if constexpr (std::is_same_v<T, uint8_t>) {
            // torchvision's uint8 path: torch.round (half to even), then cast.
            d[static_cast<size_t>(ox) * px + k] =
                static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, std::nearbyint(v))));
          } else {
            d[static_cast<size_t>(ox) * px + k] = v;
          }
        }
      }
    }
  }
}

}  // namespace

// ---- kernels declared in transform_internal.h ---------------------------------

void CropZeroPad(const ImageView& in, int top, int left, const MutableImageView& out) {
  const Planes pl = PlanesOf(in.shape);
  const size_t pb = static_cast<size_t>(pl.px) * DTypeSize(in.shape.dtype);  // bytes per pixel
  const int ih = in.shape.height, iw = in.shape.width;
  const int oh = out.shape.height, ow = out.shape.width;
  // Output columns [x0, x1) come from the input; the rest are padding.
  const int x0 = std::min(std::max(-left, 0), ow);
  const int x1 = std::max(std::min(iw - left, ow), x0);
  for (int p = 0; p < pl.planes; ++p) {
    const uint8_t* src = in.as<uint8_t>() + static_cast<size_t>(p) * ih * iw * pb;
    uint8_t* dst = out.as<uint8_t>() + static_cast<size_t>(p) * oh * ow * pb;
    for (int y = 0; y < oh; ++y) {
      uint8_t* row = dst + static_cast<size_t>(y) * ow * pb;
      const int sy = y + top;
      if (sy < 0 || sy >= ih) {
        std::memset(row, 0, ow * pb);
        continue;
      }
      std::memset(row, 0, x0 * pb);
      // Only when the window overlaps the row: otherwise x0 + left is
      // outside it and so would the source pointer be.
      if (x1 > x0) {
        std::memcpy(row + x0 * pb, src + (static_cast<size_t>(sy) * iw + x0 + left) * pb, (x1 - x0) * pb);
      }
      std::memset(row + x1 * pb, 0, (ow - x1) * pb);
    }
  }
}

void FlipHorizontal(const ImageView& in, const MutableImageView& out) {
  const Planes pl = PlanesOf(in.shape);
  const size_t pb = static_cast<size_t>(pl.px) * DTypeSize(in.shape.dtype);
  const int h = in.shape.height, w = in.shape.width;
  const size_t rows = static_cast<size_t>(pl.planes) * h;
  const uint8_t* src = in.as<uint8_t>();
  uint8_t* dst = out.as<uint8_t>();
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* s = src + r * w * pb;
    uint8_t* d = dst + r * w * pb;
    for (int x = 0; x < w; ++x) std::memcpy(d + x * pb, s + (w - 1 - x) * pb, pb);
  }
}

void ResizeBilinear(const ImageView& in, const MutableImageView& out) {
  if (in.shape == out.shape) {  // torchvision returns the image unchanged
    std::memcpy(out.data, in.data, in.shape.nbytes());
  } else if (in.shape.dtype == DType::kUInt8) {
    ResizeBilinearT<uint8_t>(in, out);
  } else {
    ResizeBilinearT<float>(in, out);
  }
}

int CenterCropOffset(int in_size, int crop_size) {
  if (crop_size > in_size) {
    // torchvision pads (crop - in) / 2 (floor) before, the rest after, then
    // crops at 0.
    return -((crop_size - in_size) / 2);
  }
  // int(round((in - crop) / 2.0)): Python rounds half to even.
  return static_cast<int>(std::nearbyint((in_size - crop_size) / 2.0));
}

void GaussianKernel1d(int k, double sigma, float* out) {
  // torch.linspace(-(k-1)/2, (k-1)/2, k) is exact integers for odd k; x / sigma
  // etc. in float32 as torch does with a float32 tensor and a Python scalar.
  const float s = static_cast<float>(sigma);
  const int half = (k - 1) / 2;
  float sum = 0.0f;
  for (int i = 0; i < k; ++i) {
    const float x = static_cast<float>(i - half) / s;
    out[i] = std::exp(-0.5f * (x * x));
    sum += out[i];
  }
  for (int i = 0; i < k; ++i) out[i] /= sum;
}

CropOffset DrawRandomCrop(SampleRng& rng, int padded_height, int padded_width, int crop_height,
                          int crop_width) {
  CropOffset o;
  o.top = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(padded_height - crop_height + 1)));
  o.left = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(padded_width - crop_width + 1)));
  return o;
}

std::shared_ptr<const Transform> Fuse(const Transform& a, const Transform& b) {
  const auto* norm = dynamic_cast<const Normalize*>(&b);
  if (dynamic_cast<const ToTensor*>(&a) != nullptr && norm != nullptr) {
    return std::make_shared<ToTensorNormalize>(norm->params());
  }
  return nullptr;
}

std::vector<std::pair<std::string, TransformFactory>> BuiltinTransforms() {
  return {
      {"to_tensor", MakeToTensor},
      {"normalize", MakeNormalize},
      {"gaussian_blur", MakeGaussianBlur},
      {"resize", MakeResize},
      {"center_crop", MakeCenterCrop},
      {"random_crop", MakeRandomCrop},
      {"random_horizontal_flip", MakeRandomHorizontalFlip},
      {"random_resized_crop", MakeRandomResizedCrop},
      {"color_jitter", MakeColorJitter},
  };
}

}  // namespace internal
}  // namespace datafeed
