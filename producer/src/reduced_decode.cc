#include "reduced_decode_internal.h"

#include <algorithm>
#include <cmath>

#include "image_decode_internal.h"

namespace datafeed {
namespace internal {
namespace {

// Scaled pixels of context kept around a decoded region: fancy upsampling
// reads one chroma sample (two pixels) beyond a block, so 16 covers it with
// room to spare.
constexpr int kRegionMargin = 16;

// Whether an end-of-image marker sits in the last bytes (writers may pad a
// little after it). Without one the file is probably truncated.
bool EndsWithEoi(const uint8_t* data, size_t n) {
  const size_t from = n > 64 ? n - 64 : 0;
  for (size_t i = n; i-- > from + 1;) {
    if (data[i - 1] == 0xFF && data[i] == 0xD9) return true;
  }
  return false;
}

}  // namespace

int ReducedScale(const DecodePlan& plan) {
  const double rh = plan.bottom - plan.top, rw = plan.right - plan.left;
  for (int num : {1, 2, 4}) {
    if (rh * num / 8.0 >= plan.out_height && rw * num / 8.0 >= plan.out_width) return num;
  }
  return 8;
}

Status DecodeForPipeline(const Pipeline& pipeline, SampleRng rng, int channels, DecodeMode mode,
                         Sample* sample, ImageFrame* frame) {
  *frame = ImageFrame{};
  const uint8_t* data = sample->encoded();
  const size_t n = sample->encoded_size();
  if (sample->has_pixels() || !LooksLikeJpeg(data, n)) return DecodeSample(sample, channels);
  int height = 0, width = 0;
  if (!ReadJpegSize(data, n, &height, &width).ok()) return DecodeSample(sample, channels);
  DecodePlan plan;
  if (!pipeline.PlanDecode(height, width, channels, rng, &plan)) return DecodeSample(sample, channels);
  JpegRegion want;
  want.top = std::max(0, static_cast<int>(std::floor(plan.top)));
  want.left = std::max(0, static_cast<int>(std::floor(plan.left)));
  want.bottom = std::min(height, static_cast<int>(std::ceil(plan.bottom)));
  want.right = std::min(width, static_cast<int>(std::ceil(plan.right)));
  want.num = mode == DecodeMode::kReduced ? ReducedScale(plan) : 8;
  const bool whole = want.top == 0 && want.left == 0 && want.bottom == height && want.right == width;
  if ((whole && want.num == 8) || !EndsWithEoi(data, n)) return DecodeSample(sample, channels);
  JpegRegion got;
  Status st = DecodeJpegRegion(data, n, channels, want, kRegionMargin, sample, &got);
  if (st.code() == StatusCode::kUnimplemented) return DecodeSample(sample, channels);
  DATAFEED_RETURN_NOT_OK(st);
  frame->full_height = height;
  frame->full_width = width;
  frame->top = got.top;
  frame->left = got.left;
  // Exactly num/8 per pixel, also over a partial last block.
  frame->bottom = got.top + sample->height() * 8.0 / got.num;
  frame->right = got.left + sample->width() * 8.0 / got.num;
  return Status::OK();
}

}  // namespace internal
}  // namespace datafeed
