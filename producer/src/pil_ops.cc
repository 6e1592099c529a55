// PIL's uint8 resampling and colour enhancement, step for step (Pillow 9.4:
// libImaging/Resample.c, Blend.c, Convert.c; PIL/ImageEnhance.py; and
// torchvision 0.14's transforms/functional_pil.py around them). The order
// of every floating-point operation and every rounding follows the C source
// so the bytes are PIL's; compiled with -ffp-contract=off (no fused
// multiply-add) as Debian's Pillow is.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "image_decode_internal.h"
#include "pil_ops_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DATAFEED_PIL_X86 1
#endif

namespace datafeed {
namespace internal {
namespace {

// Resample.c: PRECISION_BITS = 32 - 8 - 2.
constexpr int kPrecisionBits = 22;

// One axis's filter: for output position i, taps bounds[2i] .. bounds[2i] +
// bounds[2i+1] - 1 of the input with 22-bit fixed-point weights
// weights[i * ksize ...].
struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;
  std::vector<double> kk;
  std::vector<int32_t> weights;
};

double BilinearFilter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

// Resample.c precompute_coeffs + normalize_coeffs_8bpc, bilinear filter
// (support 1).
void Precompute(int in_size, float in0, float in1, int out_size, Coefficients* c) {
  double filterscale, scale;
  filterscale = scale = static_cast<double>(in1 - in0) / out_size;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = 1.0 * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c->ksize = ksize;
  c->bounds.resize(static_cast<size_t>(out_size) * 2);
  c->kk.assign(static_cast<size_t>(out_size) * ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &c->kk[static_cast<size_t>(xx) * ksize];
    for (int x = 0; x < xmax; ++x) {
      const double w = BilinearFilter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    c->bounds[static_cast<size_t>(xx) * 2] = xmin;
    c->bounds[static_cast<size_t>(xx) * 2 + 1] = xmax;
  }
  c->weights.resize(c->kk.size());
  for (size_t i = 0; i < c->kk.size(); ++i) {
    const double v = c->kk[i] * (1 << kPrecisionBits);
    c->weights[i] = static_cast<int32_t>(c->kk[i] < 0 ? -0.5 + v : 0.5 + v);
  }
}

// Resample.c clip8: the accumulator's integer part, clamped to 0..255.
inline uint8_t Clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift: floor
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// ImagingResampleHorizontal_8bpc on rows [row0, row0 + rows) of `in`.
template <int C>
void HorizontalPass(const U8Plane& in, int row0, int rows, const Coefficients& c, int out_width,
                    uint8_t* out) {
  const int channels = C > 0 ? C : in.channels;
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t* src = in.data + static_cast<size_t>(row0 + yy) * in.stride;
    uint8_t* dst = out + static_cast<size_t>(yy) * out_width * channels;
    for (int xx = 0; xx < out_width; ++xx) {
      const int xmin = c.bounds[static_cast<size_t>(xx) * 2];
      const int xmax = c.bounds[static_cast<size_t>(xx) * 2 + 1];
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* s = src + static_cast<size_t>(xmin) * channels;
      if constexpr (C == 3) {
        int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
        for (int x = 0; x < xmax; ++x) {
          s0 += s[3 * x] * k[x];
          s1 += s[3 * x + 1] * k[x];
          s2 += s[3 * x + 2] * k[x];
        }
        dst[3 * xx] = Clip8(s0);
        dst[3 * xx + 1] = Clip8(s1);
        dst[3 * xx + 2] = Clip8(s2);
      } else if constexpr (C == 1) {
        int32_t s0 = kHalf;
        for (int x = 0; x < xmax; ++x) s0 += s[x] * k[x];
        dst[xx] = Clip8(s0);
      } else {
        for (int ch = 0; ch < channels; ++ch) {
          int32_t s0 = kHalf;
          for (int x = 0; x < xmax; ++x) s0 += s[x * channels + ch] * k[x];
          dst[xx * channels + ch] = Clip8(s0);
        }
      }
    }
  }
}

#if DATAFEED_PIL_X86
// The 3-channel horizontal pass with SSSE3, the same integers as
// HorizontalPass<3>: each 22-bit weight is split into 11-bit halves so that
// pmaddwd (16 x 16 -> 32 bits, adjacent pairs summed) can take two taps of a
// channel at once; (sum of high halves << 11) + sum of low halves is the
// exact sum, which fits 32 bits as PIL's int accumulator does. Every output
// uses NP tap pairs (weights past its own taps are zero), so the loop over
// taps has a fixed length.
struct PairWeights {
  std::vector<int16_t> hi, lo;  // [output][pair][8 lanes]
};

template <int NP>
__attribute__((target("ssse3"))) void HorizontalRgbSsse3(const uint8_t* src, uint8_t* dst,
                                                         const int* bounds, const int16_t* hi,
                                                         const int16_t* lo, int x0, int x1) {
  // Bytes R0 G0 B0 R1 G1 B1 of two pixels -> 16-bit lanes R0 R1 G0 G1 B0 B1 0 0.
  const __m128i shuffle = _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
  const __m128i half = _mm_set1_epi32(1 << (kPrecisionBits - 1));
  for (int xx = x0; xx < x1; ++xx) {
    const uint8_t* s = src + static_cast<size_t>(bounds[2 * xx]) * 3;
    __m128i acc_hi = _mm_setzero_si128(), acc_lo = _mm_setzero_si128();
    for (int p = 0; p < NP; ++p) {
      const __m128i px = _mm_shuffle_epi8(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + 6 * p)), shuffle);
      const size_t at = (static_cast<size_t>(xx) * NP + p) * 8;
      acc_hi = _mm_add_epi32(
          acc_hi, _mm_madd_epi16(px, _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi + at))));
      acc_lo = _mm_add_epi32(
          acc_lo, _mm_madd_epi16(px, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lo + at))));
    }
    const __m128i acc = _mm_add_epi32(_mm_add_epi32(_mm_slli_epi32(acc_hi, 11), acc_lo), half);
    // clip8: the arithmetic shift floors, the saturating packs clamp to 0..255.
    const __m128i v = _mm_srai_epi32(acc, kPrecisionBits);
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(v, v), v);
    // Four bytes out; the fourth is the next pixel's first, written next.
    const int32_t four = _mm_cvtsi128_si32(bytes);
    std::memcpy(dst + 3 * xx, &four, 4);
  }
}

