#include "datafeed/transport/frame.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "datafeed/schemas/batch_generated.h"
#include "flatbuffers/flatbuffers.h"

namespace datafeed {
namespace {

static_assert(static_cast<uint8_t>(DType::kUInt8) == static_cast<uint8_t>(fb::DType::UInt8) &&
                  static_cast<uint8_t>(DType::kBool) == static_cast<uint8_t>(fb::DType::Bool) &&
                  static_cast<uint8_t>(DType::kFloat32) == static_cast<uint8_t>(fb::DType::Float32),
              "DType must match schemas/batch.fbs");

constexpr size_t kSizePrefixBytes = sizeof(flatbuffers::uoffset_t);
// Beyond this the flatbuffers Verifier refuses (and asserts on) a buffer.
constexpr uint64_t kMaxHeaderBytes = FLATBUFFERS_MAX_BUFFER_SIZE - 1;
// Upper bounds on what a header needs besides names and shape elements.
constexpr uint64_t kHeaderOverheadBytes = 256;
constexpr uint64_t kTensorOverheadBytes = 128;

static_assert(sizeof(size_t) >= sizeof(uint64_t), "frame sizes and offsets are 64-bit");

struct DTypeInfo {
  DType dtype;
  size_t size;
  const char* name;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kUInt8, 1, "uint8"},       {DType::kInt8, 1, "int8"},       {DType::kInt16, 2, "int16"},
    {DType::kInt32, 4, "int32"},       {DType::kInt64, 8, "int64"},     {DType::kFloat16, 2, "float16"},
    {DType::kBFloat16, 2, "bfloat16"}, {DType::kFloat32, 4, "float32"}, {DType::kFloat64, 8, "float64"},
    {DType::kBool, 1, "bool"},
};

const DTypeInfo* FindDType(DType dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.dtype == dtype) return &info;
  }
  return nullptr;
}

// Rounds up to kFrameAlignment; false if that overflows.
bool AlignUp(uint64_t n, uint64_t* out) {
  if (n > std::numeric_limits<uint64_t>::max() - (kFrameAlignment - 1)) return false;
  *out = (n + kFrameAlignment - 1) & ~uint64_t{kFrameAlignment - 1};
  return true;
}

// Bytes of a tensor with non-negative `dims`; false on 64-bit overflow. A
// zero dimension makes the tensor empty however large the others are.
bool ShapeBytes(const std::vector<int64_t>& dims, size_t dtype_size, uint64_t* out) {
  if (std::find(dims.begin(), dims.end(), 0) != dims.end()) {
    *out = 0;
    return true;
  }
  uint64_t bytes = dtype_size;
  for (int64_t dim : dims) {
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(dim), &bytes)) return false;
  }
  *out = bytes;
  return true;
}

// Names and identifiers come from untrusted bytes: escape them and cap their
// length before they go into a message.
std::string Quote(std::string_view s) {
  constexpr size_t kMaxChars = 64;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < kMaxChars; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (s.size() > kMaxChars) out += "...";
  out += "'";
  return out;
}

std::string ShapeString(const std::vector<int64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(dims[i]);
  }
  out += "]";
  return out;
}

Status FrameError(std::string message) { return Status::DataLoss("frame: " + std::move(message)); }

Status LayoutError(std::string message) {
  return Status::InvalidArgument("batch layout: " + std::move(message));
}

// The payload range [begin, end) of a tensor, for the overlap check.
struct Extent {
  uint64_t begin;
  uint64_t end;
  size_t index;
};


std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// A float32 as the shortest text that reads back (as a float, or as a double
// then rounded to float, the way pipeline specs are read) to the same value.
std::string FloatText(float v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string text(buf, res.ptr);
  if (static_cast<float>(std::strtod(text.c_str(), nullptr)) != v) {
    std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
    text = buf;
  }
  return text;
}

Status FinishError(std::string_view spec, const std::string& what) {
  return Status::InvalidArgument("finish spec " + Quote(spec) + ": " + what);
}

}  // namespace

