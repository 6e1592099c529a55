// Counts the batches and samples a producer serves, through the installed
// datafeed::consumer; prints "batches N samples M".
#include <cstdio>

#include "datafeed/consumer/consumer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: count_batches ENDPOINT\n");
    return 2;
  }
  auto endpoint = datafeed::ParseEndpoint(argv[1]);
  if (!endpoint.ok()) {
    std::fprintf(stderr, "count_batches: %s\n", endpoint.status().ToString().c_str());
    return 1;
  }
  datafeed::ConsumerOptions options;
  options.reader.connect_timeout_ms = 20'000;
  auto consumer = datafeed::Consumer::Open(*endpoint, options);
  if (!consumer.ok()) {
    std::fprintf(stderr, "count_batches: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  long long batches = 0, samples = 0;
  for (;;) {
    auto batch = (*consumer)->Next();
    if (batch.status().IsEndOfStream()) break;
    if (!batch.ok()) {
      std::fprintf(stderr, "count_batches: %s\n", batch.status().ToString().c_str());
      return 1;
    }
    const datafeed::TensorView* label = batch->Find("label");
    if (label == nullptr) {
      std::fprintf(stderr, "count_batches: a batch without 'label'\n");
      return 1;
    }
    ++batches;
    samples += label->numel();
  }
  std::printf("batches %lld samples %lld\n", batches, samples);
  return 0;
}
