// datafeed-consume: reads batches from an endpoint, checks them and prints
// throughput. The demo's consumer, and a quick way to see what a producer serves.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "datafeed/consumer/consumer.h"
#include "datafeed/transport/flags.h"

using namespace datafeed;
using Clock = std::chrono::steady_clock;

namespace {

// Reads every byte (as the trainer's first layer would) and returns a sum
// that the compiler cannot drop.
uint64_t TouchAll(const uint8_t* p, size_t n) {
  uint64_t a = 0, b = 0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint64_t w[2];
    std::memcpy(w, p + i, 16);
    a += w[0];
    b += w[1];
  }
  for (; i < n; ++i) a += p[i];
  return a ^ b;
}

}  // namespace

int main(int argc, char** argv) {
  EndpointFlags endpoint;
  GrpcClientFlags grpc;
  int64_t max_batches = 0, connect_ms = 10'000, timeout_ms = 30'000, prefetch = 1;
  double report_s = 1.0;
  bool json = false;
  bool keep_uint8 = false;
  Flags flags("datafeed-consume",
              "Reads batches from a producer until the stream ends, checks each one\n"
              "(frame verified; float tensors finite) and prints throughput.");
  endpoint.Add(flags);
  flags.Int("batches", &max_batches, "stop after this many batches (0: until the stream ends)");
  flags.Int("connect-timeout-ms", &connect_ms, "wait this long for the producer to appear");
  flags.Int("timeout-ms", &timeout_ms, "give up when no batch arrives for this long");
  flags.Int("prefetch", &prefetch, "batches read ahead on a background thread (0: none)");
  flags.Double("report-s", &report_s, "seconds between progress lines (0: none)");
  flags.Bool("json", &json, "print the summary as one JSON line");
  flags.Bool("keep-uint8", &keep_uint8,
             "split pipelines: do not run the consumer's finish (uint8 -> float32) on each batch");
  grpc.Add(flags);
  ParseFlagsOrExit(flags, argc, argv);

  ConsumerOptions co;
  co.reader.connect_timeout_ms = connect_ms;
  co.timeout_ms = timeout_ms;
  co.prefetch = static_cast<int>(prefetch);
  grpc.ApplyTo(&co.reader);
  Result<Endpoint> ep = endpoint.Resolve();
  auto consumer = ep.ok() ? Consumer::Open(*ep, co) : Result<std::unique_ptr<Consumer>>(ep.status());
  if (!consumer.ok()) {
    std::fprintf(stderr, "datafeed-consume: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  uint64_t batches = 0, samples = 0, bytes = 0, sink = 0, nonfinite = 0, finished = 0;
  std::vector<float> finish_buf;  // a split pipeline's finished tensor, reused
  Clock::time_point first{}, last{}, next_report{};
  Status end;
  for (;;) {
    if (max_batches > 0 && batches >= static_cast<uint64_t>(max_batches)) break;
    auto v = (*consumer)->Next();
    if (!v.ok()) {
      end = v.status();
      break;
    }
    const auto now = Clock::now();
    if (batches == 0) {
      first = now;
      next_report = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(report_s));
    }
    for (const TensorView& t : v->frame().tensors()) {
      sink += TouchAll(t.data, t.nbytes);
      const float* f = t.as<float>();
      if (!t.finish.empty() && !keep_uint8) {
        // What a trainer of a split pipeline does: uint8 -> float32.
        finish_buf.resize(static_cast<size_t>(t.numel()));
        if (Status st = FinishTensor(t, finish_buf.data(), finish_buf.size()); !st.ok()) {
          std::fprintf(stderr, "datafeed-consume: %s\n", st.ToString().c_str());
          return 1;
        }
        f = finish_buf.data();
        ++finished;
      }
      if (f != nullptr && t.numel() > 0) {
        // Spot-check values: a sample of every 997th float.
        for (int64_t i = 0; i < t.numel(); i += 997) nonfinite += !std::isfinite(f[i]);
      }
    }
    ++batches;
    bytes += v->frame().size();
    if (v->frame().num_tensors() > 0 && !v->frame().tensor(0).shape.empty()) {
      samples += static_cast<uint64_t>(v->frame().tensor(0).shape[0]);
    }
    last = Clock::now();
    if (report_s > 0 && last >= next_report && !json) {
      const double s = std::chrono::duration<double>(last - first).count();
      std::fprintf(stderr, "datafeed-consume: %llu batches, %.1f batches/s, %.0f samples/s, %.2f GB/s\n",
                   static_cast<unsigned long long>(batches), s > 0 ? (batches - 1) / s : 0.0,
                   s > 0 ? samples / s : 0.0, s > 0 ? bytes / s / 1e9 : 0.0);
      next_report += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(report_s));
    }
  }
  if (!end.ok() && !end.IsEndOfStream()) {
    std::fprintf(stderr, "datafeed-consume: after %llu batches: %s\n",
                 static_cast<unsigned long long>(batches), end.ToString().c_str());
    return 1;
  }
  if (nonfinite > 0) {
    std::fprintf(stderr, "datafeed-consume: %llu non-finite floats seen\n",
                 static_cast<unsigned long long>(nonfinite));
    return 1;
  }
  // Rates count the intervals between the first and the last batch.
  const double s = std::chrono::duration<double>(last - first).count();
  const double per = batches > 1 ? static_cast<double>(batches - 1) / static_cast<double>(batches) : 0.0;
  const double bps = s > 0 ? (batches - 1) / s : 0, sps = s > 0 ? samples * per / s : 0,
               gbps = s > 0 ? bytes * per / s / 1e9 : 0;
  // The share of the consumer's time spent waiting in Next() (the rest is
  // this tool reading the bytes).
  const double wait_frac = (*consumer)->stats().wait_fraction();
  if (json) {
    std::printf("{\"endpoint\": \"%s\", \"transport\": \"%s\", \"batches\": %llu, \"samples\": %llu, \"seconds\": %.3f, "
                "\"batches_per_s\": %.2f, \"samples_per_s\": %.0f, \"gbps\": %.3f, \"wait_frac\": %.4f, "
                "\"bytes_per_batch\": %.0f, \"finished_tensors\": %llu, \"checksum\": %llu}\n",
                (*consumer)->endpoint().c_str(), SchemeName((*consumer)->transport()),
                static_cast<unsigned long long>(batches),
                static_cast<unsigned long long>(samples), s, bps, sps, gbps, wait_frac,
                batches > 0 ? static_cast<double>(bytes) / static_cast<double>(batches) : 0.0,
                static_cast<unsigned long long>(finished), static_cast<unsigned long long>(sink));
  } else {
    std::printf("consumed %llu batches (%llu samples, %.1f MB) from %s (%s) in %.2f s\n",
                static_cast<unsigned long long>(batches), static_cast<unsigned long long>(samples),
                bytes / 1e6, (*consumer)->endpoint().c_str(), SchemeName((*consumer)->transport()), s);
    std::printf("  %.2f batches/s   %.0f samples/s   %.3f GB/s   waiting %.1f%%\n", bps, sps, gbps,
                100.0 * wait_frac);
    std::printf("  %.0f bytes per batch%s\n",
                batches > 0 ? static_cast<double>(bytes) / static_cast<double>(batches) : 0.0,
                finished > 0 ? "; split pipeline: finished to float32 here" : "");
  }
  return 0;
}