Result<Finish> Finish::Make(std::vector<Normalize> normalizes) {
  size_t tables = 1;
  std::string spec = "to_tensor";
  for (const Normalize& n : normalizes) {
    if (n.mean.empty() || n.mean.size() != n.std.size()) {
      return Status::InvalidArgument("finish: normalize needs as many stds as means (at least one), got " +
                                     std::to_string(n.mean.size()) + " and " + std::to_string(n.std.size()));
    }
    if (n.mean.size() > 1) {
      if (tables != 1 && tables != n.mean.size()) {
        return Status::InvalidArgument("finish: normalize steps give " + std::to_string(tables) + " and " +
                                       std::to_string(n.mean.size()) + " channels");
      }
      tables = n.mean.size();
    }
    spec += ",normalize(";
    for (size_t i = 0; i < n.mean.size(); ++i) {
      if (!std::isfinite(n.mean[i]) || !std::isfinite(n.std[i]) || n.std[i] == 0.0f) {
        return Status::InvalidArgument("finish: normalize mean " + FloatText(n.mean[i]) + ", std " +
                                       FloatText(n.std[i]) + ": the std must be finite and non-zero, the mean finite");
      }
      spec += (i ? "," : "") + FloatText(n.mean[i]);
    }
    for (float sd : n.std) spec += "," + FloatText(sd);
    spec += ")";
  }
  Finish f;
  f.spec_ = std::move(spec);
  f.luts_.resize(tables);
  for (size_t c = 0; c < tables; ++c) {
    for (int v = 0; v < 256; ++v) {
      // torchvision: img.to(float32).div(255), then tensor.sub_(mean).div_(std)
      // per Normalize -- a division, not a multiply by 1 / std, to round the same.
      float t = static_cast<float>(v) / 255.0f;
      for (const Normalize& n : normalizes) {
        const size_t k = n.mean.size() == 1 ? 0 : c;
        t = (t - n.mean[k]) / n.std[k];
      }
      f.luts_[c][static_cast<size_t>(v)] = t;
    }
  }
  f.normalizes_ = std::move(normalizes);
  return f;
}

Result<Finish> Finish::Parse(std::string_view spec) {
  // A stream carries the same finish in every frame, and ParseFrame and the
  // consumer both parse it: remember the last spec this thread parsed.
  struct Last {
    std::string spec;
    std::optional<Finish> finish;
  };
  thread_local Last last;
  if (last.finish && last.spec == spec) return *last.finish;
  Result<Finish> parsed = ParseUncached(spec);
  if (parsed.ok()) {
    last.spec.assign(spec.data(), spec.size());
    last.finish = *parsed;
  }
  return parsed;
}

Result<Finish> Finish::ParseUncached(std::string_view spec) {
  if (spec.size() > kMaxFinishSpecBytes) {
    return FinishError(spec, "is " + std::to_string(spec.size()) + " bytes, more than the " +
                                 std::to_string(kMaxFinishSpecBytes) + " a frame may carry");
  }
  // Top-level items: commas outside parentheses.
  std::vector<std::string_view> items;
  size_t start = 0;
  int depth = 0;
  for (size_t i = 0; i <= spec.size(); ++i) {
    if (i == spec.size() || (spec[i] == ',' && depth == 0)) {
      items.push_back(TrimSpace(spec.substr(start, i - start)));
      start = i + 1;
    } else if (spec[i] == '(') {
      if (++depth > 1) return FinishError(spec, "nested parentheses");
    } else if (spec[i] == ')') {
      if (--depth < 0) return FinishError(spec, "unmatched ')'");
    }
  }
  if (depth != 0) return FinishError(spec, "unmatched '('");
  std::vector<Normalize> normalizes;
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string_view item = items[i];
    const size_t open = item.find('(');
    const std::string_view name = TrimSpace(item.substr(0, open));
    if (i == 0) {
      if (name != "to_tensor" || open != std::string_view::npos) {
        return FinishError(spec, "must start with to_tensor (the finish turns uint8 into float32), got " +
                                     Quote(item));
      }
      continue;
    }
    if (name == "to_tensor") {
      return FinishError(spec, "to_tensor appears twice; the finish converts uint8 to float32 once");
    }
    if (name != "normalize") {
      return FinishError(spec, Quote(item) +
                                   " cannot be part of a finish: only to_tensor and normalize, which map "
                                   "each value on its own, run on the consumer");
    }
    if (open == std::string_view::npos || item.back() != ')') {
      return FinishError(spec, Quote(item) + ": expected normalize(m..., s...)");
    }
    std::vector<float> nums;
    std::string_view inner = item.substr(open + 1, item.size() - open - 2);
    size_t pos = 0;
    while (true) {
      const size_t comma = inner.find(',', pos);
      std::string_view tok = TrimSpace(inner.substr(pos, comma == std::string_view::npos ? inner.npos : comma - pos));
      const char* first = tok.data();
      const char* last = tok.data() + tok.size();
      if (!tok.empty() && *first == '+') ++first;
      double v = 0;
      const auto res = std::from_chars(first, last, v);
      if (tok.empty() || res.ec != std::errc() || res.ptr != last) {
        return FinishError(spec, Quote(item) + ": " + Quote(tok) + " is not a number");
      }
      nums.push_back(static_cast<float>(v));
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
    if (nums.size() % 2 != 0) {
      return FinishError(spec, Quote(item) + ": takes (mean, std) or (m1, ..., mC, s1, ..., sC), got " +
                                   std::to_string(nums.size()) + " numbers");
    }
    Normalize n;
    n.mean.assign(nums.begin(), nums.begin() + static_cast<std::ptrdiff_t>(nums.size() / 2));
    n.std.assign(nums.begin() + static_cast<std::ptrdiff_t>(nums.size() / 2), nums.end());
    normalizes.push_back(std::move(n));
  }
  Result<Finish> made = Make(std::move(normalizes));
  if (!made.ok()) return FinishError(spec, made.status().message());
  return made;
}

