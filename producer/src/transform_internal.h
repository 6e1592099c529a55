// Internals of transform.h shared by transform.cc, transforms_builtin.cc and
// the tests: the image kernels behind the built-in transforms, exposed so the
// deterministic part of a random transform can be checked on its own.
#ifndef DATAFEED_PRODUCER_TRANSFORM_INTERNAL_H_
#define DATAFEED_PRODUCER_TRANSFORM_INTERNAL_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "datafeed/producer/transform.h"

namespace datafeed {
namespace internal {

// The built-in (name, factory) pairs, registered by the transform registry
// on first use.
std::vector<std::pair<std::string, TransformFactory>> BuiltinTransforms();

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

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_TRANSFORM_INTERNAL_H_
