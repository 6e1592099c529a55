// Small helpers shared by the datafeed-bench subcommands.
#ifndef DATAFEED_BENCH_BENCH_UTIL_H_
#define DATAFEED_BENCH_BENCH_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "datafeed/tools/cli.h"

namespace datafeed::bench {

// One subcommand of datafeed-bench: its flags, parsed into options the
// subcommand owns, and the run that reads them (main calls it once the
// command line parsed).
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};
Subcommand AddShm(CLI::App& bench);
Subcommand AddPipeline(CLI::App& bench);
Subcommand AddGrpc(CLI::App& bench);
Subcommand AddFeed(CLI::App& bench);

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

// `v` with `precision` decimals, for the text reports.
std::string Num(double v, int precision = 3);

}  // namespace datafeed::bench

#endif  // DATAFEED_BENCH_BENCH_UTIL_H_