Status Finish::CheckChannels(int64_t channels) const {
  if (channels <= 0 || (luts_.size() != 1 && luts_.size() != static_cast<size_t>(channels))) {
    return Status::InvalidArgument("finish " + Quote(spec_) + " has per-channel values for " +
                                   std::to_string(luts_.size()) + " channels but the image has " +
                                   std::to_string(channels));
  }
  return Status::OK();
}

Status Finish::FillTables(int64_t channels, float* out) const {
  DATAFEED_RETURN_NOT_OK(CheckChannels(channels));
  for (int64_t c = 0; c < channels; ++c) std::memcpy(out + c * 256, table(c), 256 * sizeof(float));
  return Status::OK();
}

void Finish::MapCHW(const uint8_t* in, int64_t channels, size_t plane, float* out) const {
  for (int64_t c = 0; c < channels; ++c) {
    const float* lut = table(c);
    const uint8_t* s = in + static_cast<size_t>(c) * plane;
    float* o = out + static_cast<size_t>(c) * plane;
    for (size_t i = 0; i < plane; ++i) o[i] = lut[s[i]];
  }
}

void Finish::MapHWC(const uint8_t* in, int64_t channels, size_t plane, float* out) const {
  if (channels == 1) return MapCHW(in, 1, plane, out);
  const auto stride = static_cast<size_t>(channels);
  for (int64_t c = 0; c < channels; ++c) {
    const float* lut = table(c);
    const uint8_t* s = in + c;
    float* o = out + static_cast<size_t>(c) * plane;
    for (size_t i = 0; i < plane; ++i) o[i] = lut[s[i * stride]];
  }
}

Status Finish::Apply(const uint8_t* in, const std::vector<int64_t>& shape, float* out,
                     size_t out_floats) const {
  const size_t rank = shape.size();
  if (rank < 3) {
    return Status::InvalidArgument("finish " + Quote(spec_) + ": needs a [..., C, H, W] tensor, got shape " +
                                   ShapeString(shape));
  }
  DATAFEED_RETURN_NOT_OK(CheckChannels(shape[rank - 3]));
  uint64_t n = 0;
  if (!ShapeBytes(shape, 1, &n) || n != out_floats) {
    return Status::InvalidArgument("finish " + Quote(spec_) + ": a tensor of shape " + ShapeString(shape) +
                                   " needs " + std::to_string(n) + " output floats, got room for " +
                                   std::to_string(out_floats));
  }
  if (n == 0) return Status::OK();
  if (in == nullptr || out == nullptr) return Status::InvalidArgument("finish: null input or output");
  const int64_t channels = shape[rank - 3];
  const size_t plane = static_cast<size_t>(shape[rank - 2]) * static_cast<size_t>(shape[rank - 1]);
  const size_t image = plane * static_cast<size_t>(channels);
  for (size_t off = 0; off < n; off += image) MapCHW(in + off, channels, plane, out + off);
  return Status::OK();
}