bool HasSsse3() {
  static const bool has = __builtin_cpu_supports("ssse3");
  return has;
}

// HorizontalPass<3> through HorizontalRgbSsse3 where the tap count allows
// (pairs of taps <= 8, i.e. downscales up to about 7x); false otherwise.
bool HorizontalPassRgbFast(const U8Plane& in, int row0, int rows, const Coefficients& c,
                           int out_width, uint8_t* out) {
  if (!HasSsse3()) return false;
  int taps = 0;
  for (int xx = 0; xx < out_width; ++xx) taps = std::max(taps, c.bounds[static_cast<size_t>(xx) * 2 + 1]);
  const int np = (taps + 1) / 2;
  if (np < 1 || np > 8) return false;
  thread_local PairWeights w;
  w.hi.resize(static_cast<size_t>(out_width) * np * 8);
  w.lo.resize(static_cast<size_t>(out_width) * np * 8);
  for (int xx = 0; xx < out_width; ++xx) {
    const int xmax = c.bounds[static_cast<size_t>(xx) * 2 + 1];
    const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
    for (int p = 0; p < np; ++p) {
      const int32_t a = 2 * p < xmax ? k[2 * p] : 0, b = 2 * p + 1 < xmax ? k[2 * p + 1] : 0;
      // Bilinear weights are in [0, 2^22]: both halves fit int16.
      const auto ah = static_cast<int16_t>(a >> 11), al = static_cast<int16_t>(a & 2047);
      const auto bh = static_cast<int16_t>(b >> 11), bl = static_cast<int16_t>(b & 2047);
      int16_t* h = &w.hi[(static_cast<size_t>(xx) * np + p) * 8];
      int16_t* l = &w.lo[(static_cast<size_t>(xx) * np + p) * 8];
      const int16_t hv[8] = {ah, bh, ah, bh, ah, bh, 0, 0}, lv[8] = {al, bl, al, bl, al, bl, 0, 0};
      std::memcpy(h, hv, sizeof hv);
      std::memcpy(l, lv, sizeof lv);
    }
  }
  // Outputs [0, x1) read 8 bytes per pair inside the row; the rest (and the
  // last, whose fourth written byte would spill) go the scalar way.
  const int row_bytes = in.width * 3;
  int x1 = out_width - 1;
  while (x1 > 0 && (c.bounds[static_cast<size_t>(x1 - 1) * 2] + 2 * np - 1) * 3 + 8 > row_bytes) --x1;
  auto run = [&](auto np_tag, const uint8_t* src, uint8_t* dst) {
    HorizontalRgbSsse3<decltype(np_tag)::value>(src, dst, c.bounds.data(), w.hi.data(), w.lo.data(), 0, x1);
  };
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t* src = in.data + static_cast<size_t>(row0 + yy) * in.stride;
    uint8_t* dst = out + static_cast<size_t>(yy) * out_width * 3;
    switch (np) {
      case 1: run(std::integral_constant<int, 1>(), src, dst); break;
      case 2: run(std::integral_constant<int, 2>(), src, dst); break;
      case 3: run(std::integral_constant<int, 3>(), src, dst); break;
      case 4: run(std::integral_constant<int, 4>(), src, dst); break;
      case 5: run(std::integral_constant<int, 5>(), src, dst); break;
      case 6: run(std::integral_constant<int, 6>(), src, dst); break;
      case 7: run(std::integral_constant<int, 7>(), src, dst); break;
      default: run(std::integral_constant<int, 8>(), src, dst); break;
    }
    constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
    for (int xx = x1; xx < out_width; ++xx) {
      const int xmin = c.bounds[static_cast<size_t>(xx) * 2];
      const int xmax = c.bounds[static_cast<size_t>(xx) * 2 + 1];
      const int32_t* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* s = src + static_cast<size_t>(xmin) * 3;
      int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
      for (int x = 0; x < xmax; ++x) {
        s0 += s[3 * x] * k[x];
        s1 += s[3 * x + 1] * k[x];
        s2 += s[3 * x + 2] * k[x];
      }
      dst[3 * xx] = Clip8(s0);
      dst[3 * xx + 1] = Clip8(s1);
      dst[3 * xx + 2] = Clip8(s2);
    }
  }
  return true;
}
#else
bool HorizontalPassRgbFast(const U8Plane&, int, int, const Coefficients&, int, uint8_t*) {
  return false;
}
#endif

