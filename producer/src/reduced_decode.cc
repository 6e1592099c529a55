#include "reduced_decode_internal.h"

#include "image_decode_internal.h"

namespace datafeed {
namespace internal {

int ReducedScale(const DecodePlan& plan) {
  const double rh = plan.bottom - plan.top, rw = plan.right - plan.left;
  for (int k = 1; k < 8; ++k) {
    if (rh * k / 8.0 >= plan.out_height && rw * k / 8.0 >= plan.out_width) return k;
  }
  return 8;
}

Status DecodeReduced(const Pipeline& pipeline, SampleRng rng, int channels, Sample* sample,
                     ImageFrame* frame) {
  *frame = ImageFrame{};
  const uint8_t* data = sample->encoded();
  const size_t n = sample->encoded_size();
  if (sample->has_pixels() || !LooksLikeJpeg(data, n)) return DecodeSample(sample, channels);
  int height = 0, width = 0;
  if (!ReadJpegSize(data, n, &height, &width).ok()) return DecodeSample(sample, channels);
  DecodePlan plan;
  if (!pipeline.PlanDecode(height, width, channels, rng, &plan)) return DecodeSample(sample, channels);
  const int k = ReducedScale(plan);
  if (k == 8) return DecodeSample(sample, channels);
  DATAFEED_RETURN_NOT_OK(DecodeJpegScaled(data, n, channels, k, sample));
  // Scaled IDCT: every 8x8 block becomes k x k pixels, so decoded pixel i
  // covers full pixels [8 i / k, 8 (i + 1) / k) (a partial last block is
  // cut, which only shortens the far edge).
  frame->full_height = height;
  frame->full_width = width;
  frame->top = 0;
  frame->left = 0;
  frame->bottom = sample->height() * 8.0 / k;
  frame->right = sample->width() * 8.0 / k;
  return Status::OK();
}

}  // namespace internal
}  // namespace datafeed
