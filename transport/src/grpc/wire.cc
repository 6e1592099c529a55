#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "wire_internal.h"

namespace datafeed::internal {

FramePool::Buffer::~Buffer() { std::free(data); }

std::shared_ptr<FramePool::Buffer> FramePool::Get(size_t bytes) {
  std::unique_ptr<Buffer> b;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < free_.size(); ++i) {
      if (free_[i]->capacity >= bytes) {
        b = std::move(free_[i]);
        free_.erase(free_.begin() + static_cast<long>(i));
        break;
      }
    }
  }
  if (!b) {
    b = std::make_unique<Buffer>();
    b->capacity = (std::max<size_t>(bytes, 64) + 4095) / 4096 * 4096;
    b->data = static_cast<uint8_t*>(std::aligned_alloc(4096, b->capacity));
    if (b->data == nullptr) return nullptr;
  }
  std::weak_ptr<FramePool> self = weak_from_this();
  Buffer* raw = b.release();
  return std::shared_ptr<Buffer>(raw, [self](Buffer* p) {
    if (auto pool = self.lock()) {
      pool->Put(std::unique_ptr<Buffer>(p));
    } else {
      delete p;
    }
  });
}

void FramePool::Put(std::unique_ptr<Buffer> b) {
  std::lock_guard<std::mutex> lock(mu_);
  if (free_.size() < max_free_) free_.push_back(std::move(b));
}

