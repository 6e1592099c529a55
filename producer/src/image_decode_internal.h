// Internals of DecodeSample (dataset.h) shared with the producer's reduced
// decode and the tests: format sniffing, JPEG headers, PIL's conversions.
#ifndef DATAFEED_PRODUCER_IMAGE_DECODE_INTERNAL_H_
#define DATAFEED_PRODUCER_IMAGE_DECODE_INTERNAL_H_

#include <cstddef>
#include <cstdint>

#include "datafeed/producer/dataset.h"
#include "datafeed/transport/status.h"

namespace datafeed {
namespace internal {

// PIL's RGB -> L (Convert.c, L24): ITU-R 601-2 luma in 16-bit fixed point,
// rounded. Every datafeed conversion to gray goes through this.
inline uint8_t PilLuma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

// Whether the bytes start like a JPEG file (SOI marker, then a marker).
inline bool LooksLikeJpeg(const uint8_t* data, size_t n) {
  return n >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}

// The size of a JPEG from its header alone (no decode). DataLoss when the
// header cannot be read.
Status ReadJpegSize(const uint8_t* data, size_t n, int* height, int* width);

// Decodes a JPEG with its DCT scaled by num/8 (num 1..8; sizes ceil(side *
// num / 8), as libjpeg's scaled IDCT makes them) into out's pixels with
// `channels` channels; num == 8 is DecodeSample's exact decode. The same
// conversions as DecodeSample.
Status DecodeJpegScaled(const uint8_t* data, size_t n, int channels, int num, Sample* out);

// A part of a JPEG to decode: rows [top, bottom) and columns [left, right)
// of the full picture, decoded with the DCT scaled by num/8 (num 1, 2, 4 or
// 8: libjpeg-turbo has SIMD code for these; 3/8, 5/8, ... run in plain C
// and are slower than a full decode).
struct JpegRegion {
  int top = 0, left = 0, bottom = 0, right = 0;
  int num = 8;
};

// Decodes only `region` of a JPEG (libjpeg's jpeg_crop_scanline and
// jpeg_skip_scanlines: the columns outside it skip the IDCT and colour
// conversion, the rows below it are never read, the rows above it only
// entropy-decoded) into out's pixels with `channels` channels, the same
// conversions as DecodeSample. The region is widened to what libjpeg can
// crop at (whole iMCU columns) and `margin` more pixels on every side
// (clamped to the picture), so upsampling near its edges sees the same
// neighbours as in a full decode; *decoded is the region the pixels cover,
// in full-picture pixels. Unimplemented (decode it whole instead) for
// progressive, CMYK and arithmetic-coded JPEGs.
Status DecodeJpegRegion(const uint8_t* data, size_t n, int channels, const JpegRegion& region,
                        int margin, Sample* out, JpegRegion* decoded);

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_IMAGE_DECODE_INTERNAL_H_
