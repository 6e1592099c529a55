// Small helpers shared by the datafeed-bench subcommands.
#ifndef DATAFEED_BENCH_BENCH_UTIL_H_
#define DATAFEED_BENCH_BENCH_UTIL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace datafeed::bench {

// --key value / --flag arguments after the subcommand.
class Args {
 public:
  Args(int argc, char** argv);
  bool Flag(const std::string& name) const;
  // Whether --name was given; does not count as asking for it.
  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  int64_t Int(const std::string& name, int64_t fallback) const;
  double Double(const std::string& name, double fallback) const;
  std::string Str(const std::string& name, const std::string& fallback) const;
  // Names given but never asked for (typos); call after reading all options.
  std::vector<std::string> Unused() const;

 private:
  std::map<std::string, std::string> values_;
  mutable std::map<std::string, bool> used_;
};

int64_t NowNs();  // CLOCK_MONOTONIC: comparable across processes on a host
// CPU time of the whole process, all threads: what a run really got of the
// machine, whoever else was running.
int64_t ProcessCpuNs();
double Percentile(std::vector<double> v, double p);
double Median(std::vector<double> v);
// Sum of the 64-bit words of [p, p+n) (n a multiple of 8): reads every byte.
uint64_t Checksum(const uint8_t* p, size_t n);
// Best-of and median GB/s of single-thread memcpy of `bytes` between two
// pre-faulted buffers.
double MemcpyGbps(size_t bytes, int repeats);

// The generated fill, computed rather than copied so that a producer writes
// every byte without reading a source: 64-bit word i of [p, p+n) is
// base + i * k for a fixed odd k. `p` 8-byte aligned, n a multiple of 8.
void Generate(uint8_t* p, size_t n, uint64_t base);
// Checksum() of what Generate(p, n, base) writes, without the bytes.
uint64_t GeneratedSum(size_t n, uint64_t base);

// One JSON line from ordered key/value pairs (values already formatted).
std::string JsonLine(const std::vector<std::pair<std::string, std::string>>& kv);
std::string Num(double v, int precision = 3);
std::string Quote(const std::string& s);

}  // namespace datafeed::bench

#endif  // DATAFEED_BENCH_BENCH_UTIL_H_
