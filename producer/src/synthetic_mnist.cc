// WriteSyntheticMnist: deterministic digit-like IDX data for tests and
// benchmarks, no download needed.
//
// Everything below is integer arithmetic on std::mt19937_64 output (whose
// sequence the C++ standard fixes), so the bytes are the same on every
// platform. Coordinates are fixed point, 1/256 pixel.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "datafeed/producer/dataset.h"

namespace datafeed {
namespace {

constexpr int kSide = 28;
constexpr int64_t kOne = 256;  // fixed-point 1.0 (one pixel)

// Seven-segment digits: bit s set = segment s drawn. Segments a..g:
// a top, b upper right, c lower right, d bottom, e lower left, f upper left,
// g middle.
constexpr std::array<uint8_t, 10> kDigitSegments = {
    0b0111111,  // 0: a b c d e f
    0b0000110,  // 1: b c
    0b1011011,  // 2: a b d e g
    0b1001111,  // 3: a b c d g
    0b1100110,  // 4: b c f g
    0b1101101,  // 5: a c d f g
    0b1111101,  // 6: a c d e f g
    0b0000111,  // 7: a b c
    0b1111111,  // 8: all
    0b1101111,  // 9: a b c d f g
};

// Segment end points in digit coordinates: u in {0, 1} (left, right),
// v in {0, 1, 2} (top, middle, bottom).
struct Seg {
  int u0, v0, u1, v1;
};
constexpr std::array<Seg, 7> kSegs = {{
    {0, 0, 1, 0},  // a
    {1, 0, 1, 1},  // b
    {1, 1, 1, 2},  // c
    {0, 2, 1, 2},  // d
    {0, 1, 0, 2},  // e
    {0, 0, 0, 1},  // f
    {0, 1, 1, 1},  // g
}};

// Uniform integer in [lo, hi] (unbiased enough for drawing: 64-bit source).
int64_t Uniform(std::mt19937_64& gen, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(gen() % static_cast<uint64_t>(hi - lo + 1));
}

// Squared distance from p to segment [a, b], all fixed point.
int64_t DistSq(int64_t px, int64_t py, int64_t ax, int64_t ay, int64_t bx, int64_t by) {
  const int64_t abx = bx - ax, aby = by - ay;
  const int64_t apx = px - ax, apy = py - ay;
  const int64_t den = abx * abx + aby * aby;
  const int64_t num = apx * abx + apy * aby;
  int64_t cx = ax, cy = ay;
  if (den > 0 && num > 0) {
    if (num >= den) {
      cx = bx;
      cy = by;
    } else {
      cx = ax + abx * num / den;
      cy = ay + aby * num / den;
    }
  }
  const int64_t dx = px - cx, dy = py - cy;
  return dx * dx + dy * dy;
}

// Draws one sample into img (28 x 28) and returns its label.
uint8_t DrawSample(std::mt19937_64& gen, uint8_t* img) {
  const int digit = static_cast<int>(gen() % 10);
  const int64_t half_w = Uniform(gen, 4 * kOne, 6 * kOne + kOne / 2);   // half glyph width
  const int64_t half_h = Uniform(gen, 7 * kOne, 9 * kOne + kOne / 2);   // half glyph height
  const int64_t cx = 14 * kOne + Uniform(gen, -2 * kOne, 2 * kOne);
  const int64_t cy = 14 * kOne + Uniform(gen, -2 * kOne, 2 * kOne);
  const int64_t slant = Uniform(gen, -3 * kOne, 3 * kOne);  // top minus bottom x shift
  const int64_t radius = Uniform(gen, kOne * 9 / 10, kOne * 18 / 10);   // solid stroke half-width
  const int64_t soft = radius + kOne;                                   // fades to 0 here

  // The six corner points of the glyph, each jittered independently.
  std::array<int64_t, 6> px{}, py{};
  for (int v = 0; v < 3; ++v) {
    for (int u = 0; u < 2; ++u) {
      const int64_t x = cx + (2 * u - 1) * half_w + slant * (1 - v) / 2;
      const int64_t y = cy + (v - 1) * half_h;
      px[v * 2 + u] = x + Uniform(gen, -kOne * 3 / 4, kOne * 3 / 4);
      py[v * 2 + u] = y + Uniform(gen, -kOne * 3 / 4, kOne * 3 / 4);
    }
  }

  const int64_t r2 = radius * radius;
  const int64_t s2 = soft * soft;
  const uint8_t segments = kDigitSegments[static_cast<size_t>(digit)];
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      const int64_t qx = x * kOne + kOne / 2, qy = y * kOne + kOne / 2;
      int64_t best = s2;
      for (int s = 0; s < 7; ++s) {
        if (!(segments & (1 << s))) continue;
        const Seg& g = kSegs[static_cast<size_t>(s)];
        const int a = g.v0 * 2 + g.u0, b = g.v1 * 2 + g.u1;
        best = std::min(best, DistSq(qx, qy, px[a], py[a], px[b], py[b]));
      }
      int64_t value = 0;
      if (best <= r2) {
        value = 255;
      } else if (best < s2) {
        value = 255 * (s2 - best) / (s2 - r2);  // soft edge, linear in distance squared
      }
      img[y * kSide + x] = static_cast<uint8_t>(value);
    }
  }
  // Sparse speckle so images are not purely the glyph.
  const int speckles = static_cast<int>(gen() % 8);
  for (int i = 0; i < speckles; ++i) {
    const size_t at = gen() % (kSide * kSide);
    const int add = static_cast<int>(gen() % 96);
    img[at] = static_cast<uint8_t>(std::min(255, img[at] + add));
  }
  return static_cast<uint8_t>(digit);
}

