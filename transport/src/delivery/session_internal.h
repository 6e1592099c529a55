// The consumer's side of a delivery session (delivery.h), shared by the
// shared-memory and gRPC readers.
//
// A session numbers the batches a reader receives (delivery positions),
// remembers the identities of the last ones (for a resume after the
// connection or the producer was lost), checks each batch it hands out
// against what it handed out before (no identity twice, one run), and
// turns the producer's revocations and welcomes into either "drop what you
// read ahead" (a new generation: views of older generations are stale) or
// Aborted, when batches the trainer already had were taken back.
//
// Thread safety: every method may be called from any thread.
#ifndef DATAFEED_TRANSPORT_SRC_DELIVERY_SESSION_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_DELIVERY_SESSION_INTERNAL_H_

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "datafeed/transport/delivery.h"
#include "datafeed/transport/frame.h"
#include "delivery/ledger_internal.h"

namespace datafeed::internal {

class ConsumerSession {
 public:
  // `uri` names the endpoint in messages.
  ConsumerSession(std::string uri, const SessionOptions& options);

  // The hello of the first connection: NEW (a random id unless one was
  // given) or RESTORE (options.restore).
  Hello FirstHello() const;
  // The hello of a reconnect: RESUME with what was received.
  Hello ResumeHello() const;
  // Applies the producer's welcome (of FirstHello or ResumeHello), with the
  // run it serves (`batches_per_epoch`: its shard's, 0 when it has no
  // run). Aborted when the welcome takes back batches already handed to the
  // trainer; batches received but not handed become stale.
  Status Welcomed(uint64_t consumer_id, uint64_t position, uint64_t fingerprint, uint32_t shard,
                  uint32_t num_shards, uint64_t batches_per_epoch = 0);
  // The producer took back positions >= from (a stall). Aborted when the
  // trainer had some of them (naming them, with `why`); otherwise a new
  // generation starts at `from`.
  Status Revoked(uint64_t from, const std::string& why);

  // A batch arrived: its delivery position, recorded with its identity.
  // `expected_position` (gRPC stamps one; ~0 for none) must match.
  Result<uint64_t> Received(const BatchMeta& meta, uint64_t expected_position);
  // Whether a view of `generation` at `position` may still be handed out.
  bool Current(uint64_t generation, uint64_t position) const;
  // Hands out the batch at `position`: it must be the next one, of the
  // session's run, and not one this session handed out before (DataLoss
  // naming it). Advances handed().
  Status Hand(uint64_t position, const BatchMeta& meta);
  // Everything handed out so far is consumed.
  void Ack();

  bool started() const;  // a welcome was applied
  uint64_t consumer_id() const;
  uint64_t generation() const;
  uint64_t received() const;
  uint64_t handed() const;
  uint64_t acked() const;
  uint64_t fingerprint() const;
  // The run's batches per epoch (its shard's) from the last welcome; 0
  // before the first one or for a producer without a run.
  uint64_t batches_per_epoch() const;
  // The checkpointable position: handed() of this consumer in its run.
  StreamPosition position() const;
  const std::string& uri() const { return uri_; }

 private:
  void NewGenerationLocked(uint64_t from);

  const std::string uri_;
  const SessionOptions options_;
  mutable std::mutex mu_;
  bool started_ = false;
  uint64_t consumer_id_ = 0;
  uint64_t fingerprint_ = 0;
  uint32_t shard_ = 0, num_shards_ = 1;
  uint64_t batches_per_epoch_ = 0;
  uint64_t generation_ = 0;
  uint64_t received_ = 0;  // next delivery position
  uint64_t handed_ = 0;
  uint64_t acked_ = 0;
  // Identities of the last received positions (received_ - tail_.size() ..).
  std::deque<BatchKey> tail_;
  // Identities handed out in this session (epoch -> batch indices), to catch a repeat.
  std::map<uint64_t, std::vector<bool>> handed_keys_;
};

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_DELIVERY_SESSION_INTERNAL_H_
