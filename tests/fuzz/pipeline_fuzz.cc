// Pipeline::Make (the producer's --transform spec) and
// MoveFinishToConsumer on arbitrary text; a pipeline that parses is asked
// its output shape for a small image and, when that is small too, run on
// it (both the unsplit and the split form), so the transforms' argument
// checks are reached, not only the tokenizer.
#include <cstdint>
#include <string>
#include <vector>

#include "datafeed/producer/sample_rng.h"
#include "datafeed/producer/transform.h"
#include "datafeed/transport/spec.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  // Two bytes pick the input image: 1..32 x 1..32, 1 or 3 channels.
  const int h = 1 + data[0] % 32, w = 1 + data[1] % 32, c = (data[0] & 0x80) ? 3 : 1;
  const std::string spec(reinterpret_cast<const char*>(data + 2), size - 2);
  datafeed::fuzz::CheckRefusal(datafeed::Pipeline::MoveFinishToConsumer(spec).status(), "MoveFinishToConsumer");
  datafeed::Result<datafeed::Pipeline> p = datafeed::Pipeline::Make(spec);
  datafeed::fuzz::CheckRefusal(p.status(), "Pipeline::Make");
  if (!p.ok()) return 0;
  datafeed::fuzz::CheckRefusal(p->OutputShape(0, 0, c).status(), "OutputShape (any size)");
  datafeed::Result<datafeed::ImageShape> shape = p->OutputShape(h, w, c);
  datafeed::fuzz::CheckRefusal(shape.status(), "OutputShape");
  if (!shape.ok() || shape->num_elements() > (1u << 16)) return 0;
  // Nor through a step that makes a huge image in between (resize(94172)
  // then center_crop(15): gigabytes, as asked for; a spec is the operator's).
  std::vector<datafeed::SpecItem> items;
  if (!datafeed::ParseSpec(spec, &items).ok()) return 0;
  for (const auto& it : items) {
    for (double a : it.args) {
      if (a > 256) return 0;
    }
  }
  std::vector<uint8_t> image(static_cast<size_t>(h) * w * c);
  for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<uint8_t>(i * 37);
  datafeed::Status st;
  if (p->split()) {
    std::vector<uint8_t> out(shape->num_elements());
    st = p->Run(image.data(), h, w, c, out.data(), datafeed::SampleRng(1, 0, 0));
  } else {
    std::vector<float> out(shape->num_elements());
    st = p->Run(image.data(), h, w, c, out.data(), datafeed::SampleRng(1, 0, 0));
  }
  datafeed::fuzz::CheckRefusal(st, "Pipeline::Run");
  return 0;
}
