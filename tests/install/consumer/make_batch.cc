// Runs the installed datafeed::producer in-process: a synthetic MNIST, the
// reference pipeline, a Producer writing into an inproc:// queue; prints
// "batches N samples M" as it reads them back.
#include <stdlib.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/producer.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/transport.h"

using namespace datafeed;

namespace {

int Fail(const Status& st) {
  std::fprintf(stderr, "make_batch: %s\n", st.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  char dir[] = "/tmp/datafeed-install-make-batch-XXXXXX";
  if (mkdtemp(dir) == nullptr) return Fail(Status::FromErrno(errno, "mkdtemp"));
  if (Status st = WriteSyntheticMnist(dir, "train", 100, 1); !st.ok()) return Fail(st);
  auto dataset = MnistDataset::OpenDir(dir, "train");
  if (!dataset.ok()) return Fail(dataset.status());
  std::shared_ptr<const Dataset> shared = std::move(dataset).value();
  auto pipeline = Pipeline::Make("to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)");
  if (!pipeline.ok()) return Fail(pipeline.status());

  auto endpoint = ParseEndpoint("inproc://install-test");
  if (!endpoint.ok()) return Fail(endpoint.status());
  auto writer = OpenWriter(*endpoint, WriterOptions{});
  if (!writer.ok()) return Fail(writer.status());
  auto reader = OpenReader(*endpoint, ReaderOptions{});
  if (!reader.ok()) return Fail(reader.status());
  ProducerOptions po;
  po.sampler.batch_size = 32;
  po.threads = 1;
  auto producer = Producer::Make(shared, *pipeline, po, writer->get());
  if (!producer.ok()) return Fail(producer.status());
  Status run;
  std::thread thread([&] {
    run = (*producer)->Run();
    if (Status closed = (*writer)->Close(); run.ok()) run = closed;
  });
  long long batches = 0, samples = 0;
  Status read;
  for (;;) {
    auto batch = (*reader)->Next(Deadline::AfterMillis(20'000));
    if (batch.status().IsEndOfStream()) break;
    if (!batch.ok()) {
      read = batch.status();
      break;
    }
    const TensorView* image = batch->Find("image");
    if (image == nullptr || image->shape.size() != 4 || image->shape[2] != 28) {
      read = Status::Internal("a batch without a [B,1,28,28] 'image'");
      break;
    }
    ++batches;
    samples += image->shape[0];
  }
  thread.join();
  if (!run.ok()) return Fail(run);
  if (!read.ok()) return Fail(read);
  std::printf("batches %lld samples %lld\n", batches, samples);
  return 0;
}
