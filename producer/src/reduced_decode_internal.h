// DecodeMode::kReduced (producer.h): decoding no more of a JPEG than the
// pipeline's first step keeps.
#ifndef DATAFEED_PRODUCER_REDUCED_DECODE_INTERNAL_H_
#define DATAFEED_PRODUCER_REDUCED_DECODE_INTERNAL_H_

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/sample_rng.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/status.h"

namespace datafeed {
namespace internal {

// Decodes sample's encoded bytes with `channels` channels for `pipeline`
// run with `rng`. When the bytes are a JPEG and the pipeline's first step
// plans a region (Pipeline::PlanDecode), the JPEG is decoded with its DCT
// scaled by the smallest k/8 (k = 1..7) that still leaves at least the
// step's output size over the region, and *frame says where the pixels sit
// (the whole picture, scaled by k/8). Otherwise (no plan, not a JPEG, no
// smaller scale fits) it is DecodeSample's exact decode and
// frame->full_height is 0. Errors as DecodeSample's.
Status DecodeReduced(const Pipeline& pipeline, SampleRng rng, int channels, Sample* sample,
                     ImageFrame* frame);

// The k of a reduced decode: the smallest k in 1..8 with region * k / 8 >=
// out on both axes (8 when none smaller fits).
int ReducedScale(const DecodePlan& plan);

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_REDUCED_DECODE_INTERNAL_H_
