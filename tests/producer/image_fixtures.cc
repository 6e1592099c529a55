#include "image_fixtures.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <turbojpeg.h>

namespace datafeed {
namespace test {

std::vector<uint8_t> PhotoLike(int h, int w, int c, uint32_t seed) {
  std::vector<uint8_t> img(static_cast<size_t>(h) * w * c);
  uint64_t x = 0x9E3779B97F4A7C15ULL * (seed + 1);
  const int cy = (h * (3 + seed % 5)) / 8, cx = (w * (2 + seed % 7)) / 9;
  const int r2 = (h * h + w * w) / 16 + 1;
  for (int y = 0; y < h; ++y) {
    for (int xx = 0; xx < w; ++xx) {
      const bool disc = (y - cy) * (y - cy) + (xx - cx) * (xx - cx) < r2;
      for (int ch = 0; ch < c; ++ch) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const int noise = static_cast<int>((x >> 59) & 15) - 8;
        int v = (ch == 0 ? y * 255 / (h + 1) : ch == 1 ? 255 - xx * 255 / (w + 1) : (y + xx) * 127 / (h + w + 1)) +
                (disc ? 60 + 20 * ch : 0) + noise + static_cast<int>(seed % 13);
        img[(static_cast<size_t>(y) * w + xx) * c + ch] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
      }
    }
  }
  return img;
}

std::vector<uint8_t> EncodeJpeg(const std::vector<uint8_t>& hwc, int h, int w, int c, int quality,
                                Subsampling sub) {
  tjhandle t = tjInitCompress();
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  const int samp = c == 1 ? TJSAMP_GRAY
                          : sub == Subsampling::k444 ? TJSAMP_444
                                                     : sub == Subsampling::k422 ? TJSAMP_422 : TJSAMP_420;
  const int rc = tjCompress2(t, hwc.data(), w, 0, h, c == 1 ? TJPF_GRAY : TJPF_RGB, &jpeg, &size, samp,
                             quality, 0);
  EXPECT_EQ(rc, 0) << tjGetErrorStr2(t);
  std::vector<uint8_t> out(jpeg, jpeg + size);
  tjFree(jpeg);
  tjDestroy(t);
  return out;
}

void WriteTar(const std::string& path, const std::vector<TarMember>& members, bool gzip) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (gzip) archive_write_add_filter_gzip(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK) << archive_error_string(a);
  for (const TarMember& m : members) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, 1700000000, 0);
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
    ASSERT_EQ(archive_write_data(a, m.data.data(), m.data.size()),
              static_cast<la_ssize_t>(m.data.size()));
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

std::vector<uint8_t> Bytes(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

}  // namespace test
}  // namespace datafeed
