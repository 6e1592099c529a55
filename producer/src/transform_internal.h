// Internals of transform.h shared by transform.cc, transforms_builtin.cc and
// the tests: the image kernels behind the built-in transforms, exposed so the
// deterministic part of a random transform can be checked on its own.
#ifndef DATAFEED_PRODUCER_TRANSFORM_INTERNAL_H_
#define DATAFEED_PRODUCER_TRANSFORM_INTERNAL_H_

#include <memory>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "datafeed/producer/transform.h"

namespace datafeed {
namespace internal {

// The built-in (name, factory) pairs, registered by the transform registry
// on first use.
std::vector<std::pair<std::string, TransformFactory>> BuiltinTransforms();

// Factories defined in transforms_pil.cc.
Result<std::unique_ptr<Transform>> MakeRandomResizedCrop(const std::vector<double>& args);
Result<std::unique_ptr<Transform>> MakeColorJitter(const std::vector<double>& args);

// Spec text helpers shared by the transform files: a number as "%.9g",
// "name(a, b)", "HxW".
std::string Num(double v);
std::string Call(const std::string& name, const std::vector<double>& args);
std::string Dims(int h, int w);
// args[i] as an integer in [lo, hi], or InvalidArgument naming the call.
Result<int> IntArg(const std::string& call, const std::vector<double>& args, size_t i,
                   const char* what, int lo, int hi = 1 << 20);
// InvalidArgument unless lo <= args.size() <= hi; `forms` lists the accepted forms.
Status ArgCount(const std::string& call, const std::vector<double>& args, size_t lo, size_t hi,
                const char* forms);

// The fused form of stage `a` followed by stage `b` (to_tensor then
// normalize), or nullptr when they do not fuse.
std::shared_ptr<const Transform> Fuse(const Transform& a, const Transform& b);

// out = in shifted so out(y, x) = in(y + top, x + left), zero where that is
// outside `in` (top/left may be negative: padding). out's shape gives the
// crop size; dtype and channels must match in's. Works on both image forms.
void CropZeroPad(const ImageView& in, int top, int left, const MutableImageView& out);

// out = in mirrored left-right (same shape). Both image forms.
void FlipHorizontal(const ImageView& in, const MutableImageView& out);

// Bilinear resize of in to out's height x width, torch's
// upsample_bilinear2d(align_corners=False) arithmetic in float32; uint8
// results are rounded half-to-even like torchvision's uint8 tensor path.
void ResizeBilinear(const ImageView& in, const MutableImageView& out);

// torchvision's center_crop offsets (banker's rounding of (in - crop) / 2,
// negative = zero padding) for one axis.
int CenterCropOffset(int in_size, int crop_size);

// torchvision's _get_gaussian_kernel1d in float32: exp(-0.5 (x / sigma)^2)
// for x = -(k-1)/2 .. (k-1)/2, normalised to sum 1. Writes k floats.
void GaussianKernel1d(int k, double sigma, float* out);

// torchvision's default sigma for kernel size k (F.gaussian_blur with sigma=None).
inline double DefaultGaussianSigma(int k) { return k * 0.15 + 0.35; }

// The offset random_crop draws: top/left of the crop inside the padded image,
// each uniform over every position that fits. Draws in that order from rng.
struct CropOffset {
  int top = 0;
  int left = 0;
};
CropOffset DrawRandomCrop(SampleRng& rng, int padded_height, int padded_width, int crop_height,
                          int crop_width);

// A crop inside an image: rows [top, top + height), columns [left, left + width).
struct CropBox {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
};

// torchvision's RandomResizedCrop.get_params for a height x width image:
// up to 10 tries of area fraction uniform in [scale_lo, scale_hi] and log
// aspect ratio uniform in [log ratio_lo, log ratio_hi], w = round(sqrt(area
// * ratio)), h = round(sqrt(area / ratio)) (half to even, as Python's
// round), accepted when it fits, then top and left uniform over every fitting
// position; else the central crop clamped to the ratio range. Draws, in
// order, from rng: two doubles per try, then top and left.
CropBox DrawRandomResizedCrop(SampleRng& rng, int height, int width, double scale_lo,
                              double scale_hi, double ratio_lo, double ratio_hi);

// F.resized_crop(img, top, left, height, width, [out h, out w]): the crop
// resized to out's size. On uint8 HWC it is PIL's (img.crop then resize with
// BILINEAR: antialiased, PilResizeBilinear); on float32 CHW torch's bilinear
// without antialiasing (ResizeBilinear), as torchvision 0.14 does for
// tensors. The box must lie inside `in`.
void ResizedCrop(const ImageView& in, const CropBox& box, const MutableImageView& out);

// Resizes the part of `in` that covers [left, right) x [top, bottom) of the
// picture `frame` describes to out's size with PIL's resampler (uint8 HWC):
// the reduced-decode form of resize and random_resized_crop.
void ResizeFramedRegion(const ImageView& in, const ImageFrame& frame, double top, double left,
                        double bottom, double right, const MutableImageView& out);

// ColorJitter's drawn parameters: the order the four adjustments run in
// (0 brightness, 1 contrast, 2 saturation, 3 hue; torch.randperm(4)) and
// each factor, absent when that adjustment is off.
struct ColorJitterParams {
  int order[4] = {0, 1, 2, 3};
  bool has[4] = {false, false, false, false};
  double factor[4] = {1, 1, 1, 0};
};

// The ranges of a color_jitter: brightness/contrast/saturation factors in
// [lo, hi] (from b: [max(0, 1 - b), 1 + b]), hue in [lo, hi] within
// [-0.5, 0.5]; `on` false for an adjustment torchvision would skip (b = 0).
struct ColorJitterRanges {
  bool on[4] = {false, false, false, false};
  double lo[4] = {1, 1, 1, 0};
  double hi[4] = {1, 1, 1, 0};
};

// torchvision's ColorJitter.get_params from rng: the order (a Fisher-Yates
// shuffle: three draws), then a uniform factor for each adjustment that is
// on, in the order brightness, contrast, saturation, hue.
ColorJitterParams DrawColorJitter(SampleRng& rng, const ColorJitterRanges& ranges);

// ColorJitter.forward with fixed parameters on a uint8 HWC image of 1 or 3
// channels: each adjustment that is on, in params.order, as torchvision
// does to PIL images (pil_ops_internal.h). `in` and `out` have one shape.
void ApplyColorJitter(const ColorJitterParams& params, const ImageView& in,
                      const MutableImageView& out);

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_TRANSFORM_INTERNAL_H_
