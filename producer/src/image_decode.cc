// DecodeSample: encoded image bytes to uint8 HWC pixels, as PIL would.
//
// JPEG: libjpeg-turbo's TurboJPEG API, the library PIL decodes JPEG with,
// with PIL's settings (TurboJPEG's defaults: accurate integer IDCT, fancy
// upsampling), so the pixels are the same bytes. Everything else: OpenCV's
// imdecode, then PIL's channel and depth conversions done here.
#include <turbojpeg.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "datafeed/producer/dataset.h"
#include "image_decode_internal.h"

namespace datafeed {
namespace internal {
namespace {

// One TurboJPEG decompressor per thread, created on first use and destroyed
// with the thread (a handle is not thread-safe; creating one per image would
// cost an allocation of libjpeg's state per sample).
struct ThreadHandle {
  tjhandle h = tjInitDecompress();
  ~ThreadHandle() {
    if (h != nullptr) tjDestroy(h);
  }
};
ThreadHandle& ThreadDecompressorHandle() {
  thread_local ThreadHandle handle;
  return handle;
}
tjhandle ThreadDecompressor() { return ThreadDecompressorHandle().h; }

// After a failed call libjpeg-turbo 2.1's handle can stay in the failed
// state (every later image fails with the same error): start afresh.
void ResetThreadDecompressor() {
  ThreadHandle& t = ThreadDecompressorHandle();
  if (t.h != nullptr) tjDestroy(t.h);
  t.h = tjInitDecompress();
}

// The error of the last call on the thread's handle, which is then reset.
std::string TakeError(tjhandle h) {
  std::string msg = tjGetErrorStr2(h);
  ResetThreadDecompressor();
  return msg;
}

Status NoDecoder() {
  return Status::Internal("TurboJPEG: cannot create a decompressor: " +
                          std::string(tjGetErrorStr2(nullptr)));
}

// PIL's CMYK -> RGB (Convert.c cmyk2rgb) on Adobe-inverted CMYK as libjpeg
// returns it: PIL reads CMYK JPEGs with rawmode "CMYK;I" (255 - stored).
void PilCmykToRgb(const uint8_t* cmyk, size_t pixels, uint8_t* rgb) {
  auto muldiv255 = [](int a, int b) {
    const int tmp = a * b + 128;
    return ((tmp >> 8) + tmp) >> 8;
  };
  auto clip8 = [](int v) { return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v); };
  for (size_t i = 0; i < pixels; ++i) {
    const uint8_t* p = cmyk + 4 * i;
    const int c = 255 - p[0], m = 255 - p[1], y = 255 - p[2], k = 255 - p[3];
    const int nk = 255 - k;
    rgb[3 * i + 0] = clip8(nk - muldiv255(c, nk));
    rgb[3 * i + 1] = clip8(nk - muldiv255(m, nk));
    rgb[3 * i + 2] = clip8(nk - muldiv255(y, nk));
  }
}

// RGB (3 per pixel) to `channels` in place semantics: out may not alias in.
void RgbTo(const uint8_t* rgb, size_t pixels, int channels, uint8_t* out) {
  switch (channels) {
    case 1:
      for (size_t i = 0; i < pixels; ++i) out[i] = PilLuma(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
      break;
    case 3:
      std::memcpy(out, rgb, pixels * 3);
      break;
    default:
      for (size_t i = 0; i < pixels; ++i) {
        out[4 * i] = rgb[3 * i];
        out[4 * i + 1] = rgb[3 * i + 1];
        out[4 * i + 2] = rgb[3 * i + 2];
        out[4 * i + 3] = 255;
      }
  }
}

std::atomic<uint64_t> max_image_pixels{kDefaultMaxImagePixels};

Status CheckPixels(uint64_t width, uint64_t height) {
  const uint64_t limit = max_image_pixels.load(std::memory_order_relaxed);
  if (width * height <= limit) return Status::OK();
  return Status::DataLoss("says it is " + std::to_string(width) + " x " + std::to_string(height) + " = " +
                          std::to_string(width * height) + " pixels, more than the limit of " +
                          std::to_string(limit) +
                          " (a decompression bomb, or a damaged header); raise --max-image-pixels "
                          "(SetMaxImagePixels) if the image is real");
}

// PNG's size is in its first chunk (IHDR), right after the signature.
Status CheckPngPixels(const uint8_t* data, size_t n) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (n < 24 || std::memcmp(data, kSignature, 8) != 0 || std::memcmp(data + 12, "IHDR", 4) != 0) {
    return Status::OK();  // not a PNG (or no IHDR: OpenCV refuses it)
  }
  auto be32 = [](const uint8_t* p) {
    return uint64_t{p[0]} << 24 | uint64_t{p[1]} << 16 | uint64_t{p[2]} << 8 | uint64_t{p[3]};
  };
  return CheckPixels(be32(data + 16), be32(data + 20));
}

// Scratch per thread for the conversions that go through an intermediate.
std::vector<uint8_t>& ThreadScratch() {
  thread_local std::vector<uint8_t> scratch;
  return scratch;
}

// The JPEG header on the thread's handle. TurboJPEG 2.1 accepts a
// tables-only datastream (no frame) and says 0 x 0: that is no image
// either (decoding it would give an empty sample, or an error, depending on
// what the thread decoded before).
Status ReadJpegHeader(tjhandle h, const uint8_t* data, size_t n, int* width, int* height, int* colorspace) {
  int subsamp = 0;
  if (tjDecompressHeader3(h, data, static_cast<unsigned long>(n), width, height, &subsamp, colorspace) != 0) {
    return Status::DataLoss("not a readable JPEG (" + TakeError(h) + ")");
  }
  if (*width < 1 || *height < 1) {
    return Status::DataLoss("a JPEG without an image (" + std::to_string(*width) + " x " + std::to_string(*height) +
                            " pixels: only tables, no frame)");
  }
  return CheckPixels(static_cast<uint64_t>(*width), static_cast<uint64_t>(*height));
}

Status DecodeJpeg(const uint8_t* data, size_t n, int channels, int num, Sample* out) {
  tjhandle h = ThreadDecompressor();
  if (h == nullptr) return NoDecoder();
  int width = 0, height = 0, colorspace = 0;
  DATAFEED_RETURN_NOT_OK(ReadJpegHeader(h, data, n, &width, &height, &colorspace));
  const tjscalingfactor sf{num, 8};
  const int w = TJSCALED(width, sf), hgt = TJSCALED(height, sf);
  const size_t pixels = static_cast<size_t>(w) * static_cast<size_t>(hgt);
  const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  const bool gray = colorspace == TJCS_GRAY;
  int format = 0;
  uint8_t* dst = nullptr;
  std::vector<uint8_t>& scratch = ThreadScratch();
  if (cmyk) {
    format = TJPF_CMYK;
    scratch.resize(pixels * 4);
    dst = scratch.data();
  } else if (channels == 1 && !gray) {
    // PIL converts the decoded RGB to L with its own weights; libjpeg's
    // gray output (the Y plane) would differ by rounding.
    format = TJPF_RGB;
    scratch.resize(pixels * 3);
    dst = scratch.data();
  } else {
    format = channels == 1 ? TJPF_GRAY : channels == 3 ? TJPF_RGB : TJPF_RGBA;
    dst = out->AllocatePixels(hgt, w, channels);
  }
  // Flags 0: accurate DCT, fancy upsampling (PIL's settings).
  if (tjDecompress2(h, data, static_cast<unsigned long>(n), dst, w, 0, hgt, format, 0) != 0) {
    // libjpeg warnings are not fatal to PIL either (e.g. extraneous bytes
    // before a marker), except running out of data: PIL then refuses the
    // image ("image file is truncated"), and a gray-filled bottom is no
    // sample to train on.
    const bool warning = tjGetErrorCode(h) == TJERR_WARNING;
    const std::string msg = TakeError(h);
    if (!warning || msg.find("Premature end") != std::string::npos) {
      return Status::DataLoss("cannot decode the JPEG (" + msg + ")");
    }
  }
  if (cmyk) {
    if (channels == 3) {
      PilCmykToRgb(dst, pixels, out->AllocatePixels(hgt, w, 3));
    } else {
      std::vector<uint8_t> rgb(pixels * 3);
      PilCmykToRgb(dst, pixels, rgb.data());
      RgbTo(rgb.data(), pixels, channels, out->AllocatePixels(hgt, w, channels));
    }
  } else if (dst == scratch.data()) {
    RgbTo(dst, pixels, 1, out->AllocatePixels(hgt, w, 1));
  }
  return Status::OK();
}

// OpenCV's decode (IMREAD_UNCHANGED: native channels and depth, no EXIF
// rotation) converted to `channels` the way PIL's convert() does.
Status DecodeWithOpenCv(const uint8_t* data, size_t n, int channels, Sample* out) {
  DATAFEED_RETURN_NOT_OK(CheckPngPixels(data, n));
  cv::Mat img;
  try {
    const cv::Mat buf(1, static_cast<int>(n), CV_8U, const_cast<uint8_t*>(data));
    img = cv::imdecode(buf, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    return Status::DataLoss(std::string("cannot decode the image (OpenCV: ") + e.what() + ")");
  }
  if (img.empty()) {
    return Status::DataLoss("not an image datafeed can decode (corrupt, truncated, or not JPEG, PNG, "
                            "BMP, PPM/PGM, TIFF or WebP)");
  }
  const int depth = img.depth();
  if (depth != CV_8U && depth != CV_16U) {
    return Status::DataLoss("has " + std::to_string(img.elemSize1() * 8) +
                            "-bit samples that are not unsigned integers; datafeed decodes 8- and "
                            "16-bit images");
  }
  const int src_channels = img.channels();
  if (src_channels < 1 || src_channels > 4) {
    return Status::DataLoss("has " + std::to_string(src_channels) + " channels; expected 1 to 4");
  }
  const int h = img.rows, w = img.cols;
  const size_t pixels = static_cast<size_t>(h) * static_cast<size_t>(w);
  // To 8-bit RGB(A) or gray, in PIL's order and rounding: 16-bit colour keeps
  // the high byte (PIL's "RGB;16B" unpacker), 16-bit gray clips at 255
  // (PIL's I;16 -> L/RGB).
  const bool color = src_channels >= 3;
  std::vector<uint8_t>& rgb = ThreadScratch();
  rgb.resize(pixels * (color ? 3 : 1));
  for (int y = 0; y < h; ++y) {
    const uint8_t* row8 = img.ptr<uint8_t>(y);
    const uint16_t* row16 = reinterpret_cast<const uint16_t*>(row8);
    for (int x = 0; x < w; ++x) {
      const size_t i = static_cast<size_t>(y) * w + x;
      auto at = [&](int c) -> uint8_t {
        const size_t k = static_cast<size_t>(x) * src_channels + c;
        if (depth == CV_8U) return row8[k];
        return color ? static_cast<uint8_t>(row16[k] >> 8)
                     : static_cast<uint8_t>(std::min<uint16_t>(row16[k], 255));
      };
      if (color) {  // OpenCV gives BGR(A)
        rgb[3 * i] = at(2);
        rgb[3 * i + 1] = at(1);
        rgb[3 * i + 2] = at(0);
      } else {  // gray, or gray + alpha
        rgb[i] = at(0);
      }
    }
  }
  uint8_t* dst = out->AllocatePixels(h, w, channels);
  if (color) {
    RgbTo(rgb.data(), pixels, channels, dst);
    if (channels == 4 && src_channels == 4) {
      // Keep the image's own alpha (PIL's RGBA), not 255.
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
          const size_t i = static_cast<size_t>(y) * w + x;
          dst[4 * i + 3] = depth == CV_8U
                               ? img.ptr<uint8_t>(y)[4 * x + 3]
                               : static_cast<uint8_t>(img.ptr<uint16_t>(y)[4 * x + 3] >> 8);
        }
      }
    }
  } else {
    for (size_t i = 0; i < pixels; ++i) {
      for (int c = 0; c < channels; ++c) dst[i * channels + c] = rgb[i];
      if (channels == 4) dst[i * 4 + 3] = 255;
    }
  }
  return Status::OK();
}

}  // namespace

