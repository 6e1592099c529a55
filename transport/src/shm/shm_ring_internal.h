// The shared-memory ring: a named POSIX shared-memory segment holding a
// control block, a registry of readers, a mailbox and N fixed-size slots,
// one frame per slot.
//
// Protocol (all state is lock-free atomics in the segment, so a process that
// dies at any instruction leaves no lock held):
//
// * Each slot has one 64-bit word: state (3 bits), the owning reader's id
//   (13 bits) and the batch's 48-bit publication sequence number.
//   FREE -> LOANED (producer) -> READY (published) -> READING (a reader
//   claimed it) -> HANDED (the reader gave it to its trainer) -> RELEASED
//   (the trainer dropped it) -> FREE (producer, after recording who had it).
// * The producer loans any FREE slot, fills it and publishes it under a
//   process-local mutex: queue[seq % N] = slot, word = READY|seq,
//   publish_seq = seq + 1.
// * A reader claims sequence c = claim_seq by CAS on the slot word
//   (READY|c -> READING|me|c), then advances claim_seq (a reader that finds
//   c already claimed helps advance it, so one dying between the two steps
//   blocks nobody). One CAS decides who gets a batch: exactly once, in order.
// * The producer records claims in sequence order (every claim below
//   claim_seq is complete), so it knows each reader's deliveries in the
//   order the reader received them: the delivery ledger
//   (delivery/ledger_internal.h) keeps them, and only the producer turns a
//   RELEASED slot FREE again, after recording it.
// * Sleeping uses futexes on counters (data published, space freed, control
//   requests), with waiter counts so the fast path makes no system call.
//
// Sessions. A reader opens a session through the mailbox (one at a time,
// owned by CAS; a dead owner's hold is broken by the next one): it writes a
// SessionHello (proto/datafeed.proto), the producer answers with a
// SessionWelcome or an error. Each reader's registry entry then carries its
// progress (acked, handed, last Next() time: written by the reader, never
// trusted by the producer beyond clamping) and the producer's revocations
// (a stalled reader's leases taken back).
//
// Liveness uses open-file-description byte-range locks on the segment file:
// the producer holds byte 0, reader k holds byte 1 + k. The kernel drops a
// lock when its process dies, so F_OFD_GETLK answers "is it alive" without
// pids (no pid reuse, no pid namespaces).
//
// Trust. A segment is attached only when it belongs to this user (or a uid
// the reader names) and is not readable or writable by others. Its sizes are
// read once, validated with overflow-checked arithmetic and kept in private
// memory; only slot words, queue entries, counters and the mailbox are read
// from the segment afterwards, and each is bounds-checked before use. Frame
// headers are parsed from a private copy.
//
// Creation. A producer builds a new segment under a temporary name, locks
// it, and renames it into place; a stale segment (its producer's lock is
// free) is replaced only by the process that takes its lock byte 0, so of
// two producers starting on one stale name exactly one wins.
#ifndef DATAFEED_TRANSPORT_SRC_SHM_SHM_RING_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_SHM_SHM_RING_INTERNAL_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "datafeed/transport/deadline.h"
#include "datafeed/transport/status.h"

namespace datafeed::internal {

inline constexpr size_t kShmMaxSlots = 1024;
inline constexpr size_t kShmMaxReaders = 256;
inline constexpr size_t kShmMailboxBytes = 64 * 1024;
inline constexpr uint64_t kShmMagic = 0x32304D4853464444ull;  // "DDFSHM02"
inline constexpr uint32_t kShmVersion = 2;

// A reader's registry entry.
struct alignas(64) ShmReaderEntry {
  // Written by the reader.
  std::atomic<uint64_t> acked;         // delivery positions < acked are consumed
  std::atomic<uint64_t> handed;        // positions < handed were given to the trainer
  std::atomic<uint64_t> last_next_ns;  // CLOCK_MONOTONIC of its trainer's last Next()
  std::atomic<uint64_t> revoke_ack;    // revocations it has processed
  std::atomic<uint64_t> resume_seq;    // its claims from this sequence on follow that processing
  // Written by the producer.
  std::atomic<uint64_t> revokes;       // revocations so far
  std::atomic<uint64_t> revoked_from;  // delivery position the last one took back from
  std::atomic<uint32_t> fenced;        // the session is over (superseded, retired)
  std::atomic<uint32_t> reserved;
};

// Session requests: one reader at a time.
struct alignas(64) ShmMailbox {
  std::atomic<uint32_t> owner;     // 0: free; 1 + reader id holding it
  std::atomic<uint32_t> state;     // futex word: kIdle, kRequest, kResponse
  std::atomic<uint32_t> request_bytes;
  std::atomic<uint32_t> response_bytes;
  alignas(64) uint8_t data[kShmMailboxBytes];
};
enum : uint32_t { kMailboxIdle = 0, kMailboxRequest = 1, kMailboxResponse = 2 };

// The control block at offset 0 of the segment.
struct ShmControl {
  std::atomic<uint64_t> magic;  // stored last, with release, once initialised
  uint32_t version;
  uint32_t slot_count;
  uint64_t slot_bytes;    // multiple of 4096
  uint64_t slots_offset;  // multiple of 4096
  uint64_t total_bytes;
  uint64_t producer_id;   // random per producer instance
  int32_t producer_pid;   // for messages only; liveness uses the lock
  uint32_t producer_uid;
  alignas(64) std::atomic<uint64_t> publish_seq;
  alignas(64) std::atomic<uint64_t> claim_seq;
  alignas(64) std::atomic<uint32_t> data_futex;   // bumped on publish and close
  std::atomic<uint32_t> reader_waiters;
  alignas(64) std::atomic<uint32_t> space_futex;  // bumped on release
  std::atomic<uint32_t> writer_waiters;
  alignas(64) std::atomic<uint32_t> control_futex;  // bumped by readers: a request, an ack
  std::atomic<uint32_t> control_waiters;            // the producer's service thread sleeps
  std::atomic<uint32_t> wants_acks;                 // the producer waits for the last acks
  alignas(64) std::atomic<uint32_t> closed;
  alignas(64) std::atomic<uint32_t> queue[kShmMaxSlots];
  alignas(64) std::atomic<uint64_t> slot_word[kShmMaxSlots];
  ShmReaderEntry readers[kShmMaxReaders];
  ShmMailbox mailbox;
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint32_t>) == 4, "futex words must be 32-bit");

