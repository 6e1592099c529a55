#include "bench_util.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace datafeed::bench {

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t ProcessCpuNs() {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(idx, v.size() - 1)];
}
double Median(std::vector<double> v) { return Percentile(std::move(v), 50); }

uint64_t Checksum(const uint8_t* p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    a += w[0];
    b += w[1];
    c += w[2];
    d += w[3];
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    a += w;
  }
  return a + b + c + d;
}

double MemcpyGbps(size_t bytes, int repeats) {
  auto* src = static_cast<uint8_t*>(std::aligned_alloc(64, bytes));
  auto* dst = static_cast<uint8_t*>(std::aligned_alloc(64, bytes));
  for (size_t i = 0; i < bytes; ++i) src[i] = static_cast<uint8_t>(i * 7);
  std::memset(dst, 1, bytes);
  std::vector<double> gbps;
  for (int r = 0; r < repeats; ++r) {
    int64_t t0 = NowNs();
    std::memcpy(dst, src, bytes);
    int64_t t1 = NowNs();
    gbps.push_back(static_cast<double>(bytes) / static_cast<double>(t1 - t0));
    src[r % bytes] ^= dst[(r * 4099) % bytes];  // keep the copies observable
  }
  std::free(src);
  std::free(dst);
  return Median(gbps);
}

namespace {
constexpr uint64_t kStep = 0x9E3779B97F4A7C15ull;
}  // namespace

void Generate(uint8_t* p, size_t n, uint64_t base) {
  auto* w = reinterpret_cast<uint64_t*>(p);
  const size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) w[i] = base + i * kStep;
}

uint64_t GeneratedSum(size_t n, uint64_t base) {
  const uint64_t words = n / 8;
  // sum(base + i*k) = words*base + k * words*(words-1)/2, mod 2^64
  const uint64_t tri = (words % 2 == 0) ? (words / 2) * (words - 1) : words * ((words - 1) / 2);
  return words * base + kStep * tri;
}

std::string Num(double v, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

}  // namespace datafeed::bench
