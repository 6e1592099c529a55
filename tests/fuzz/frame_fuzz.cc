// ParseFrame and ParseFrameFromCopy on arbitrary bytes: a frame is either
// refused with DataLoss or every tensor it describes lies inside the frame
// (each byte is read, so ASan catches a payload out of bounds).
#include <cstdint>
#include <cstring>
#include <vector>

#include "datafeed/transport/finish.h"
#include "datafeed/transport/frame.h"
#include "fuzz_util.h"

namespace {

using datafeed::fuzz::CheckRefusal;
using datafeed::fuzz::Require;

uint64_t Touch(const datafeed::FrameView& v) {
  uint64_t sum = 0;
  for (const datafeed::TensorView& t : v.tensors()) {
    Require(t.data >= v.data() && t.data + t.nbytes <= v.data() + v.size(), "a tensor outside its frame");
    for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    for (char c : t.name) sum += static_cast<uint8_t>(c);
    Require(v.Find(t.name) != nullptr, "a tensor Find() does not find");
    if (!t.finish.empty()) {
      // ParseFrame promised the finish spec parses.
      Require(datafeed::Finish::Parse(t.finish).ok(), "a frame's finish spec that Finish::Parse refuses");
    }
    (void)t.numel();
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A 64-byte aligned copy, as frames lie in a slot or receive buffer.
  std::vector<uint8_t> storage(size + 64);
  uint8_t* base = storage.data();
  base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64;
  uint8_t* frame = static_cast<uint8_t*>(std::memmove(base, data, size));

  datafeed::Result<datafeed::FrameView> v = datafeed::ParseFrame(frame, size);
  CheckRefusal(v.status(), "ParseFrame");
  if (v.ok()) {
    Require(v->size() <= size, "a frame larger than its buffer");
    volatile uint64_t sink = Touch(*v);
    (void)sink;
  }
  // The shared-memory path: the header from a private copy of the first bytes.
  const size_t header_len = std::min(size, datafeed::MaxFrameHeaderBytes());
  std::vector<uint8_t> header(frame, frame + header_len);
  datafeed::Result<datafeed::FrameView> c =
      datafeed::ParseFrameFromCopy(header.data(), header.size(), frame, size);
  CheckRefusal(c.status(), "ParseFrameFromCopy");
  Require(c.ok() == v.ok() || header_len < size, "ParseFrame and ParseFrameFromCopy disagree on a frame");
  if (c.ok()) {
    volatile uint64_t sink = Touch(*c);
    (void)sink;
  }
  return 0;
}
