// The producer's delivery ledger: who holds which batch of the run.
//
// One Ledger per writer (a shared-memory ring, or a gRPC server with the
// ring behind it). Transports report what happens to batches and consumers;
// the ledger decides what must be made again and journals positions so a
// restarted producer goes on where it was. delivery.h states the contract;
// docs/DESIGN.md ("Delivery contract") has the reasoning.
//
// Model.
// * A consumer has an id (64-bit, chosen by the consumer) and a log: the
//   keys delivered to it, in the order it received them. Position p of the
//   log is the consumer's p-th batch. `acked` counts the consumed prefix.
//   Everything after `acked` is leased.
// * A session is one connection of a consumer (a ring reader, a gRPC
//   stream). At most one session speaks for a consumer; a new one
//   supersedes the old.
// * Every key of the run below the cursor (the next fresh batch) is in one
//   state: in the ring waiting for a reader, queued to be made again, being
//   made again, or owned by one consumer's log. Truncating a log (a lost
//   lease, a restored checkpoint, a reconnect that did not receive
//   everything) queues the keys after the cut to be made again.
//
// Journal (Options::state_dir): fixed 32-byte records (type, checksum, three
// 64-bit words), appended with write() before the event is visible to
// anyone (a publish, a gRPC send), so a producer killed with -9 loses
// nothing the kernel has; fsync()ed every second (Sync) for power loss. A
// torn record at the end is ignored. Compacted (rewritten from memory and
// renamed into place) when it grows past 64 MiB.
//
// Thread safety: every method may be called from any thread.
#ifndef DATAFEED_TRANSPORT_SRC_DELIVERY_LEDGER_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_DELIVERY_LEDGER_INTERNAL_H_

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "datafeed/transport/deadline.h"
#include "datafeed/transport/delivery.h"
#include "datafeed/transport/status.h"

namespace datafeed::internal {

using LedgerClock = std::chrono::steady_clock;

// A session's opening request (the SessionHello message, without protobuf).
struct Hello {
  enum class Mode { kNew, kResume, kRestore };
  Mode mode = Mode::kNew;
  uint64_t consumer_id = 0;
  uint64_t fingerprint = 0;  // the run the consumer expects; 0: any
  // kResume
  uint64_t received = 0;
  uint64_t acked = 0;
  std::vector<BatchKey> tail;  // keys of positions received - tail.size() .. received - 1
  // kRestore
  std::vector<StreamPosition> restore;
  uint32_t rank = 0;
  uint32_t world_size = 0;
  uint64_t generation = 0;
};

// The ledger's answer to a Hello.
struct Welcome {
  uint64_t session = 0;
  uint64_t consumer_id = 0;
  uint64_t position = 0;  // the delivery position of the session's next batch
  std::string summary;
};

// Leases a consumer lost while its session lives (it stalled): positions
// >= from were taken back.
struct Revocation {
  uint64_t session = 0;
  uint64_t consumer_id = 0;
  uint64_t from = 0;
  std::vector<BatchKey> keys;
};

enum class CloseKind {
  kClean,           // the consumer closed: its leases go back at once
  kDied,            // its process died (shm liveness lock): what it read ahead
                    // goes back at once; what its trainer held is kept for the
                    // grace period (it may have been checkpointed: a restart
                    // that restores that checkpoint keeps it)
  kLostConnection,  // a stream broke: leases kept for the grace period
};

using LedgerStats = DeliveryStats;

// One journal record as the file holds it (type, checksum, three 64-bit
// words; 32 bytes). The ledger writes every record with it; the journal
// fuzzer (tests/fuzz/journal_fuzz.cc) builds journals with it.
using JournalRecordBytes = std::array<uint8_t, 32>;
JournalRecordBytes JournalRecord(uint8_t type, uint64_t a, uint64_t b, uint64_t c);


class Ledger {
 public:
  struct Options {
    std::string name;                       // the endpoint, for messages
    std::string state_dir;                  // "" = positions in memory only
    int64_t consumer_timeout_ms = 30'000;   // stall limit and reconnect grace
    // Once every batch was acknowledged, WaitForWork says kDone only after
    // this long without a batch to make again (a trainer restoring a
    // checkpoint at the very end of the run).
    int64_t finish_grace_ms = 0;
  };
  static Result<std::unique_ptr<Ledger>> Create(const Options& options);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // ---- producer side
  // Once, before anything else: opens (or starts) the journal. A journal of
  // another run (fingerprint, shard or batches per epoch differ) is
  // FailedPrecondition naming both and the fix.
  Result<RunStart> BeginRun(const RunInfo& run);
  bool begun() const;
  // A batch goes into the ring. `fresh`: first time (journaled; moves the
  // cursor). AlreadyExists for a batch made again that a reconnecting
  // consumer showed it still had: drop it instead of publishing.
  Status Published(const BatchKey& key, bool fresh);
  // The oldest batch to make again, now marked as being made.
  std::optional<BatchKey> TakeRemake();
  // A batch taken with TakeRemake was not published after all (the
  // producer stopped): queue it again.
  void Unmade(const BatchKey& key);
  enum class Work { kRemake, kDone, kWait };
  // Waits up to `deadline` until a batch must be made again (kRemake) or
  // every batch of the run was made and acknowledged (kDone); kWait when the
  // deadline passed first. For a producer whose fresh batches are all made.
  Work WaitForWork(Deadline deadline);
  // Wakes WaitForWork callers (shutdown).
  void Interrupt();
  // The writer closed its stream: nothing can be delivered any more, so a
  // session that rolls batches back is refused (they are made again by a
  // producer restarted on the journal).
  void SetClosed();

