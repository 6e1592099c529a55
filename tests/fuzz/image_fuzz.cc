// The producer's image decoders on arbitrary bytes: DecodeSample (JPEG
// through TurboJPEG, PNG and the rest through OpenCV), the JPEG header
// reader and the scaled and region decodes of the reduced-decode path.
// The first byte picks the channels and the scale. Pictures are capped by
// what the libraries accept; a refusal is DataLoss with a reason.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "datafeed/producer/dataset.h"
#include "fuzz_util.h"
#include "image_decode_internal.h"

// The same cap for what OpenCV decodes (PNG, BMP, TIFF, ...), read by
// OpenCV on first use: the fuzzer is after parsing bugs, not after a
// header that asks for gigabytes (datafeed has no pixel cap of its own).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "1048576", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const int kChannels[4] = {1, 3, 4, 3};
  const int channels = kChannels[data[0] & 3];
  const int num = 1 + ((data[0] >> 2) & 7);
  ++data;
  --size;
  if (size == 0) return 0;  // DecodeSample's empty case needs no fuzzing (and memcpy no null pointer)
  // Skip what would decode to a huge picture: the fuzzer is after parsing
  // bugs, not the memory of a 65535 x 65535 image.
  // The reduced-decode path (scaled, region) runs only on a JPEG whose
  // header ReadJpegSize accepted, as in the producer. (TurboJPEG may fill
  // in a size and still refuse the header.)
  int h = 0, w = 0;
  bool jpeg = false;
  if (datafeed::internal::LooksLikeJpeg(data, size)) {
    const datafeed::Status st = datafeed::internal::ReadJpegSize(data, size, &h, &w);
    datafeed::fuzz::CheckRefusal(st, "ReadJpegSize");
    if (int64_t{h} * w > (1 << 20)) return 0;
    jpeg = st.ok();
  }
  datafeed::Sample s;
  std::memcpy(s.AllocateEncoded(size), data, size);
  const datafeed::Status st = datafeed::DecodeSample(&s, channels);
  datafeed::fuzz::CheckRefusal(st, "DecodeSample");
  if (st.ok()) {
    if (!s.has_pixels() || s.channels() != channels) {
      std::fprintf(stderr, "decoded %dx%dx%d, pixels %d, asked for %d channels\n", s.height(), s.width(), s.channels(),
                   s.has_pixels(), channels);
      std::abort();
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < s.pixel_bytes(); i += 61) sink = sink ^ s.pixels()[i];
    (void)sink;
  }
  if (jpeg) {
    datafeed::Sample t;
    datafeed::fuzz::CheckRefusal(datafeed::internal::DecodeJpegScaled(data, size, channels, num, &t),
                                 "DecodeJpegScaled");
    datafeed::internal::JpegRegion r;
    r.top = h / 4;
    r.left = w / 4;
    r.bottom = h - h / 4;
    r.right = w - w / 4;
    r.num = num >= 8 ? 8 : num >= 4 ? 4 : num >= 2 ? 2 : 1;
    datafeed::internal::JpegRegion decoded;
    datafeed::fuzz::CheckRefusal(datafeed::internal::DecodeJpegRegion(data, size, channels, r, 2, &t, &decoded),
                                 "DecodeJpegRegion");
  }
  return 0;
}
