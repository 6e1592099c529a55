// The transforms of ImageNet-style training on decoded images:
// random_resized_crop and color_jitter. On uint8 HWC (before to_tensor) they
// are torchvision's operations on PIL images (pil_ops_internal.h), the form
// its default loader hands them; random_resized_crop also takes float32 CHW
// (torchvision's tensor path).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pil_ops_internal.h"
#include "transform_internal.h"

namespace datafeed {
namespace internal {

CropBox DrawRandomResizedCrop(SampleRng& rng, int height, int width, double scale_lo,
                              double scale_hi, double ratio_lo, double ratio_hi) {
  const double area = static_cast<double>(height) * static_cast<double>(width);
  const double log_lo = std::log(ratio_lo), log_hi = std::log(ratio_hi);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.NextDouble(scale_lo, scale_hi);
    const double aspect = std::exp(rng.NextDouble(log_lo, log_hi));
    // Python's round(): half to even, which nearbyint does in the default
    // rounding mode.
    const double w = std::nearbyint(std::sqrt(target_area * aspect));
    const double h = std::nearbyint(std::sqrt(target_area / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      CropBox box;
      box.height = static_cast<int>(h);
      box.width = static_cast<int>(w);
      box.top = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(height - box.height + 1)));
      box.left = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(width - box.width + 1)));
      return box;
    }
  }
  // Fallback: the central crop, clamped to the ratio range.
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  CropBox box;
  if (in_ratio < std::min(ratio_lo, ratio_hi)) {
    box.width = width;
    box.height = static_cast<int>(std::nearbyint(width / std::min(ratio_lo, ratio_hi)));
  } else if (in_ratio > std::max(ratio_lo, ratio_hi)) {
    box.height = height;
    box.width = static_cast<int>(std::nearbyint(height * std::max(ratio_lo, ratio_hi)));
  } else {
    box.width = width;
    box.height = height;
  }
  box.top = (height - box.height) / 2;  // Python's // on non-negatives
  box.left = (width - box.width) / 2;
  return box;
}

void ResizedCrop(const ImageView& in, const CropBox& box, const MutableImageView& out) {
  if (in.shape.dtype == DType::kUInt8) {
    // PIL: img.crop(box) then resize(size, BILINEAR); the crop keeps the
    // input's stride, and the whole crop is the resize's box.
    const size_t stride = static_cast<size_t>(in.shape.width) * in.shape.channels;
    const U8Plane crop{in.as<uint8_t>() + static_cast<size_t>(box.top) * stride +
                           static_cast<size_t>(box.left) * in.shape.channels,
                       box.height, box.width, in.shape.channels, stride};
    const float whole[4] = {0.0f, 0.0f, static_cast<float>(box.width),
                            static_cast<float>(box.height)};
    PilResizeBilinear(crop, whole, out.as<uint8_t>(), out.shape.height, out.shape.width);
    return;
  }
  // Tensor path: crop into scratch, then torch's bilinear resize.
  thread_local std::vector<float> scratch;
  ImageShape crop_shape = in.shape;
  crop_shape.height = box.height;
  crop_shape.width = box.width;
  scratch.resize(crop_shape.num_elements());
  CropZeroPad(in, box.top, box.left, MutableImageView{crop_shape, scratch.data()});
  ResizeBilinear(ImageView{crop_shape, scratch.data()}, out);
}

void ResizeFramedRegion(const ImageView& in, const ImageFrame& frame, double top, double left,
                        double bottom, double right, const MutableImageView& out) {
  const double sy = in.shape.height / (frame.bottom - frame.top);
  const double sx = in.shape.width / (frame.right - frame.left);
  auto clamp = [](double v, int hi) { return static_cast<float>(std::min(std::max(v, 0.0), double(hi))); };
  const float box[4] = {clamp((left - frame.left) * sx, in.shape.width),
                        clamp((top - frame.top) * sy, in.shape.height),
                        clamp((right - frame.left) * sx, in.shape.width),
                        clamp((bottom - frame.top) * sy, in.shape.height)};
  const U8Plane plane{in.as<uint8_t>(), in.shape.height, in.shape.width, in.shape.channels,
                      static_cast<size_t>(in.shape.width) * in.shape.channels};
  PilResizeBilinear(plane, box, out.as<uint8_t>(), out.shape.height, out.shape.width);
}

