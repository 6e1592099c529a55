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
#include "datafeed/transport/finish.h"
#include "frame_internal.h"
#include "flatbuffers/flatbuffers.h"

namespace datafeed {

using internal::Quote;
using internal::ShapeBytes;
using internal::ShapeString;

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

}  // namespace

namespace internal {

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

}  // namespace internal


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
