// The delivery contract: batch identity, leases, sessions, checkpoints.
//
// Every batch a Producer publishes has an identity (BatchMeta in frame.h:
// run fingerprint, shard, epoch, index in the epoch) and bytes that are a
// pure function of it, so any batch can be made again, bit-identical. On top
// of that the transports keep a ledger on the producer's side:
//
//  * Lease. A batch handed to a consumer is leased to it until the consumer
//    acknowledges it, which it does by asking for the next batch (Next()).
//    A consumer that dies, closes, or holds leases without calling Next()
//    for longer than WriterOptions::consumer_timeout_ms loses its leases;
//    those batches are made again and go to other consumers. A consumer
//    that loses a batch it had already handed to its trainer gets Aborted
//    naming it; one that lost only batches it had read ahead goes on.
//  * Session. A consumer has a 64-bit consumer id. A reader that loses its
//    connection (gRPC, or a restarted producer on either transport)
//    reconnects with the same id and says what it received, so it sees
//    neither a gap nor a duplicate.
//  * Checkpoint. A consumer's position is the number of batches it has
//    handed to its trainer. A ConsumerState (Consumer::state()) records it;
//    opening a reader with that state (ReaderOptions::restore) makes
//    everything the consumer was given after that position come again, and
//    nothing before it.
//  * Journal. With WriterOptions::state_dir the producer journals its
//    positions, so a producer killed and restarted with the same flags goes
//    on where it was instead of starting epoch 0 again.
//
// docs/DESIGN.md ("Delivery contract") has the reasoning and the failure
// table.
#ifndef DATAFEED_TRANSPORT_DELIVERY_H_
#define DATAFEED_TRANSPORT_DELIVERY_H_

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {

// A batch of a run, as a ledger names it: (epoch, index in the epoch).
struct BatchKey {
  uint64_t epoch = 0;
  uint64_t index = 0;
  bool operator==(const BatchKey& o) const { return epoch == o.epoch && index == o.index; }
  bool operator!=(const BatchKey& o) const { return !(*this == o); }
  bool operator<(const BatchKey& o) const {
    return epoch != o.epoch ? epoch < o.epoch : index < o.index;
  }
};

// "epoch 2 batch 17".
std::string ToString(const BatchKey& key);
// "epoch 2 batch 17, epoch 2 batch 18, ... (12 in all)": at most `max` named.
std::string ToString(const std::vector<BatchKey>& keys, size_t max = 8);

// What a producer tells its writer before the first batch (BatchWriter::BeginRun).
struct RunInfo {
  static constexpr uint64_t kEndless = std::numeric_limits<uint64_t>::max();
  uint64_t fingerprint = 0;        // the run (see BatchMeta); never 0
  uint32_t shard = 0;
  uint32_t num_shards = 1;
  uint64_t batches_per_epoch = 0;  // this shard's
  uint64_t first_epoch = 0;        // where a fresh run starts
  uint64_t num_epochs = 1;         // from first_epoch; kEndless = forever
};

// Where the producer goes on (BatchWriter::run_start()).
struct RunStart {
  RunInfo run;                // the writer's run
  BatchKey next;              // the first batch never made before
  bool finished = false;      // every batch of the run was made already
  bool resumed = false;       // positions came from the journal
  uint64_t remakes = 0;       // batches to make again before going on
  std::string summary;        // one line for the log
};

// A writer's delivery counters (BatchWriter::delivery_stats()).
struct DeliveryStats {
  uint64_t consumers = 0;        // consumer ids the producer knows
  uint64_t live_sessions = 0;    // consumers connected now
  uint64_t delivered = 0;        // deliveries recorded
  uint64_t remade = 0;           // batches queued to be made again
  uint64_t leases_lost = 0;      // consumers that died, stalled or lost their connection with leases
  uint64_t restores = 0;         // checkpoints restored
  uint64_t journal_records = 0;  // journal records written (32 bytes each)
  uint64_t journal_bytes = 0;    // the journal's size now
  double journal_write_s = 0;    // time spent writing the journal
};

// One consumer's position in one producer's run: what a checkpoint keeps.
struct StreamPosition {
  uint64_t fingerprint = 0;
  uint32_t shard = 0;
  uint32_t num_shards = 1;
  uint64_t consumer_id = 0;
  // Batches this consumer handed to its trainer (its delivery positions
  // 0 .. position-1 are consumed).
  uint64_t position = 0;
  // The identities of its last batches (positions position - tail.size() ..
  // position - 1): a producer that died before recording those deliveries
  // learns them from the checkpoint.
  std::vector<BatchKey> tail;
};

// A consumer's checkpointable state. Value type.
struct ConsumerState {
  static constexpr int kVersion = 1;
  // One entry per producer run the consumer reads (several when it reads
  // several producers: an endpoint list or a DNS name).
  std::vector<StreamPosition> streams;

  // {"version":1,"streams":[{"fingerprint":"0x..","shard":0,"num_shards":1,
  //  "consumer":"0x..","position":12}]}: 64-bit values as hex strings so any
  // JSON reader keeps them exact.
  std::string ToJson() const;
  // InvalidArgument naming what is wrong (not JSON, another version, a
  // missing field).
  static Result<ConsumerState> FromJson(std::string_view json);
  // One state (an object) or a group's states (a JSON array of them), as a
  // group restore takes them.
  static Result<std::vector<ConsumerState>> ListFromJson(std::string_view json);
};

// How a reader opens its session (ReaderOptions::session).
struct SessionOptions {
  // 0: a fresh random id. Otherwise continue this consumer (a restart with
  // the same id and no checkpoint is a resume at the producer's count).
  uint64_t consumer_id = 0;
  // A checkpoint to restore: one StreamPosition (this consumer's own), or
  // several (every rank's state of a group that is restarting, possibly
  // with another world size: see `rank`).
  std::vector<StreamPosition> restore;
  // Group restore: this consumer's rank and the new group's size. Every
  // rank passes the same `restore` list; the producer rolls back each old
  // consumer to its position once and gives this rank a consumer id derived
  // from (list, rank, world_size, generation).
  uint32_t rank = 0;
  uint32_t world_size = 0;    // 0: not a group restore
  uint64_t generation = 0;    // distinguishes two restarts from the same checkpoint
};

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_DELIVERY_H_
