// DecodeJpegRegion: a part of a JPEG through libjpeg-turbo's libjpeg API.
//
// TurboJPEG 2.1 (what Debian 12 ships) cannot crop while decoding; libjpeg's
// jpeg_crop_scanline and jpeg_skip_scanlines (libjpeg-turbo >= 1.5) can.
// Error handling is libjpeg's: error_exit longjmps back here, so between
// setjmp and the end of the decode nothing with a destructor is created.
#include <setjmp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>
#include <jerror.h>

#include "image_decode_internal.h"

namespace datafeed {
namespace internal {
namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool premature_end;
};

void ErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

void EmitMessage(j_common_ptr cinfo, int level) {
  // Warnings (level -1): only running out of data matters, as for PIL.
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    reinterpret_cast<ErrorManager*>(cinfo->err)->premature_end = true;
  }
}

}  // namespace

Status DecodeJpegRegion(const uint8_t* data, size_t n, int channels, const JpegRegion& region,
                        int margin, Sample* out, JpegRegion* decoded) {
  if (region.num != 1 && region.num != 2 && region.num != 4 && region.num != 8) {
    return Status::InvalidArgument("DecodeJpegRegion: scale num must be 1, 2, 4 or 8");
  }
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = ErrorExit;
  err.pub.emit_message = EmitMessage;
  err.premature_end = false;
  err.message[0] = '\0';
  // Row pointers and the gray-to-L scratch live outside the setjmp scope.
  thread_local std::vector<uint8_t> scratch;
  bool unsupported = false;
  int out_h = 0, out_w = 0, x0 = 0, y0 = 0;
  uint8_t* dst = nullptr;
  bool via_rgb = false;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return Status::DataLoss(std::string("cannot decode the JPEG (") + err.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(n));
  jpeg_read_header(&cinfo, TRUE);
  const bool gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  if (cinfo.progressive_mode || cinfo.arith_code ||
      (!gray && cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_RGB)) {
    unsupported = true;
  } else {
    cinfo.scale_num = static_cast<unsigned>(region.num);
    cinfo.scale_denom = 8;
    // PIL's settings (and TurboJPEG's defaults): accurate DCT, fancy upsampling.
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    via_rgb = channels == 1 && !gray;
    cinfo.out_color_space = channels == 1 && gray ? JCS_GRAYSCALE : JCS_RGB;
    if (channels == 4) cinfo.out_color_space = JCS_EXT_RGBA;
    jpeg_start_decompress(&cinfo);
    const int sh = static_cast<int>(cinfo.output_height), sw = static_cast<int>(cinfo.output_width);
    // The region in scaled pixels, widened by the margin, then to iMCU columns.
    const double s = region.num / 8.0;
    y0 = std::max(0, static_cast<int>(region.top * s) - margin);
    const int y1 = std::min(sh, static_cast<int>(region.bottom * s + 0.999999) + margin);
    JDIMENSION xoff = static_cast<JDIMENSION>(std::max(0, static_cast<int>(region.left * s) - margin));
    JDIMENSION cw = static_cast<JDIMENSION>(
        std::min(sw, static_cast<int>(region.right * s + 0.999999) + margin)) - xoff;
    jpeg_crop_scanline(&cinfo, &xoff, &cw);
    x0 = static_cast<int>(xoff);
    out_w = static_cast<int>(cw);
    out_h = std::max(0, y1 - y0);
    const int comps = static_cast<int>(cinfo.output_components);
    if (via_rgb) {
      scratch.resize(static_cast<size_t>(out_h) * out_w * 3);
      dst = scratch.data();
    } else {
      dst = out->AllocatePixels(out_h, out_w, comps);
    }
    if (y0 > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(y0));
    for (int y = 0; y < out_h;) {
      JSAMPROW row = dst + static_cast<size_t>(y) * out_w * comps;
      const JDIMENSION got = jpeg_read_scanlines(&cinfo, &row, 1);
      if (got == 0) break;
      y += static_cast<int>(got);
    }
    // The rows below are not needed.
    jpeg_abort_decompress(&cinfo);
  }
  jpeg_destroy_decompress(&cinfo);
  if (unsupported) {
    return Status::Unimplemented("progressive, arithmetic-coded or CMYK JPEG: decode it whole");
  }
  if (err.premature_end) {
    return Status::DataLoss("cannot decode the JPEG (Premature end of JPEG file)");
  }
  if (via_rgb) {
    uint8_t* l = out->AllocatePixels(out_h, out_w, 1);
    const size_t pixels = static_cast<size_t>(out_h) * out_w;
    for (size_t i = 0; i < pixels; ++i) l[i] = PilLuma(dst[3 * i], dst[3 * i + 1], dst[3 * i + 2]);
  }
  const double inv = 8.0 / region.num;
  decoded->num = region.num;
  decoded->top = static_cast<int>(y0 * inv);
  decoded->left = static_cast<int>(x0 * inv);
  decoded->bottom = static_cast<int>((y0 + out_h) * inv);
  decoded->right = static_cast<int>((x0 + out_w) * inv);
  return Status::OK();
}

}  // namespace internal
}  // namespace datafeed
