// Finish: the consumer's end of a split pipeline.
//
// A producer whose pipeline spec holds a '|' (producer/.../transform.h) ships
// uint8 images and names the rest of the pipeline, the finish, in each
// tensor's frame header (TensorSpec::finish in frame.h); every consumer runs
// it with this class. It lives in transport, not in the producer, because
// consumers that know nothing of transforms (datafeed-consume, the torch
// adapter, the C ABI) must run it; its spec is parsed by the same tokenizer
// as a pipeline's (spec.h).
#ifndef DATAFEED_TRANSPORT_FINISH_H_
#define DATAFEED_TRANSPORT_FINISH_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {

// The consumer's end of a split pipeline (producer/.../transform.h): the
// elementwise steps that turn a uint8 image tensor [..., C, H, W] into the
// float32 tensor of the same shape that the producer would have written.
// Its spec is "to_tensor" followed by zero or more
// "normalize(m, s)" / "normalize(m1, ..., mC, s1, ..., sC)", exactly as in
// a pipeline spec, with torchvision's float32 semantics: x / 255, then
// (x - m[c]) / s[c] for each normalize in turn.
//
// Every step is a function of one uint8 value and its channel, so the whole
// finish is one 256-entry float table per channel (one table broadcasts to
// every channel when every normalize gives one pair). The tables are built
// here and nowhere else: the producer's fused to_tensor+normalize and every
// consumer (C++, torch, Python through the C ABI) map through them, so a
// split pipeline gives bit-identical floats to an unsplit one.
// Immutable; safe to share across threads.
class Finish {
 public:
  struct Normalize {
    std::vector<float> mean;  // one value (broadcast) or one per channel
    std::vector<float> std;   // same length as mean
  };

  // Parses and validates a finish spec (InvalidArgument naming the bad part).
  static Result<Finish> Parse(std::string_view spec);
  // to_tensor then the given normalize steps (InvalidArgument for a zero or
  // non-finite std, mismatched lengths or per-channel counts that disagree).
  static Result<Finish> Make(std::vector<Normalize> normalizes);

  // The canonical spec: "to_tensor" or "to_tensor,normalize(0.1307,0.3081)",
  // numbers written so that parsing them gives back the same float32 values.
  const std::string& spec() const { return spec_; }
  const std::vector<Normalize>& normalizes() const { return normalizes_; }
  // 1 when one table serves every channel, else the channel count required.
  size_t num_tables() const { return luts_.size(); }
  // InvalidArgument unless the finish can take an image of `channels` channels.
  Status CheckChannels(int64_t channels) const;
  // The 256 floats for channel c (c < channels; broadcast tables ignore c).
  const float* table(int64_t c) const { return luts_[luts_.size() == 1 ? 0 : static_cast<size_t>(c)].data(); }
  // Writes channels x 256 floats, channel c's table at out[c * 256]
  // (InvalidArgument if CheckChannels fails).
  Status FillTables(int64_t channels, float* out) const;

  // out(c, i) = table(c)[in(c, i)]: uint8 planes in CHW order (plane = H * W
  // elements each) to float32 planes. Does not check channels.
  void MapCHW(const uint8_t* in, int64_t channels, size_t plane, float* out) const;
  // out(c, i) = table(c)[in(i, c)]: uint8 HWC pixels to float32 CHW planes,
  // the producer's fused to_tensor+normalize. Does not check channels.
  void MapHWC(const uint8_t* in, int64_t channels, size_t plane, float* out) const;
  // Finishes a uint8 tensor of shape [..., C, H, W] (rank >= 3; C = shape[rank-3])
  // into out, which must hold numel floats (InvalidArgument otherwise, or
  // for a wrong dtype, rank or channel count).
  Status Apply(const uint8_t* in, const std::vector<int64_t>& shape, float* out, size_t out_floats) const;

 private:
  Finish() = default;
  static Result<Finish> ParseUncached(std::string_view spec);
  std::string spec_;
  std::vector<Normalize> normalizes_;
  std::vector<std::array<float, 256>> luts_;
};

// The longest finish spec a frame header may carry.
inline constexpr size_t kMaxFinishSpecBytes = 1024;

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_FINISH_H_