size_t DTypeSize(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info ? info->size : 0;
}

const char* DTypeName(DType dtype) {
  const DTypeInfo* info = FindDType(dtype);
  return info ? info->name : "unknown";
}

Result<DType> DTypeFromName(std::string_view name) {
  std::string known;
  for (const DTypeInfo& info : kDTypes) {
    if (name == info.name) return info.dtype;
    if (!known.empty()) known += ", ";
    known += info.name;
  }
  return Status::InvalidArgument("unknown dtype " + Quote(name) + "; expected one of " + known);
}

Result<BatchLayout> BatchLayout::Make(std::vector<TensorSpec> tensors) {
  BatchLayout layout;
  layout.nbytes_.reserve(tensors.size());
  uint64_t header_estimate = kHeaderOverheadBytes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorSpec& spec = tensors[i];
    if (spec.name.empty()) return LayoutError("tensor " + std::to_string(i) + " has an empty name");
    for (size_t j = 0; j < i; ++j) {
      if (tensors[j].name == spec.name) return LayoutError("tensor " + Quote(spec.name) + " appears twice");
    }
    const size_t dtype_size = DTypeSize(spec.dtype);
    if (dtype_size == 0) {
      return LayoutError("tensor " + Quote(spec.name) + " has unknown dtype " +
                         std::to_string(static_cast<int>(spec.dtype)));
    }
    for (size_t axis = 0; axis < spec.shape.size(); ++axis) {
      if (spec.shape[axis] < 0) {
        return LayoutError("tensor " + Quote(spec.name) + " has negative dimension " +
                           std::to_string(spec.shape[axis]) + " at axis " + std::to_string(axis));
      }
    }
    uint64_t nbytes = 0;
    if (!ShapeBytes(spec.shape, dtype_size, &nbytes)) {
      return LayoutError("tensor " + Quote(spec.name) + " of shape " + ShapeString(spec.shape) + " " +
                         DTypeName(spec.dtype) + " is more than 2^64 bytes");
    }
    if (!spec.finish.empty()) {
      if (spec.dtype != DType::kUInt8 || spec.shape.size() < 3) {
        return LayoutError("tensor " + Quote(spec.name) + " has finish " + Quote(spec.finish) +
                           " but is " + DTypeName(spec.dtype) + " " + ShapeString(spec.shape) +
                           "; a finish needs a uint8 [..., C, H, W] tensor");
      }
      Result<Finish> finish = Finish::Parse(spec.finish);
      if (!finish.ok()) return LayoutError("tensor " + Quote(spec.name) + ": " + finish.status().message());
      if (Status st = finish->CheckChannels(spec.shape[spec.shape.size() - 3]); !st.ok()) {
        return LayoutError("tensor " + Quote(spec.name) + ": " + st.message());
      }
    }
    layout.nbytes_.push_back(nbytes);
    header_estimate += kTensorOverheadBytes + spec.name.size() + spec.shape.size() * sizeof(int64_t) +
                       spec.finish.size();
  }
  // FlatBufferBuilder aborts rather than fail on a buffer this large.
  if (header_estimate > kMaxHeaderBytes) {
    return LayoutError("the tensor names and shapes need a header of about " +
                       std::to_string(header_estimate) + " bytes; the limit is " +
                       std::to_string(kMaxHeaderBytes));
  }

  // Offsets and frame_bytes are patched in after the build: with
  // ForceDefaults every field is stored even when 0, and every field is
  // fixed-width, so the header's size never depends on the values.
  flatbuffers::FlatBufferBuilder fbb(1024);
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<fb::Tensor>> fb_tensors;
  fb_tensors.reserve(tensors.size());
  for (const TensorSpec& spec : tensors) {
    const auto name = fbb.CreateString(spec.name.data(), spec.name.size());
    const auto shape = fbb.CreateVector(spec.shape);
    // Written only when set, so an unsplit frame is byte-for-byte the old form.
    const auto finish = spec.finish.empty()
                            ? flatbuffers::Offset<flatbuffers::String>()
                            : fbb.CreateString(spec.finish.data(), spec.finish.size());
    fb_tensors.push_back(fb::CreateTensor(fbb, name, static_cast<fb::DType>(spec.dtype), shape,
                                          /*offset=*/0, /*nbytes=*/0, finish));
  }
  const fb::BatchMeta meta;
  fb::FinishSizePrefixedBatchHeaderBuffer(
      fbb, fb::CreateBatchHeader(fbb, kFrameVersion, &meta, fbb.CreateVector(fb_tensors),
                                 /*frame_bytes=*/0));

  uint64_t cursor = 0;
  if (!AlignUp(fbb.GetSize(), &cursor)) return LayoutError("header size overflows");
  layout.header_bytes_ = cursor;
  layout.offsets_.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    uint64_t offset = 0;
    if (!AlignUp(cursor, &offset) || __builtin_add_overflow(offset, uint64_t{layout.nbytes_[i]}, &cursor)) {
      return LayoutError("the tensors up to " + Quote(tensors[i].name) + " add up to more than 2^64 bytes");
    }
    layout.offsets_.push_back(offset);
  }
  uint64_t frame_bytes = 0;
  if (!AlignUp(cursor, &frame_bytes)) return LayoutError("the frame is more than 2^64 bytes");
  layout.frame_bytes_ = frame_bytes;

  auto header = std::make_shared<std::vector<uint8_t>>(layout.header_bytes_, 0);
  std::memcpy(header->data(), fbb.GetBufferPointer(), fbb.GetSize());
  fb::BatchHeader* root = fb::GetMutableSizePrefixedBatchHeader(header->data());
  bool patched = root->mutate_frame_bytes(layout.frame_bytes_);
  for (size_t i = 0; i < tensors.size(); ++i) {
    fb::Tensor* t = root->mutable_tensors()->GetMutableObject(static_cast<flatbuffers::uoffset_t>(i));
    patched = patched && t->mutate_offset(layout.offsets_[i]) && t->mutate_nbytes(layout.nbytes_[i]);
  }
  if (!patched) return Status::Internal("batch layout: a header field was not stored; ForceDefaults is off?");
  layout.header_template_ = std::move(header);
  layout.tensors_ = std::move(tensors);
  return layout;
}