// ImagingResampleVertical_8bpc: every output row is a weighted sum of whole
// input rows, accumulated a row at a time (integer sums: the order is free),
// which vectorises.
// The portable form (and the reference the SSE2 form was checked against).
[[maybe_unused]] void VerticalPassScalar(const U8Plane& in, const Coefficients& c, int out_height,
                                         uint8_t* out) {
  const size_t row_bytes = static_cast<size_t>(in.width) * in.channels;
  thread_local std::vector<int32_t> acc;
  if (acc.size() < row_bytes) acc.resize(row_bytes);
  int32_t* a = acc.data();
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int yy = 0; yy < out_height; ++yy) {
    const int ymin = c.bounds[static_cast<size_t>(yy) * 2];
    const int ymax = c.bounds[static_cast<size_t>(yy) * 2 + 1];
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    std::fill(a, a + row_bytes, kHalf);
    for (int y = 0; y < ymax; ++y) {
      const uint8_t* src = in.data + static_cast<size_t>(ymin + y) * in.stride;
      const int32_t w = k[y];
      for (size_t i = 0; i < row_bytes; ++i) a[i] += src[i] * w;
    }
    uint8_t* dst = out + static_cast<size_t>(yy) * row_bytes;
    for (size_t i = 0; i < row_bytes; ++i) dst[i] = Clip8(a[i]);
  }
}