Status ReadJpegSize(const uint8_t* data, size_t n, int* height, int* width) {
  tjhandle h = ThreadDecompressor();
  if (h == nullptr) return NoDecoder();
  int colorspace = 0;
  return ReadJpegHeader(h, data, n, width, height, &colorspace);
}

Status DecodeJpegScaled(const uint8_t* data, size_t n, int channels, int num, Sample* out) {
  return DecodeJpeg(data, n, channels, num, out);
}

}  // namespace internal

void SetMaxImagePixels(uint64_t pixels) { internal::max_image_pixels.store(pixels, std::memory_order_relaxed); }
uint64_t MaxImagePixels() { return internal::max_image_pixels.load(std::memory_order_relaxed); }

Status DecodeSample(Sample* sample, int channels) {
  if (channels != 1 && channels != 3 && channels != 4) {
    return Status::InvalidArgument("DecodeSample: channels is " + std::to_string(channels) +
                                   "; use 1 (gray), 3 (RGB) or 4 (RGBA)");
  }
  if (sample->has_pixels()) {
    if (sample->channels() == channels) return Status::OK();
    return Status::InvalidArgument("DecodeSample: the sample is already decoded with " +
                                   std::to_string(sample->channels()) + " channels, not " +
                                   std::to_string(channels));
  }
  const uint8_t* data = sample->encoded();
  const size_t n = sample->encoded_size();
  if (n == 0) return Status::DataLoss("is empty (0 bytes), not an image");
  if (n > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return Status::DataLoss("is " + std::to_string(n) + " bytes, more than datafeed decodes (2 GiB)");
  }
  if (internal::LooksLikeJpeg(data, n)) return internal::DecodeJpeg(data, n, channels, 8, sample);
  return internal::DecodeWithOpenCv(data, n, channels, sample);
}

}  // namespace datafeed