int BatchLayout::IndexOf(std::string_view name) const {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (tensors_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

void BatchLayout::WriteHeader(uint8_t* frame, const BatchMeta& meta) const {
  std::memcpy(frame, header_template_->data(), header_bytes_);
  UpdateMeta(frame, meta);
}

void BatchLayout::UpdateMeta(uint8_t* frame, const BatchMeta& meta) {
  fb::BatchMeta* m = fb::GetMutableSizePrefixedBatchHeader(frame)->mutable_meta();
  m->mutate_sequence(meta.sequence);
  m->mutate_first_index(meta.first_index);
  m->mutate_producer_id(meta.producer_id);
  m->mutate_epoch(meta.epoch);
  m->mutate_flags(meta.flags);
  m->mutate_fingerprint(meta.fingerprint);
  m->mutate_batch_index(meta.batch_index);
  m->mutate_shard(meta.shard);
  m->mutate_num_shards(meta.num_shards);
  m->mutate_attempt(meta.attempt);
}

std::string BatchIdString(const BatchMeta& meta) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "run %016llx shard %u/%u epoch %u batch %llu",
                static_cast<unsigned long long>(meta.fingerprint), meta.shard, meta.num_shards,
                meta.epoch, static_cast<unsigned long long>(meta.batch_index));
  return buf;
}

int64_t TensorView::numel() const {
  uint64_t n = 1;
  for (int64_t dim : shape) n *= static_cast<uint64_t>(dim);
  return static_cast<int64_t>(n);
}