size_t EncodeFrameHeader(size_t frame_bytes, uint8_t out[11]) {
  size_t n = 0;
  out[n++] = 0x0A;  // field 1, wire type 2 (length-delimited)
  uint64_t v = frame_bytes;
  while (v >= 0x80) {
    out[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<uint8_t>(v);
  return n;
}

namespace {
thread_local std::string wire_error;
}  // namespace

void NoteWireError(const std::string& what) { wire_error = what; }

std::string TakeWireError() {
  std::string out;
  out.swap(wire_error);
  return out;
}

size_t EncodeVarintField(uint8_t tag, uint64_t value, uint8_t out[11]) {
  size_t n = 0;
  out[n++] = tag;
  while (value >= 0x80) {
    out[n++] = static_cast<uint8_t>(value | 0x80);
    value >>= 7;
  }
  out[n++] = static_cast<uint8_t>(value);
  return n;
}

bool TakePayload(WireFrame* f, FramePool* pool) {
  f->buffer = pool->Get(f->size);
  if (!f->buffer) return false;
  uint8_t* dst = f->buffer->data;
  size_t left = f->size;  // the slices may go on past the frame (its position field)
  for (size_t i = 0; i < f->slices.size() && left > 0; ++i) {
    const size_t start = i == 0 ? f->offset : 0;
    const size_t n = std::min(f->slices[i].size() - start, left);
    std::memcpy(dst, f->slices[i].begin() + start, n);
    dst += n;
    left -= n;
  }
  f->slices.clear();
  return true;
}

}  // namespace datafeed::internal

namespace grpc {

using datafeed::internal::WireFrame;

namespace {
void ReleaseKeepalive(void* user_data) { delete static_cast<std::shared_ptr<void>*>(user_data); }
}  // namespace

Status SerializationTraits<WireFrame, void>::Serialize(const WireFrame& msg, ByteBuffer* bb,
                                                        bool* own_buffer) {
  *own_buffer = true;
  if (msg.end) {
    static const uint8_t kEnd[2] = {0x10, 0x01};  // field 2 (varint) = true
    Slice slice(kEnd, sizeof kEnd);
    ByteBuffer out(&slice, 1);
    bb->Swap(&out);
    return Status::OK;
  }
  if (msg.confirms) {
    uint8_t buf[11];
    const size_t n = datafeed::internal::EncodeVarintField(0x30, msg.acked, buf);
    Slice slice(buf, n);
    ByteBuffer out(&slice, 1);
    bb->Swap(&out);
    return Status::OK;
  }
  if (msg.revoked) {
    uint8_t buf[2 + 11];
    buf[0] = 0x20;  // field 4 (varint) = true
    buf[1] = 0x01;
    const size_t n = 2 + datafeed::internal::EncodeVarintField(0x28, msg.revoked_from, buf + 2);
    Slice slice(buf, n);
    ByteBuffer out(&slice, 1);
    bb->Swap(&out);
    return Status::OK;
  }
  const datafeed::FrameView& f = msg.view.frame();
  uint8_t header[11], trailer[11];
  const size_t hn = datafeed::internal::EncodeFrameHeader(f.size(), header);
  const bool has_position = msg.position != ~uint64_t{0};
  const size_t tn = has_position ? datafeed::internal::EncodeVarintField(0x18, msg.position, trailer) : 0;
  Slice slices[3] = {
      Slice(header, hn),  // copied: a few bytes
      Slice(const_cast<uint8_t*>(f.data()), f.size(), ReleaseKeepalive,
            new std::shared_ptr<void>(msg.view.keepalive())),
      Slice(trailer, tn),
  };
  ByteBuffer out(slices, has_position ? 3 : 2);
  bb->Swap(&out);
  return Status::OK;
}

namespace {
Status DeserializeImpl(ByteBuffer* bb, WireFrame* msg);
}  // namespace

Status SerializationTraits<WireFrame, void>::Deserialize(ByteBuffer* bb, WireFrame* msg) {
  Status st = DeserializeImpl(bb, msg);
  if (!st.ok()) datafeed::internal::NoteWireError(st.error_message());
  return st;
}

namespace {
Status DeserializeImpl(ByteBuffer* bb, WireFrame* msg) {
  std::vector<Slice> slices;
  Status st = bb->Dump(&slices);
  bb->Clear();
  if (!st.ok()) return st;
  // Parse the tag and varint length, which may straddle slices.
  size_t si = 0, off = 0;
  auto next_byte = [&](uint8_t* b) {
    while (si < slices.size() && off >= slices[si].size()) {
      ++si;
      off = 0;
    }
    if (si >= slices.size()) return false;
    *b = slices[si].begin()[off++];
    return true;
  };
  uint8_t tag = 0;
  if (slices.empty() || !next_byte(&tag)) {
    return Status(StatusCode::DATA_LOSS, "empty message where a batch frame was expected");
  }
  auto read_varint = [&](uint64_t* v) {
    *v = 0;
    for (int shift = 0;; shift += 7) {
      uint8_t b = 0;
      if (shift > 63 || !next_byte(&b)) return false;
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
  };
  if (tag == 0x10) {  // end_of_stream
    uint8_t value = 0;
    if (!next_byte(&value) || value != 0x01 || next_byte(&value)) {
      return Status(StatusCode::DATA_LOSS, "malformed end-of-stream message");
    }
    msg->end = true;
    return Status::OK;
  }
  if (tag == 0x20) {  // revoked, then revoked_from
    uint8_t value = 0, tag2 = 0, extra = 0;
    uint64_t from = 0;
    if (!next_byte(&value) || value != 0x01 || !next_byte(&tag2) || tag2 != 0x28 || !read_varint(&from) ||
        next_byte(&extra)) {
      return Status(StatusCode::DATA_LOSS, "malformed revocation message");
    }
    msg->revoked = true;
    msg->revoked_from = from;
    return Status::OK;
  }
  if (tag == 0x30) {  // acked: a confirmation
    uint64_t acked = 0;
    uint8_t extra = 0;
    if (!read_varint(&acked) || next_byte(&extra)) {
      return Status(StatusCode::DATA_LOSS, "malformed confirmation message");
    }
    msg->confirms = true;
    msg->acked = acked;
    return Status::OK;
  }
  if (tag != 0x0A) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%02X", static_cast<unsigned>(tag));
    return Status(StatusCode::DATA_LOSS,
                  std::string("malformed message: expected a Frame (tag 0x0A), got tag 0x") + hex);
  }
  uint64_t len = 0;
  for (int shift = 0;; shift += 7) {
    uint8_t b = 0;
    if (shift > 63 || !next_byte(&b)) return Status(StatusCode::DATA_LOSS, "malformed frame length");
    len |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) break;
  }
  size_t remaining = 0;
  for (size_t i = si; i < slices.size(); ++i) remaining += slices[i].size() - (i == si ? off : 0);
  if (remaining < len) {
    return Status(StatusCode::DATA_LOSS, "malformed message: the frame claims " + std::to_string(len) +
                                             " bytes but " + std::to_string(remaining) + " arrived");
  }
  // After the frame: nothing (protocol 2), or its delivery position (field 3).
  if (remaining > len) {
    // Walk past the frame to its trailer without touching its bytes.
    size_t ti = si, toff = off;
    uint64_t skip = len;
    while (skip > 0) {
      const size_t avail = slices[ti].size() - toff;
      if (skip < avail) {
        toff += skip;
        skip = 0;
      } else {
        skip -= avail;
        ++ti;
        toff = 0;
      }
    }
    size_t save_si = si, save_off = off;
    si = ti;
    off = toff;
    uint8_t t3 = 0, extra = 0;
    uint64_t position = 0;
    if (!next_byte(&t3) || t3 != 0x18 || !read_varint(&position) || next_byte(&extra)) {
      return Status(StatusCode::DATA_LOSS, "malformed message: unexpected bytes after the batch frame");
    }
    msg->position = position;
    si = save_si;
    off = save_off;
  }
  // Keep the slices (no copy here: see TakePayload).
  slices.erase(slices.begin(), slices.begin() + static_cast<long>(si));
  msg->slices = std::move(slices);
  msg->offset = off;
  msg->size = len;
  return Status::OK;
}

}  // namespace

}  // namespace grpc