#if DATAFEED_PIL_X86
// The vertical pass with SSE2 (every x86-64 has it): two input rows at a
// time, their bytes interleaved into 16-bit pairs for pmaddwd with the two
// rows' weights split into 11-bit halves, as in HorizontalRgbSsse3; 16
// output bytes per step with the sums in registers.
void VerticalPassSse2(const U8Plane& in, const Coefficients& c, int out_height, uint8_t* out) {
  const size_t row_bytes = static_cast<size_t>(in.width) * in.channels;
  const __m128i zero = _mm_setzero_si128();
  const __m128i half = _mm_set1_epi32(1 << (kPrecisionBits - 1));
  thread_local std::vector<const uint8_t*> rows;
  thread_local std::vector<int32_t> weights;  // per pair: high halves, then low halves, as 2 x int16
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int yy = 0; yy < out_height; ++yy) {
    const int ymin = c.bounds[static_cast<size_t>(yy) * 2];
    const int ymax = c.bounds[static_cast<size_t>(yy) * 2 + 1];
    const int32_t* k = &c.weights[static_cast<size_t>(yy) * c.ksize];
    const int np = (ymax + 1) / 2;
    rows.resize(static_cast<size_t>(np) * 2);
    weights.resize(static_cast<size_t>(np) * 2);
    for (int p = 0; p < np; ++p) {
      const bool pair = 2 * p + 1 < ymax;
      const int32_t a = k[2 * p], b = pair ? k[2 * p + 1] : 0;
      rows[2 * p] = in.data + static_cast<size_t>(ymin + 2 * p) * in.stride;
      // An odd last row pairs with itself at weight 0.
      rows[2 * p + 1] = pair ? rows[2 * p] + in.stride : rows[2 * p];
      auto lanes = [](int32_t lo, int32_t hi) {
        return static_cast<int32_t>((static_cast<uint32_t>(hi) << 16) | static_cast<uint32_t>(lo));
      };
      weights[2 * p] = lanes(a >> 11, b >> 11);
      weights[2 * p + 1] = lanes(a & 2047, b & 2047);
    }
    uint8_t* dst = out + static_cast<size_t>(yy) * row_bytes;
    size_t i = 0;
    for (; i + 16 <= row_bytes; i += 16) {
      __m128i h0 = zero, h1 = zero, h2 = zero, h3 = zero, l0 = zero, l1 = zero, l2 = zero, l3 = zero;
      for (int p = 0; p < np; ++p) {
        const __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[2 * p] + i));
        const __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[2 * p + 1] + i));
        const __m128i a0 = _mm_unpacklo_epi8(r0, zero), a1 = _mm_unpackhi_epi8(r0, zero);
        const __m128i b0 = _mm_unpacklo_epi8(r1, zero), b1 = _mm_unpackhi_epi8(r1, zero);
        const __m128i q0 = _mm_unpacklo_epi16(a0, b0), q1 = _mm_unpackhi_epi16(a0, b0);
        const __m128i q2 = _mm_unpacklo_epi16(a1, b1), q3 = _mm_unpackhi_epi16(a1, b1);
        const __m128i wh = _mm_set1_epi32(weights[2 * p]), wl = _mm_set1_epi32(weights[2 * p + 1]);
        h0 = _mm_add_epi32(h0, _mm_madd_epi16(q0, wh));
        h1 = _mm_add_epi32(h1, _mm_madd_epi16(q1, wh));
        h2 = _mm_add_epi32(h2, _mm_madd_epi16(q2, wh));
        h3 = _mm_add_epi32(h3, _mm_madd_epi16(q3, wh));
        l0 = _mm_add_epi32(l0, _mm_madd_epi16(q0, wl));
        l1 = _mm_add_epi32(l1, _mm_madd_epi16(q1, wl));
        l2 = _mm_add_epi32(l2, _mm_madd_epi16(q2, wl));
        l3 = _mm_add_epi32(l3, _mm_madd_epi16(q3, wl));
      }
      auto finish = [&](__m128i h, __m128i l) {
        return _mm_srai_epi32(_mm_add_epi32(_mm_add_epi32(_mm_slli_epi32(h, 11), l), half),
                              kPrecisionBits);
      };
      const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(finish(h0, l0), finish(h1, l1)),
                                             _mm_packs_epi32(finish(h2, l2), finish(h3, l3)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), bytes);
    }
    for (; i < row_bytes; ++i) {
      int32_t s = kHalf;
      for (int y = 0; y < ymax; ++y) s += in.data[static_cast<size_t>(ymin + y) * in.stride + i] * k[y];
      dst[i] = Clip8(s);
    }
  }
}
#endif

void VerticalPass(const U8Plane& in, const Coefficients& c, int out_height, uint8_t* out) {
#if DATAFEED_PIL_X86
  VerticalPassSse2(in, c, out_height, out);
#else
  VerticalPassScalar(in, c, out_height, out);
#endif
}

}  // namespace

