#include "bench_util.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace datafeed::bench {

Args::Args(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) continue;
    std::string key = a.substr(2), value = "1";
    if (auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      value = argv[++i];
    }
    values_[key] = value;
  }
}

bool Args::Flag(const std::string& name) const {
  used_[name] = true;
  return values_.count(name) > 0;
}
int64_t Args::Int(const std::string& name, int64_t fallback) const {
  used_[name] = true;
  auto it = values_.find(name);
  return it == values_.end() ? fallback : std::strtoll(it->second.c_str(), nullptr, 10);
}
double Args::Double(const std::string& name, double fallback) const {
  used_[name] = true;
  auto it = values_.find(name);
  return it == values_.end() ? fallback : std::strtod(it->second.c_str(), nullptr);
}
std::string Args::Str(const std::string& name, const std::string& fallback) const {
  used_[name] = true;
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}
std::vector<std::string> Args::Unused() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : values_) {
    if (!used_.count(k)) out.push_back(k);
  }
  return out;
}

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
std::string Quote(const std::string& s) { return "\"" + s + "\""; }

std::string JsonLine(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string out = "{";
  for (size_t i = 0; i < kv.size(); ++i) {
    if (i) out += ", ";
    out += "\"" + kv[i].first + "\": " + kv[i].second;
  }
  return out + "}";
}

}  // namespace datafeed::bench