void PutBigEndian32(std::vector<uint8_t>* out, uint32_t v) {
  out->push_back(static_cast<uint8_t>(v >> 24));
  out->push_back(static_cast<uint8_t>(v >> 16));
  out->push_back(static_cast<uint8_t>(v >> 8));
  out->push_back(static_cast<uint8_t>(v));
}

// Writes bytes to path via path.tmp + rename, so readers never see a partial file.
Status WriteFileAtomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, tmp + ": cannot create");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, tmp + ": write failed");
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, tmp + ": close failed");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "cannot rename " + tmp + " to " + path);
  }
  return Status::OK();
}

}  // namespace

Status WriteSyntheticMnist(const std::string& dir, const std::string& prefix, size_t count,
                           uint64_t seed) {
  if (prefix.empty()) return Status::InvalidArgument("synthetic MNIST: prefix is empty");
  if (count > 0xFFFFFFFFu) {
    return Status::InvalidArgument("synthetic MNIST: count " + std::to_string(count) +
                                   " does not fit the 32-bit IDX header");
  }
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  std::vector<uint8_t> images;
  std::vector<uint8_t> labels;
  images.reserve(16 + count * kSide * kSide);
  labels.reserve(8 + count);
  PutBigEndian32(&images, 0x00000803);
  PutBigEndian32(&images, static_cast<uint32_t>(count));
  PutBigEndian32(&images, kSide);
  PutBigEndian32(&images, kSide);
  PutBigEndian32(&labels, 0x00000801);
  PutBigEndian32(&labels, static_cast<uint32_t>(count));

  std::mt19937_64 gen(seed);
  images.resize(16 + count * kSide * kSide);
  for (size_t i = 0; i < count; ++i) {
    labels.push_back(DrawSample(gen, images.data() + 16 + i * kSide * kSide));
  }
  DATAFEED_RETURN_NOT_OK(WriteFileAtomically(base + MnistImagesFileName(prefix), images));
  return WriteFileAtomically(base + MnistLabelsFileName(prefix), labels);
}

}  // namespace datafeed