void PilResizeBilinear(const U8Plane& in, const float box[4], uint8_t* out, int out_height,
                       int out_width) {
  const size_t out_row = static_cast<size_t>(out_width) * in.channels;
  // Image.resize returns a copy when nothing changes.
  if (out_width == in.width && out_height == in.height && box[0] == 0 && box[1] == 0 &&
      box[2] == in.width && box[3] == in.height) {
    for (int y = 0; y < in.height; ++y) {
      std::memcpy(out + y * out_row, in.data + static_cast<size_t>(y) * in.stride, out_row);
    }
    return;
  }
  // ImagingResampleInner. (PIL compares box[2] and box[3] with the output
  // size here, not the input's; kept as is.)
  const bool need_horizontal = out_width != in.width || box[0] != 0 || box[2] != out_width;
  const bool need_vertical = out_height != in.height || box[1] != 0 || box[3] != out_height;
  thread_local Coefficients horiz, vert;
  Precompute(in.width, box[0], box[2], out_width, &horiz);
  Precompute(in.height, box[1], box[3], out_height, &vert);
  // The rows the vertical pass reads: only they need the horizontal pass.
  const int ybox_first = vert.bounds[0];
  const int ybox_last = vert.bounds[static_cast<size_t>(out_height) * 2 - 2] +
                        vert.bounds[static_cast<size_t>(out_height) * 2 - 1];
  U8Plane cur = in;
  thread_local std::vector<uint8_t> temp;
  if (need_horizontal) {
    for (int i = 0; i < out_height; ++i) vert.bounds[static_cast<size_t>(i) * 2] -= ybox_first;
    const int rows = ybox_last - ybox_first;
    uint8_t* dst = need_vertical ? nullptr : out;
    if (dst == nullptr) {
      temp.resize(static_cast<size_t>(rows) * out_row);
      dst = temp.data();
    }
    switch (in.channels) {
      case 1: HorizontalPass<1>(in, ybox_first, rows, horiz, out_width, dst); break;
      case 3:
        if (!HorizontalPassRgbFast(in, ybox_first, rows, horiz, out_width, dst)) {
          HorizontalPass<3>(in, ybox_first, rows, horiz, out_width, dst);
        }
        break;
      default: HorizontalPass<0>(in, ybox_first, rows, horiz, out_width, dst); break;
    }
    cur = U8Plane{dst, rows, out_width, in.channels, out_row};
  }
  if (need_vertical) {
    VerticalPass(cur, vert, out_height, out);
  } else if (!need_horizontal) {
    for (int y = 0; y < out_height; ++y) {
      std::memcpy(out + y * out_row, in.data + static_cast<size_t>(y) * in.stride, out_row);
    }
  }
}

// ---- colour -----------------------------------------------------------------

namespace {

inline int Clip8i(int v) { return v <= 0 ? 0 : v < 256 ? v : 255; }

// Image.blend(degenerate, image, factor) with a per-pixel degenerate value.
template <typename Degenerate>
void BlendWith(const uint8_t* in, size_t n, double factor, uint8_t* out, Degenerate degenerate) {
  const float alpha = static_cast<float>(factor);  // ImagingBlend takes a C float
  if (alpha == 0.0f) {
    for (size_t i = 0; i < n; ++i) out[i] = degenerate(i);
  } else if (alpha == 1.0f) {
    if (out != in) std::memcpy(out, in, n);
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = PilBlend(degenerate(i), in[i], alpha);
  }
}

}  // namespace

void PilAdjustBrightness(const uint8_t* in, int h, int w, int channels, double factor, uint8_t* out) {
  // ImageEnhance.Brightness: blend with black.
  const size_t n = static_cast<size_t>(h) * w * channels;
  BlendWith(in, n, factor, out, [](size_t) -> uint8_t { return 0; });
}

void PilAdjustContrast(const uint8_t* in, int h, int w, int channels, double factor, uint8_t* out) {
  // ImageEnhance.Contrast: blend with a gray image of the L image's mean,
  // int(ImageStat.Stat(image.convert("L")).mean[0] + 0.5).
  const size_t pixels = static_cast<size_t>(h) * w;
  uint64_t sum = 0;
  if (channels == 1) {
    for (size_t i = 0; i < pixels; ++i) sum += in[i];
  } else {
    for (size_t i = 0; i < pixels; ++i) {
      sum += PilLuma(in[i * channels], in[i * channels + 1], in[i * channels + 2]);
    }
  }
  const double mean = static_cast<double>(sum) / static_cast<double>(pixels);
  const auto m = static_cast<uint8_t>(static_cast<int>(mean + 0.5));
  BlendWith(in, pixels * channels, factor, out, [m](size_t) { return m; });
}

void PilAdjustSaturation(const uint8_t* in, int h, int w, int channels, double factor, uint8_t* out) {
  // ImageEnhance.Color: blend with image.convert("L").convert(mode); for a
  // gray image that is the image itself.
  const size_t pixels = static_cast<size_t>(h) * w;
  if (channels == 1) {
    BlendWith(in, pixels, factor, out, [in](size_t i) { return in[i]; });
    return;
  }
  // out may alias in: compute each pixel's luma before writing it.
  const float alpha = static_cast<float>(factor);
  for (size_t i = 0; i < pixels; ++i) {
    const uint8_t* p = in + i * channels;
    const uint8_t l = PilLuma(p[0], p[1], p[2]);
    uint8_t* o = out + i * channels;
    for (int c = 0; c < channels; ++c) {
      o[c] = alpha == 0.0f ? l : alpha == 1.0f ? p[c] : PilBlend(l, p[c], alpha);
    }
  }
}