  // ---- sessions
  // Opens a session for a consumer. Refusals: FailedPrecondition (another
  // run, a checkpoint of a consumer this producer does not know), DataLoss
  // (a checkpoint or resume the ledger contradicts, naming the batches).
  Result<Welcome> Open(const Hello& hello, const std::string& peer, LedgerClock::time_point now);
  // `key` was delivered to the session (its next position). Aborted if the
  // session was superseded or closed; Internal if `key` was not in the ring.
  Status Delivered(uint64_t session, const BatchKey& key);
  // A batch in the ring was claimed by a reader that may not keep it (it
  // had no session, or claimed it after losing its leases): make it again.
  void Returned(const BatchKey& key);
  // The consumer acknowledged positions < acked; its trainer last called
  // Next() at `active_at`.
  void Progress(uint64_t session, uint64_t acked, LedgerClock::time_point active_at);
  // `handed` (kDied): the consumer's count of batches given to its trainer.
  void Close(uint64_t session, CloseKind kind, LedgerClock::time_point now, uint64_t handed = ~uint64_t{0});
  // False once the session was closed or superseded.
  bool Live(uint64_t session) const;
  // Sessions open now (consumers that may still take a batch).
  size_t LiveSessions() const;
  // The consumer's log length (its next delivery position).
  uint64_t Position(uint64_t session) const;
  // Stalls and lost connections past the grace period: truncates their
  // logs and returns the stalled live sessions' revocations.
  std::vector<Revocation> Tick(LedgerClock::time_point now);

  // fsync()s the journal (call about once a second).
  void Sync();
  LedgerStats stats() const;
  const RunInfo& run() const { return run_; }

 private:
  struct Consumer;
  struct Session;
  struct Slot;
  explicit Ledger(const Options& options);

  Status OpenJournalLocked(RunStart* start);
  Status ReplayLocked(const std::string& path, RunStart* start);
  Status AppendLocked(uint8_t type, uint64_t a, uint64_t b, uint64_t c);
  Status CompactLocked();
  Slot* SlotLocked(const BatchKey& key);
  // Every change of a slot's state goes through here (keeps the counts).
  void SetLocked(Slot* slot, uint8_t state, uint32_t ref);
  uint32_t RefLocked(uint64_t consumer_id, bool journal);
  void TruncateLocked(uint32_t ref, uint64_t len, bool lease_loss, bool journal);
  void SupersedeLocked(uint32_t ref);
  bool DoneLocked() const;
  bool HoldingLocked();
  BatchKey NextKeyLocked(const BatchKey& key) const;
  Result<Welcome> OpenRestoreLocked(const Hello& hello, uint64_t session);
  Result<Welcome> OpenResumeLocked(const Hello& hello, uint64_t session);

  const Options options_;
  RunInfo run_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  bool begun_ = false;
  bool interrupted_ = false;
  bool closed_ = false;
  bool replayed_ = false;  // started from a journal: not done before hold_until_
  LedgerClock::time_point done_since_;  // when DoneLocked last became true
  bool was_done_ = false;

  // Run state.
  BatchKey cursor_;                      // the next fresh batch
  std::map<uint64_t, std::vector<Slot>> epochs_;  // per epoch: every batch's state
  std::set<BatchKey> remake_;            // queued to be made again, oldest first
  uint64_t counts_[5] = {};              // slots per state (in ring, queued, making, owned)
  std::vector<std::unique_ptr<Consumer>> consumers_;   // ref - 1
  std::unordered_map<uint64_t, uint32_t> refs_;        // consumer id -> ref
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  uint64_t next_session_ = 1;
  std::set<std::pair<uint64_t, uint64_t>> group_restores_;  // (digest, pair) done
  // After a restart: consumers that were connected, and until when nothing
  // is made again while they may still come back and say what they hold.
  std::set<uint32_t> awaiting_;
  LedgerClock::time_point hold_until_;

  // Journal.
  int fd_ = -1;
  int lock_fd_ = -1;
  std::string journal_path_;
  uint64_t journal_bytes_ = 0;
  LedgerClock::time_point last_sync_;

  LedgerStats stats_;
};

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_DELIVERY_LEDGER_INTERNAL_H_
