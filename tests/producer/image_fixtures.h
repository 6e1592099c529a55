// Generated image data for the producer tests: photo-like pixels, JPEGs
// encoded with TurboJPEG, folders of them and WebDataset tar shards. All
// deterministic (fixed seeds, integer arithmetic).
#ifndef DATAFEED_TESTS_PRODUCER_IMAGE_FIXTURES_H_
#define DATAFEED_TESTS_PRODUCER_IMAGE_FIXTURES_H_

#include <cstdint>
#include <string>
#include <vector>

namespace datafeed {
namespace test {

// h x w x c uint8 HWC: smooth gradients, a disc with hard edges and mild
// noise, from `seed` (what JPEG and resampling meet in photos).
std::vector<uint8_t> PhotoLike(int h, int w, int c, uint32_t seed);

enum class Subsampling { k444, k422, k420 };

// The JPEG of an h x w x c (1 or 3) image at `quality`.
std::vector<uint8_t> EncodeJpeg(const std::vector<uint8_t>& hwc, int h, int w, int c,
                                int quality = 90, Subsampling sub = Subsampling::k420);

// One member of a tar file.
struct TarMember {
  std::string name;
  std::vector<uint8_t> data;
};
// Writes a tar (pax format) with `members` in order, gzip-compressed when asked.
void WriteTar(const std::string& path, const std::vector<TarMember>& members, bool gzip = false);

std::vector<uint8_t> Bytes(const std::string& text);

}  // namespace test
}  // namespace datafeed

#endif  // DATAFEED_TESTS_PRODUCER_IMAGE_FIXTURES_H_