// Who may own a segment a reader attaches: the reader's own uid, or one it names.
struct ShmTrust {
  uint32_t uid = 0;
  bool any_uid = false;  // trust the segment's owner whoever it is (not recommended)
};

// One mapped segment, either side. Thread-safe. Sizes are private copies,
// validated when the segment was opened.
class ShmSegment {
 public:
  ~ShmSegment();

  // Creates segment NAME for a producer, replacing a stale one left by a
  // dead producer. AlreadyExists if a live producer holds it;
  // ResourceExhausted if /dev/shm lacks room (says how much is needed).
  static Result<std::unique_ptr<ShmSegment>> Create(const std::string& name, size_t slot_count,
                                                    size_t slot_bytes);
  // Opens NAME for a consumer, waiting up to `deadline` for a producer to
  // create it. Takes a reader id (lock byte). The segment must belong to
  // `trust` and be private to its owner (FailedPrecondition otherwise, naming
  // owner and mode); a control block that does not add up is DataLoss.
  static Result<std::unique_ptr<ShmSegment>> Open(const std::string& name, Deadline deadline,
                                                  const ShmTrust& trust);

  ShmControl* control() { return control_; }
  uint8_t* slot(size_t i) { return base_ + slots_offset_ + i * slot_bytes_; }
  size_t slot_count() const { return slot_count_; }
  size_t slot_bytes() const { return slot_bytes_; }
  const std::string& name() const { return name_; }
  int reader_id() const { return reader_id_; }
  uint64_t producer_id() const { return producer_id_; }

  bool ProducerAlive() const;
  bool ReaderAlive(int reader_id) const;
  // Removes the name from /dev/shm (mapped views stay valid).
  void Unlink();

  // Futex helpers on a word inside the segment (cross-process).
  static void Wait(std::atomic<uint32_t>* word, uint32_t seen, std::chrono::nanoseconds timeout);
  static void Wake(std::atomic<uint32_t>* word, int count);

 private:
  ShmSegment() = default;
  bool LockHeld(off_t byte) const;

  std::string name_;
  int fd_ = -1;
  uint8_t* base_ = nullptr;
  size_t mapped_bytes_ = 0;
  ShmControl* control_ = nullptr;
  size_t slot_count_ = 0;
  size_t slot_bytes_ = 0;
  size_t slots_offset_ = 0;
  uint64_t producer_id_ = 0;
  int reader_id_ = -1;
  bool unlinked_ = false;
  bool owner_ = false;
};

// Slot word encoding.
enum class SlotState : uint64_t {
  kFree = 0,
  kLoaned = 1,
  kReady = 2,
  kReading = 3,
  kHanded = 4,
  kReleased = 5,
};
inline constexpr uint64_t kSeqMask = (uint64_t{1} << 48) - 1;
inline constexpr uint64_t kOwnerMask = 0x1FFF;
inline uint64_t MakeWord(SlotState s, uint64_t owner, uint64_t seq) {
  return (static_cast<uint64_t>(s) << 61) | ((owner & kOwnerMask) << 48) | (seq & kSeqMask);
}
inline SlotState WordState(uint64_t w) { return static_cast<SlotState>(w >> 61); }
inline int WordOwner(uint64_t w) { return static_cast<int>((w >> 48) & kOwnerMask); }
inline uint64_t WordSeq(uint64_t w) { return w & kSeqMask; }

// CLOCK_MONOTONIC in nanoseconds (the clock std::chrono::steady_clock uses
// on Linux; comparable across processes).
uint64_t MonotonicNanos();

// "shm://NAME" for messages.
std::string ShmUri(const std::string& name);
// The file name under /dev/shm.
std::string ShmObjectName(const std::string& name);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_SHM_SHM_RING_INTERNAL_H_