ColorJitterParams DrawColorJitter(SampleRng& rng, const ColorJitterRanges& ranges) {
  ColorJitterParams p;
  for (int i = 3; i > 0; --i) {
    const int j = static_cast<int>(rng.NextBelow(static_cast<uint64_t>(i + 1)));
    std::swap(p.order[i], p.order[j]);
  }
  for (int k = 0; k < 4; ++k) {
    p.has[k] = ranges.on[k];
    if (ranges.on[k]) p.factor[k] = rng.NextDouble(ranges.lo[k], ranges.hi[k]);
  }
  return p;
}

void ApplyColorJitter(const ColorJitterParams& params, const ImageView& in,
                      const MutableImageView& out) {
  const int h = in.shape.height, w = in.shape.width, c = in.shape.channels;
  const uint8_t* src = in.as<uint8_t>();
  uint8_t* dst = out.as<uint8_t>();
  // The first adjustment reads `in`; the rest work on `out` in place (every
  // PIL op here allows that).
  bool first = true;
  for (int k : params.order) {
    if (!params.has[k]) continue;
    const uint8_t* from = first ? src : dst;
    const double f = params.factor[k];
    switch (k) {
      case 0: PilAdjustBrightness(from, h, w, c, f, dst); break;
      case 1: PilAdjustContrast(from, h, w, c, f, dst); break;
      case 2: PilAdjustSaturation(from, h, w, c, f, dst); break;
      default: PilAdjustHue(from, h, w, c, f, dst); break;
    }
    first = false;
  }
  if (first) std::memcpy(dst, src, in.shape.nbytes());
}

namespace {

class RandomResizedCrop final : public Transform {
 public:
  RandomResizedCrop(int h, int w, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi)
      : h_(h), w_(w), scale_lo_(scale_lo), scale_hi_(scale_hi), ratio_lo_(ratio_lo),
        ratio_hi_(ratio_hi) {}
  std::string ToString() const override {
    return Call("random_resized_crop", {static_cast<double>(h_), static_cast<double>(w_), scale_lo_,
                                        scale_hi_, ratio_lo_, ratio_hi_});
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
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng& rng) const override {
    const CropBox box = DrawRandomResizedCrop(rng, in.shape.height, in.shape.width, scale_lo_,
                                              scale_hi_, ratio_lo_, ratio_hi_);
    ResizedCrop(in, box, out);
    return Status::OK();
  }
  bool PlanDecode(const ImageShape& full, SampleRng rng, DecodePlan* plan) const override {
    if (full.dtype != DType::kUInt8) return false;
    const CropBox box = DrawRandomResizedCrop(rng, full.height, full.width, scale_lo_, scale_hi_,
                                              ratio_lo_, ratio_hi_);
    *plan = DecodePlan{double(box.top), double(box.left), double(box.top + box.height),
                       double(box.left + box.width), h_, w_};
    return true;
  }
  Status ApplyFramed(const ImageView& in, const ImageFrame& frame, const MutableImageView& out,
                     SampleRng& rng) const override {
    // The same draws as Apply on the full picture, mapped into the pixels given.
    const CropBox box = DrawRandomResizedCrop(rng, frame.full_height, frame.full_width, scale_lo_,
                                              scale_hi_, ratio_lo_, ratio_hi_);
    if (in.shape.height == frame.bottom - frame.top && in.shape.width == frame.right - frame.left) {
      // A full-scale region holding the box: the very crop and resize Apply
      // does, on the same pixels.
      const int top = box.top - static_cast<int>(frame.top), left = box.left - static_cast<int>(frame.left);
      if (top < 0 || left < 0 || top + box.height > in.shape.height ||
          left + box.width > in.shape.width) {
        return Status::Internal(ToString() + ": the decoded region misses the drawn crop");
      }
      ResizedCrop(in, CropBox{top, left, box.height, box.width}, out);
      return Status::OK();
    }
    ResizeFramedRegion(in, frame, box.top, box.left, box.top + box.height, box.left + box.width,
                       out);
    return Status::OK();
  }

 private:
  int h_, w_;
  double scale_lo_, scale_hi_, ratio_lo_, ratio_hi_;
};

class ColorJitter final : public Transform {
 public:
  ColorJitter(std::vector<double> args, const ColorJitterRanges& ranges)
      : args_(std::move(args)), ranges_(ranges) {}
  std::string ToString() const override { return Call("color_jitter", args_); }
  bool Accepts(DType dtype) const override { return dtype == DType::kUInt8; }
  Result<ImageShape> OutputShape(const ImageShape& in) const override {
    if (in.channels != 1 && in.channels != 3) {
      return Status::InvalidArgument(ToString() + ": takes gray or RGB images (1 or 3 channels), "
                                     "got " + std::to_string(in.channels));
    }
    return in;
  }
  Status Apply(const ImageView& in, const MutableImageView& out, SampleRng& rng) const override {
    ApplyColorJitter(DrawColorJitter(rng, ranges_), in, out);
    return Status::OK();
  }

