// The shared-memory ring: a named POSIX shared-memory segment (created and
// mapped with boost.interprocess) holding a control header and N fixed-size
// slots, one frame per slot.
//
// Protocol (all state is lock-free atomics in the segment, so a process that
// dies at any instruction leaves no lock held):
//
// * Each slot has one 64-bit word: state (FREE, LOANED, READY, READING),
//   the reading consumer's id and the batch's 48-bit sequence number.
// * The producer loans any FREE slot (CAS FREE->LOANED), fills it, and
//   publishes it under a process-local mutex: queue[seq % N] = slot,
//   word = READY|seq, publish_seq = seq + 1.
// * A consumer claims sequence c = claim_seq by CAS on the slot word
//   (READY|c -> READING|me|c), then advances claim_seq (any consumer that
//   finds c already claimed helps advance it, so a consumer dying between
//   the two steps blocks nobody). One CAS decides who gets a batch: exactly
//   once, in order.
// * Releasing a slot is a CAS READING|me -> FREE.
// * Sleeping uses futexes on two counters (data published, space freed), with
//   waiter counts so the fast path makes no system call.
//
// Liveness uses open-file-description byte-range locks on the segment file:
// the producer holds byte 0, consumer k holds byte 1 + k. The kernel drops a
// lock when its process dies, so F_OFD_GETLK answers "is it alive" without
// pids (no pid reuse, no pid namespaces). A consumer blocked in Next() checks
// the producer every liveness_check_ms; the producer reclaims slots of dead
// consumers when it waits for space.
#ifndef DATAFEED_TRANSPORT_SRC_SHM_SHM_RING_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_SHM_SHM_RING_INTERNAL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <sys/types.h>

#include "datafeed/transport/deadline.h"
#include "datafeed/transport/status.h"

namespace boost::interprocess {
class shared_memory_object;
class mapped_region;
}  // namespace boost::interprocess

namespace datafeed::internal {

inline constexpr size_t kShmMaxSlots = 1024;
inline constexpr size_t kShmMaxReaders = 256;
inline constexpr uint64_t kShmMagic = 0x31304D4853464444ull;  // "DDFSHM01"
inline constexpr uint32_t kShmVersion = 1;

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
  alignas(64) std::atomic<uint64_t> publish_seq;
  alignas(64) std::atomic<uint64_t> claim_seq;
  alignas(64) std::atomic<uint32_t> data_futex;   // bumped on publish and close
  std::atomic<uint32_t> reader_waiters;
  alignas(64) std::atomic<uint32_t> space_futex;  // bumped on release
  std::atomic<uint32_t> writer_waiters;
  alignas(64) std::atomic<uint32_t> closed;
  alignas(64) std::atomic<uint32_t> queue[kShmMaxSlots];
  alignas(64) std::atomic<uint64_t> slot_word[kShmMaxSlots];
};

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint32_t>) == 4, "futex words must be 32-bit");

// One mapped segment, either side. Thread-safe.
class ShmSegment {
 public:
  ~ShmSegment();

  // Creates segment NAME for a producer, replacing a stale one left by a
  // dead producer. AlreadyExists if a live producer holds it;
  // ResourceExhausted if /dev/shm lacks room (says how much is needed).
  static Result<std::unique_ptr<ShmSegment>> Create(const std::string& name, size_t slot_count,
                                                    size_t slot_bytes);
  // Opens NAME for a consumer, waiting up to `deadline` for a producer to
  // create it. Registers the consumer (takes a reader lock byte).
  static Result<std::unique_ptr<ShmSegment>> Open(const std::string& name, Deadline deadline);

  ShmControl* control() { return control_; }
  uint8_t* slot(size_t i) { return base_ + control_->slots_offset + i * control_->slot_bytes; }
  size_t slot_count() const { return control_->slot_count; }
  size_t slot_bytes() const { return control_->slot_bytes; }
  const std::string& name() const { return name_; }
  int reader_id() const { return reader_id_; }

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
  std::unique_ptr<boost::interprocess::shared_memory_object> shm_;
  std::unique_ptr<boost::interprocess::mapped_region> region_;
  int fd_ = -1;
  uint8_t* base_ = nullptr;
  size_t mapped_bytes_ = 0;
  ShmControl* control_ = nullptr;
  int reader_id_ = -1;
  bool unlinked_ = false;
  bool owner_ = false;
};

// Slot word encoding.
enum class SlotState : uint64_t { kFree = 0, kLoaned = 1, kReady = 2, kReading = 3 };
inline constexpr uint64_t kSeqMask = (uint64_t{1} << 48) - 1;
inline uint64_t MakeWord(SlotState s, uint64_t owner, uint64_t seq) {
  return (static_cast<uint64_t>(s) << 62) | ((owner & 0x3FFF) << 48) | (seq & kSeqMask);
}
inline SlotState WordState(uint64_t w) { return static_cast<SlotState>(w >> 62); }
inline int WordOwner(uint64_t w) { return static_cast<int>((w >> 48) & 0x3FFF); }
inline uint64_t WordSeq(uint64_t w) { return w & kSeqMask; }

// "shm://NAME" for messages.
std::string ShmUri(const std::string& name);
// The file name under /dev/shm.
std::string ShmObjectName(const std::string& name);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_SHM_SHM_RING_INTERNAL_H_
