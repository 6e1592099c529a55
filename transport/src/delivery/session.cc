#include "delivery/session_internal.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <random>

namespace datafeed::internal {
namespace {

// Keys remembered for a resume: at least a ring's worth (a restarted
// producer may not have recorded that many of our claims yet).
constexpr size_t kTailKeys = 1024;
// Keys a checkpoint carries: covers the claims a producer may not have
// recorded when it died (a few service passes' worth).
constexpr uint64_t kStateTail = 32;

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

uint64_t RandomId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) ^ rd();
  return id;
}

}  // namespace

ConsumerSession::ConsumerSession(std::string uri, const SessionOptions& options)
    : uri_(std::move(uri)), options_(options) {
  consumer_id_ = options.consumer_id != 0 ? options.consumer_id : RandomId();
}

Hello ConsumerSession::FirstHello() const {
  std::lock_guard<std::mutex> lock(mu_);
  Hello h;
  h.consumer_id = consumer_id_;
  if (!options_.restore.empty()) {
    h.mode = Hello::Mode::kRestore;
    h.restore = options_.restore;
    h.rank = options_.rank;
    h.world_size = options_.world_size;
    h.generation = options_.generation;
    h.fingerprint = options_.restore.front().fingerprint;
  }
  return h;
}

Hello ConsumerSession::ResumeHello() const {
  std::lock_guard<std::mutex> lock(mu_);
  Hello h;
  h.mode = Hello::Mode::kResume;
  h.consumer_id = consumer_id_;
  h.fingerprint = fingerprint_;
  h.received = received_;
  h.acked = acked_;
  h.tail.assign(tail_.begin(), tail_.end());
  return h;
}

void ConsumerSession::NewGenerationLocked(uint64_t from) {
  ++generation_;
  while (received_ > from && !tail_.empty()) {
    tail_.pop_back();
    --received_;
  }
  received_ = from;
}

Status ConsumerSession::Welcomed(uint64_t consumer_id, uint64_t position, uint64_t fingerprint, uint32_t shard,
                                 uint32_t num_shards, uint64_t batches_per_epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  batches_per_epoch_ = batches_per_epoch;
  if (!started_) {
    started_ = true;
    consumer_id_ = consumer_id;
    fingerprint_ = fingerprint;
    shard_ = shard;
    num_shards_ = num_shards;
    generation_ = 1;
    received_ = handed_ = acked_ = position;
    tail_.clear();
    handed_keys_.clear();
    return Status::OK();
  }
  if (fingerprint_ != 0 && fingerprint != fingerprint_) {
    return Status::DataLoss(uri_ + ": the producer now serves run " + Hex(fingerprint) + ", not run " +
                            Hex(fingerprint_) + " this consumer was reading; its batches cannot continue that run");
  }
  // A position past received_ is fine: the transport holds batches the
  // session has not taken yet (gRPC frames in its queue).
  if (handed_ > position) {
    std::vector<BatchKey> lost;
    const uint64_t tail_start = received_ - tail_.size();
    for (uint64_t p = std::max(position, tail_start); p < handed_; ++p) lost.push_back(tail_[p - tail_start]);
    return Status::Aborted(uri_ + ": batches this trainer already had (" + ToString(lost) +
                           ") were given to other consumers while it was disconnected; do not trust the "
                           "step that used them: restore the last checkpoint");
  }
  if (position < received_) NewGenerationLocked(position);
  return Status::OK();
}

Status ConsumerSession::Revoked(uint64_t from, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (from >= received_) return Status::OK();  // nothing we have
  if (handed_ > from) {
    std::vector<BatchKey> lost;
    const uint64_t tail_start = received_ - tail_.size();
    for (uint64_t p = std::max(from, tail_start); p < handed_; ++p) lost.push_back(tail_[p - tail_start]);
    return Status::Aborted(uri_ + ": " + why + "; batches this trainer already had (" + ToString(lost) +
                           ") were given to other consumers. Raise the producer's --consumer-timeout above "
                           "the longest time between two Next() calls, and restore the last checkpoint");
  }
  NewGenerationLocked(from);
  return Status::OK();
}

Result<uint64_t> ConsumerSession::Received(const BatchMeta& meta, uint64_t expected_position) {
  std::lock_guard<std::mutex> lock(mu_);
  if (expected_position != ~uint64_t{0} && expected_position != received_) {
    return Status::DataLoss(uri_ + ": the producer sent delivery position " + std::to_string(expected_position) +
                            " but this consumer expected " + std::to_string(received_) + " (" +
                            (expected_position > received_ ? "batches were lost on the way" : "a batch came twice") +
                            ")");
  }
  const uint64_t position = received_++;
  tail_.push_back({meta.epoch, meta.batch_index});
  if (tail_.size() > kTailKeys) tail_.pop_front();
  return position;
}

bool ConsumerSession::Current(uint64_t generation, uint64_t position) const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation == generation_ && position >= handed_ && position < received_;
}

Status ConsumerSession::Hand(uint64_t position, const BatchMeta& meta) {
  std::lock_guard<std::mutex> lock(mu_);
  if (position != handed_) {
    return Status::Internal(uri_ + ": batch at delivery position " + std::to_string(position) +
                            " handed out when position " + std::to_string(handed_) + " was due");
  }
  if (meta.fingerprint != 0) {
    if (fingerprint_ != 0 && meta.fingerprint != fingerprint_) {
      return Status::DataLoss(uri_ + ": received " + BatchIdString(meta) + " of another run than " + Hex(fingerprint_) +
                              " (the producer was restarted with other flags?)");
    }
    std::vector<bool>& bits = handed_keys_[meta.epoch];
    if (bits.size() <= meta.batch_index) bits.resize(meta.batch_index + 1);
    if (bits[meta.batch_index]) {
      return Status::DataLoss(uri_ + ": received " + BatchIdString(meta) +
                              " a second time (a producer restarted without its --state-dir replays its run)");
    }
    bits[meta.batch_index] = true;
  }
  ++handed_;
  return Status::OK();
}

void ConsumerSession::Ack() {
  std::lock_guard<std::mutex> lock(mu_);
  acked_ = handed_;
}

bool ConsumerSession::started() const {
  std::lock_guard<std::mutex> lock(mu_);
  return started_;
}
uint64_t ConsumerSession::consumer_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return consumer_id_;
}
uint64_t ConsumerSession::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}
uint64_t ConsumerSession::received() const {
  std::lock_guard<std::mutex> lock(mu_);
  return received_;
}
uint64_t ConsumerSession::handed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handed_;
}
uint64_t ConsumerSession::acked() const {
  std::lock_guard<std::mutex> lock(mu_);
  return acked_;
}
uint64_t ConsumerSession::fingerprint() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fingerprint_;
}

uint64_t ConsumerSession::batches_per_epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return batches_per_epoch_;
}

StreamPosition ConsumerSession::position() const {
  std::lock_guard<std::mutex> lock(mu_);
  StreamPosition p;
  p.fingerprint = fingerprint_;
  p.shard = shard_;
  p.num_shards = num_shards_;
  p.consumer_id = consumer_id_;
  p.position = handed_;
  // The last handed identities (a restarted producer may not have recorded them).
  const uint64_t tail_start = received_ - tail_.size();
  const uint64_t from = std::max<uint64_t>(tail_start, handed_ >= kStateTail ? handed_ - kStateTail : 0);
  for (uint64_t q = from; q < handed_; ++q) p.tail.push_back(tail_[q - tail_start]);
  return p;
}

}  // namespace datafeed::internal
