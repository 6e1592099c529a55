// Reads a producer's batches as at::Tensors through the installed
// datafeed::torch; prints "batches N samples M image [B, 1, 28, 28]".
#include <cstdio>
#include <string>

#include "datafeed/consumer/consumer.h"
#include "datafeed/torch/tensors.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: count_tensors ENDPOINT\n");
    return 2;
  }
  datafeed::ConsumerOptions options;
  options.reader.connect_timeout_ms = 20'000;
  auto consumer = datafeed::Consumer::Open(argv[1], options);
  if (!consumer.ok()) {
    std::fprintf(stderr, "count_tensors: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  long long batches = 0, samples = 0;
  std::string shape;
  for (;;) {
    auto batch = (*consumer)->Next();
    if (batch.status().IsEndOfStream()) break;
    auto tensors = batch.ok() ? datafeed::ToTensors(*batch) : datafeed::Result<datafeed::TensorBatch>(batch.status());
    if (!tensors.ok()) {
      std::fprintf(stderr, "count_tensors: %s\n", tensors.status().ToString().c_str());
      return 1;
    }
    auto image = tensors->Get("image");
    if (!image.ok()) {
      std::fprintf(stderr, "count_tensors: %s\n", image.status().ToString().c_str());
      return 1;
    }
    shape = "[";
    for (int64_t d = 0; d < image->dim(); ++d) shape += (d ? ", " : "") + std::to_string(image->size(d));
    shape += "]";
    ++batches;
    samples += tensors->num_samples();
  }
  std::printf("batches %lld samples %lld image %s\n", batches, samples, shape.c_str());
  return 0;
}