const TensorView* FrameView::Find(std::string_view name) const {
  for (const TensorView& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

size_t MaxFrameHeaderBytes() { return kMaxHeaderBytes; }

Result<FrameView> ParseFrame(const uint8_t* data, size_t size) {
  return ParseFrameFromCopy(data, size, data, size);
}

Result<FrameView> ParseFrameFromCopy(const uint8_t* data, size_t header_len, const uint8_t* frame,
                                     size_t size) {
  if (header_len > size) header_len = size;
  if (header_len < kSizePrefixBytes) {
    if (size >= kSizePrefixBytes) {
      return FrameError("only " + std::to_string(header_len) + " bytes of the header were copied");
    }
    return FrameError(std::to_string(size) + " bytes cannot hold the header's size prefix");
  }
  uint32_t prefix = 0;
  std::memcpy(&prefix, data, sizeof(prefix));
  prefix = flatbuffers::EndianScalar(prefix);
  if (prefix > size - kSizePrefixBytes) {
    return FrameError("the header claims " + std::to_string(prefix) + " bytes but only " +
                      std::to_string(size - kSizePrefixBytes) + " follow its size prefix");
  }
  const size_t header_end = kSizePrefixBytes + prefix;
  if (header_end > header_len) {
    return FrameError("the header claims " + std::to_string(prefix) + " bytes but only " +
                      std::to_string(header_len - kSizePrefixBytes) + " were copied from the frame");
  }
  if (header_end > kMaxHeaderBytes) {
    return FrameError("the header claims " + std::to_string(prefix) +
                      " bytes, more than a flatbuffer can hold");
  }
  constexpr size_t kIdEnd =
      kSizePrefixBytes + sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength;
  if (header_end >= kIdEnd && !fb::SizePrefixedBatchHeaderBufferHasIdentifier(data)) {
    const auto* id = reinterpret_cast<const char*>(data) + kIdEnd - flatbuffers::kFileIdentifierLength;
    return FrameError("file identifier is " +
                      Quote(std::string_view(id, flatbuffers::kFileIdentifierLength)) + ", expected " +
                      Quote(fb::BatchHeaderIdentifier()) + "; not a datafeed frame");
  }
  flatbuffers::Verifier verifier(data, header_end, flatbuffers::Verifier::Options());
  if (!fb::VerifySizePrefixedBatchHeaderBuffer(verifier)) {
    return FrameError("the " + std::to_string(header_end) + "-byte header failed flatbuffers verification");
  }
  const fb::BatchHeader* header = fb::GetSizePrefixedBatchHeader(data);
  if (header->version() != kFrameVersion) {
    return FrameError("header version " + std::to_string(header->version()) +
                      " is not supported (this build reads version " + std::to_string(kFrameVersion) + ")");
  }
  const uint64_t header_bytes = (header_end + kFrameAlignment - 1) & ~uint64_t{kFrameAlignment - 1};
  const uint64_t frame_bytes = header->frame_bytes();
  if (frame_bytes > size) {
    return FrameError("the header says the frame is " + std::to_string(frame_bytes) + " bytes but only " +
                      std::to_string(size) + " bytes were given");
  }
  if (frame_bytes < header_bytes) {
    return FrameError("the header says the frame is " + std::to_string(frame_bytes) +
                      " bytes, less than its own " + std::to_string(header_bytes) + "-byte header");
  }

  FrameView view;
  view.data_ = frame;
  view.size_ = frame_bytes;
  const fb::BatchMeta* meta = header->meta();
  view.meta_.sequence = meta->sequence();
  view.meta_.first_index = meta->first_index();
  view.meta_.producer_id = meta->producer_id();
  view.meta_.epoch = meta->epoch();
  view.meta_.flags = meta->flags();
  view.meta_.fingerprint = meta->fingerprint();
  view.meta_.batch_index = meta->batch_index();
  view.meta_.shard = meta->shard();
  view.meta_.num_shards = meta->num_shards();
  view.meta_.attempt = meta->attempt();

  const auto* tensors = header->tensors();
  view.tensors_.resize(tensors->size());
  std::vector<Extent> extents(tensors->size());
  for (flatbuffers::uoffset_t i = 0; i < tensors->size(); ++i) {
    const fb::Tensor* t = tensors->Get(i);
    TensorView& tv = view.tensors_[i];
    tv.name = std::string_view(t->name()->c_str(), t->name()->size());
    if (tv.name.empty()) return FrameError("tensor " + std::to_string(i) + " has an empty name");
    // Built only on failure: the success path allocates nothing per field.
    const auto tensor_error = [&tv](const std::string& what) {
      return FrameError("tensor " + Quote(tv.name) + " " + what);
    };

    tv.dtype = static_cast<DType>(t->dtype());
    const size_t dtype_size = DTypeSize(tv.dtype);
    if (dtype_size == 0) {
      return tensor_error("has unknown dtype " + std::to_string(static_cast<int>(t->dtype())));
    }

    // The Verifier checks the vector's bounds but only 4-byte alignment, so
    // the int64 elements are copied out rather than dereferenced.
    const auto* shape = t->shape();
    tv.shape.resize(shape->size());
    if (!tv.shape.empty()) std::memcpy(tv.shape.data(), shape->Data(), tv.shape.size() * sizeof(int64_t));
    for (size_t axis = 0; axis < tv.shape.size(); ++axis) {
      int64_t& dim = tv.shape[axis];
      dim = flatbuffers::EndianScalar(dim);
      if (dim < 0) {
        return tensor_error("has negative dimension " + std::to_string(dim) + " at axis " +
                            std::to_string(axis));
      }
    }
    const uint64_t nbytes = t->nbytes();
    uint64_t expected = 0;
    if (!ShapeBytes(tv.shape, dtype_size, &expected)) {
      return tensor_error("of shape " + ShapeString(tv.shape) + " " + DTypeName(tv.dtype) +
                          " is more than 2^64 bytes");
    }
    if (expected != nbytes) {
      return tensor_error("of shape " + ShapeString(tv.shape) + " " + DTypeName(tv.dtype) + " needs " +
                          std::to_string(expected) + " bytes but the header says " + std::to_string(nbytes));
    }

    const uint64_t offset = t->offset();
    if (offset % kFrameAlignment != 0) {
      return tensor_error("is at offset " + std::to_string(offset) + ", not a multiple of " +
                          std::to_string(kFrameAlignment));
    }
    if (offset < header_bytes) {
      return tensor_error("is at offset " + std::to_string(offset) + ", inside the " +
                          std::to_string(header_bytes) + "-byte header");
    }
    if (nbytes > frame_bytes || offset > frame_bytes - nbytes) {
      return tensor_error("claims " + std::to_string(nbytes) + " bytes at offset " + std::to_string(offset) +
                          " but the frame is " + std::to_string(frame_bytes) + " bytes");
    }
    tv.finish = std::string_view();
    if (const flatbuffers::String* finish = t->finish(); finish != nullptr && finish->size() > 0) {
      tv.finish = std::string_view(finish->c_str(), finish->size());
      if (tv.finish.size() > kMaxFinishSpecBytes) {
        return tensor_error("has a " + std::to_string(tv.finish.size()) + "-byte finish spec; at most " +
                            std::to_string(kMaxFinishSpecBytes) + " are allowed");
      }
      if (tv.dtype != DType::kUInt8 || tv.shape.size() < 3) {
        return tensor_error("has finish " + Quote(tv.finish) + " but is " + DTypeName(tv.dtype) + " " +
                            ShapeString(tv.shape) + ", not uint8 [..., C, H, W]");
      }
      Result<Finish> parsed = Finish::Parse(tv.finish);
      if (!parsed.ok()) return tensor_error("has a bad finish: " + parsed.status().message());
      if (Status st = parsed->CheckChannels(tv.shape[tv.shape.size() - 3]); !st.ok()) {
        return tensor_error("has a bad finish: " + st.message());
      }
    }
    tv.data = frame + offset;
    tv.nbytes = nbytes;
    extents[i] = Extent{offset, offset + nbytes, i};
  }

  // Sorting by (begin, end) puts an empty payload ahead of a non-empty one at
  // the same offset, so it is not mistaken for an overlap.
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < extents.size(); ++i) {
    const Extent& a = extents[i - 1];
    const Extent& b = extents[i];
    if (a.end > b.begin) {
      return FrameError("tensors " + Quote(view.tensors_[a.index].name) + " [" + std::to_string(a.begin) +
                        ", " + std::to_string(a.end) + ") and " + Quote(view.tensors_[b.index].name) + " [" +
                        std::to_string(b.begin) + ", " + std::to_string(b.end) + ") overlap");
    }
  }

  std::sort(extents.begin(), extents.end(), [&view](const Extent& a, const Extent& b) {
    return view.tensors_[a.index].name < view.tensors_[b.index].name;
  });
  for (size_t i = 1; i < extents.size(); ++i) {
    const std::string_view name = view.tensors_[extents[i].index].name;
    if (name == view.tensors_[extents[i - 1].index].name) {
      return FrameError("tensor name " + Quote(name) + " appears more than once");
    }
  }
  return view;
}

}  // namespace datafeed