void PilRgbToHsv(const uint8_t rgb[3], uint8_t hsv[3]) {
  // Convert.c rgb2hsv_row ("following colorsys.py"): float variables, double
  // constants, exactly as written there.
  const uint8_t r = rgb[0], g = rgb[1], b = rgb[2];
  const uint8_t maxc = std::max(r, std::max(g, b));
  const uint8_t minc = std::min(r, std::min(g, b));
  uint8_t uh = 0, us = 0;
  if (minc != maxc) {
    const float cr = static_cast<float>(maxc - minc);
    const float s = cr / static_cast<float>(maxc);
    const float rc = static_cast<float>(maxc - r) / cr;
    const float gc = static_cast<float>(maxc - g) / cr;
    const float bc = static_cast<float>(maxc - b) / cr;
    float h;
    if (r == maxc) {
      h = bc - gc;
    } else if (g == maxc) {
      h = static_cast<float>(2.0 + rc - bc);
    } else {
      h = static_cast<float>(4.0 + gc - rc);
    }
    h = static_cast<float>(std::fmod((h / 6.0 + 1.0), 1.0));
    uh = static_cast<uint8_t>(Clip8i(static_cast<int>(h * 255.0)));
    us = static_cast<uint8_t>(Clip8i(static_cast<int>(s * 255.0)));
  }
  hsv[0] = uh;
  hsv[1] = us;
  hsv[2] = maxc;
}

void PilHsvToRgb(const uint8_t hsv[3], uint8_t rgb[3]) {
  // Convert.c hsv2rgb.
  const uint8_t h = hsv[0], s = hsv[1], v = hsv[2];
  if (s == 0) {
    rgb[0] = rgb[1] = rgb[2] = v;
    return;
  }
  const int i = static_cast<int>(std::floor(static_cast<float>(h) * 6.0 / 255.0));
  const float f = static_cast<float>(static_cast<float>(h) * 6.0 / 255.0 - static_cast<float>(i));
  const float fs = static_cast<float>(static_cast<float>(s) / 255.0);
  const int p = static_cast<int>(std::round(static_cast<float>(v) * (1.0 - fs)));
  const int q = static_cast<int>(std::round(static_cast<float>(v) * (1.0 - fs * f)));
  const int t = static_cast<int>(std::round(static_cast<float>(v) * (1.0 - fs * (1.0 - f))));
  const auto up = static_cast<uint8_t>(Clip8i(p));
  const auto uq = static_cast<uint8_t>(Clip8i(q));
  const auto ut = static_cast<uint8_t>(Clip8i(t));
  switch (i % 6) {
    case 0: rgb[0] = v; rgb[1] = ut; rgb[2] = up; break;
    case 1: rgb[0] = uq; rgb[1] = v; rgb[2] = up; break;
    case 2: rgb[0] = up; rgb[1] = v; rgb[2] = ut; break;
    case 3: rgb[0] = up; rgb[1] = uq; rgb[2] = v; break;
    case 4: rgb[0] = ut; rgb[1] = up; rgb[2] = v; break;
    default: rgb[0] = v; rgb[1] = up; rgb[2] = uq; break;
  }
}

void PilAdjustHue(const uint8_t* in, int h, int w, int channels, double hue, uint8_t* out) {
  const size_t pixels = static_cast<size_t>(h) * w;
  if (channels != 3) {  // torchvision returns L images unchanged
    if (out != in) std::memcpy(out, in, pixels * channels);
    return;
  }
  // np_h += np.uint8(hue_factor * 255): the float truncated toward zero, then
  // wrapped to 8 bits (numpy's cast), added modulo 256.
  const auto shift = static_cast<uint8_t>(static_cast<int64_t>(hue * 255.0));
  for (size_t i = 0; i < pixels; ++i) {
    uint8_t hsv[3];
    PilRgbToHsv(in + 3 * i, hsv);
    hsv[0] = static_cast<uint8_t>(hsv[0] + shift);
    PilHsvToRgb(hsv, out + 3 * i);
  }
}

}  // namespace internal
}  // namespace datafeed
