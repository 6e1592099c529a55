// PIL's (Pillow 9.4) uint8 image arithmetic, reproduced bit for bit: what
// torchvision's transforms do to PIL images, the images its default loader
// makes. Used by the uint8 forms of resize, random_resized_crop and
// color_jitter (transforms_builtin.cc, transforms_pil.cc); exposed for the
// tests. Images are uint8 HWC with 1 (PIL "L") or 3 ("RGB") channels, any
// channel count for the resampler (each channel on its own: PIL's "RGBA"
// premultiplies alpha first, which this does not).
//
// Thread safety: free functions; scratch memory is thread_local.
#ifndef DATAFEED_PRODUCER_PIL_OPS_INTERNAL_H_
#define DATAFEED_PRODUCER_PIL_OPS_INTERNAL_H_

#include <cstddef>
#include <cstdint>

namespace datafeed {
namespace internal {

// A uint8 HWC image whose rows are `stride` bytes apart (a crop of a larger
// image points into it and keeps its stride).
struct U8Plane {
  const uint8_t* data = nullptr;
  int height = 0;
  int width = 0;
  int channels = 0;
  size_t stride = 0;  // bytes from one row to the next
};

// PIL's Image.resize((out_width, out_height), Image.BILINEAR, box) (Resample.c,
// ImagingResample): a separable triangle filter whose support grows with the
// downscale factor (antialiasing), coefficients rounded to 22-bit fixed
// point, a horizontal pass rounded to uint8, then a vertical pass. box is
// (x0, y0, x1, y1) in input pixels, float32 as PIL keeps it; the whole image
// is (0, 0, width, height). Source pixels outside `in` are never read (the
// filter is cut at its edges, as PIL's is). `out` is out_height x out_width x
// in.channels, rows packed.
void PilResizeBilinear(const U8Plane& in, const float box[4], uint8_t* out, int out_height,
                       int out_width);

// PIL's Image.blend(im1, im2, alpha) on one byte pair: im1 + alpha (im2 - im1)
// in float32, truncated, clipped to 0..255 when alpha is outside [0, 1].
// alpha 0 and 1 return im1 and im2 exactly, as PIL does.
inline uint8_t PilBlend(uint8_t im1, uint8_t im2, float alpha) {
  const float v = static_cast<float>(im1) + alpha * static_cast<float>(int{im2} - int{im1});
  if (v <= 0.0f) return 0;
  if (v >= 255.0f) return 255;
  return static_cast<uint8_t>(v);
}

// torchvision's F.adjust_brightness / adjust_contrast / adjust_saturation /
// adjust_hue on a PIL image (ImageEnhance.Brightness/Contrast/Color and the
// HSV round trip). `in` and `out` are h x w x channels (1 or 3), rows packed,
// and may be the same memory. factor is converted to float32 as PIL's blend
// takes it; hue is in [-0.5, 0.5] (a gray image is returned unchanged, as
// torchvision does).
void PilAdjustBrightness(const uint8_t* in, int h, int w, int channels, double factor, uint8_t* out);
void PilAdjustContrast(const uint8_t* in, int h, int w, int channels, double factor, uint8_t* out);
void PilAdjustSaturation(const uint8_t* in, int h, int w, int channels, double factor, uint8_t* out);
void PilAdjustHue(const uint8_t* in, int h, int w, int channels, double hue, uint8_t* out);

// PIL's RGB -> HSV (Convert.c rgb2hsv_row) and HSV -> RGB (hsv2rgb), one pixel.
void PilRgbToHsv(const uint8_t rgb[3], uint8_t hsv[3]);
void PilHsvToRgb(const uint8_t hsv[3], uint8_t rgb[3]);

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_PIL_OPS_INTERNAL_H_