 private:
  std::vector<double> args_;
  ColorJitterRanges ranges_;
};

}  // namespace

Result<std::unique_ptr<Transform>> MakeRandomResizedCrop(const std::vector<double>& args) {
  const std::string call = Call("random_resized_crop", args);
  DATAFEED_RETURN_NOT_OK(ArgCount(
      call, args, 1, 6,
      "(size), (size, scale_min, scale_max), (size, scale_min, scale_max, ratio_min, ratio_max) "
      "or the same with (height, width) for size"));
  // An odd count starts with one size, an even count with height and width.
  const bool square = args.size() % 2 == 1;
  int h = 0, w = 0;
  DATAFEED_ASSIGN_OR_RETURN(h, IntArg(call, args, 0, square ? "size" : "height", 1));
  w = h;
  if (!square) {
    if (args[1] < 1) {
      return Status::InvalidArgument(call + ": an even number of arguments starts with (height, "
                                     "width); scale and ratio are (min, max) pairs");
    }
    DATAFEED_ASSIGN_OR_RETURN(w, IntArg(call, args, 1, "width", 1));
  }
  const size_t k = square ? 1 : 2;
  double scale_lo = 0.08, scale_hi = 1.0, ratio_lo = 3.0 / 4.0, ratio_hi = 4.0 / 3.0;
  if (args.size() >= k + 2) {
    scale_lo = args[k];
    scale_hi = args[k + 1];
  }
  if (args.size() >= k + 4) {
    ratio_lo = args[k + 2];
    ratio_hi = args[k + 3];
  }
  if (!(scale_lo > 0 && scale_lo <= scale_hi && std::isfinite(scale_hi))) {
    return Status::InvalidArgument(call + ": scale must be 0 < min <= max (a fraction of the area; "
                                   "torchvision's default is 0.08, 1)");
  }
  if (!(ratio_lo > 0 && ratio_lo <= ratio_hi && std::isfinite(ratio_hi))) {
    return Status::InvalidArgument(call + ": ratio must be 0 < min <= max (width / height; "
                                   "torchvision's default is 0.75, 1.3333)");
  }
  return std::unique_ptr<Transform>(
      new RandomResizedCrop(h, w, scale_lo, scale_hi, ratio_lo, ratio_hi));
}

// The largest color_jitter factor: far beyond any useful one, far below
// float's range.
constexpr double kMaxJitter = 1e6;

Result<std::unique_ptr<Transform>> MakeColorJitter(const std::vector<double>& args) {
  const std::string call = Call("color_jitter", args);
  DATAFEED_RETURN_NOT_OK(ArgCount(call, args, 1, 4,
                                  "(brightness), (brightness, contrast), (brightness, contrast, "
                                  "saturation) or (brightness, contrast, saturation, hue)"));
  ColorJitterRanges r;
  const char* names[4] = {"brightness", "contrast", "saturation", "hue"};
  for (size_t k = 0; k < args.size(); ++k) {
    const double v = args[k];
    if (!(v >= 0) || !std::isfinite(v)) {
      return Status::InvalidArgument(call + ": " + names[k] + " must be a non-negative number");
    }
    // PIL blends in C float: a factor past float's range turns into inf,
    // and inf * 0 into NaN pixels (undefined when made bytes).
    if (v > kMaxJitter) {
      return Status::InvalidArgument(call + ": " + names[k] + " must be at most " + Num(kMaxJitter) + ", got " + Num(v));
    }
    if (k == 3) {
      if (v > 0.5) {
        return Status::InvalidArgument(call + ": hue must be in [0, 0.5] (a fraction of the colour "
                                       "circle each way), got " + Num(v));
      }
      r.on[3] = v > 0;
      r.lo[3] = -v;
      r.hi[3] = v;
    } else {
      // torchvision's _check_input: [max(0, 1 - v), 1 + v]; off when it is [1, 1].
      r.on[k] = v > 0;
      r.lo[k] = std::max(0.0, 1.0 - v);
      r.hi[k] = 1.0 + v;
    }
  }
  return std::unique_ptr<Transform>(new ColorJitter(args, r));
}

}  // namespace internal
}  // namespace datafeed
