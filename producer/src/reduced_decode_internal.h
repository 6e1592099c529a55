// Decoding no more of a JPEG than the pipeline's first step reads
// (producer.h, DecodeMode).
#ifndef DATAFEED_PRODUCER_REDUCED_DECODE_INTERNAL_H_
#define DATAFEED_PRODUCER_REDUCED_DECODE_INTERNAL_H_

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/producer/sample_rng.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/status.h"

namespace datafeed {
namespace internal {

// Decodes sample's encoded bytes with `channels` channels for `pipeline`
// run with `rng`. When the bytes are a (baseline, YCbCr or gray) JPEG and the
// pipeline's first step plans a region of it (Pipeline::PlanDecode), only
// that region (plus a margin) is decoded, and *frame says where the pixels
// sit:
//   * kExact: at full scale. The first step then computes from exactly the
//     pixels a full decode would give it (tested), so the output is
//     bit-identical; only a plan smaller than the picture is worth it.
//   * kReduced: also with the DCT scaled by the smallest of 1/8, 1/4, 1/2
//     that leaves at least the step's output size over the region.
// Otherwise it is DecodeSample's whole decode and frame->full_height is 0.
// A JPEG whose last bytes hold no end-of-image marker (truncated?) is always
// decoded whole, so the truncation is found as PIL would find it. Errors as
// DecodeSample's.
Status DecodeForPipeline(const Pipeline& pipeline, SampleRng rng, int channels, DecodeMode mode,
                         Sample* sample, ImageFrame* frame);

// The scale numerator (of 8) kReduced uses for a plan: the smallest of 1,
// 2, 4 with region * num / 8 >= out on both axes, else 8.
int ReducedScale(const DecodePlan& plan);

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_REDUCED_DECODE_INTERNAL_H_
