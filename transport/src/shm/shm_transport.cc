// BatchWriter / BatchReader over the shared-memory ring (shm_ring_internal.h
// describes the protocol).
#include <climits>
#include <cstring>
#include <mutex>
#include <thread>

#include "datafeed/transport/transport.h"
#include "shm/shm_ring_internal.h"
#include "transports_internal.h"


namespace datafeed::internal {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

// How often a producer waiting for space looks for slots held by dead readers.
constexpr milliseconds kReclaimInterval{100};

std::string MiBString(size_t bytes) {
  return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB";
}

class ShmWriter final : public BatchWriter, public LoanOwner {
 public:
  ShmWriter(std::unique_ptr<ShmSegment> seg, int64_t linger_ms)
      : seg_(std::move(seg)), linger_ms_(linger_ms) {}
  ~ShmWriter() override {
    (void)Close();
    ShmControl* c = seg_->control();
    const Deadline linger = Deadline::AfterMillis(linger_ms_);
    while (c->claim_seq.load() < c->publish_seq.load() && !linger.expired()) {
      const uint32_t seen = c->space_futex.load();
      if (c->claim_seq.load() >= c->publish_seq.load()) break;
      c->writer_waiters.fetch_add(1);
      ShmSegment::Wait(&c->space_futex, seen, std::min<nanoseconds>(linger.remaining(), milliseconds(10)));
      c->writer_waiters.fetch_sub(1);
    }
    // seg_'s destructor unlinks the name; readers already attached keep
    // their mapping and drain what was published.
  }

  Result<WritableBatch> Loan(std::shared_ptr<const BatchLayout> layout,
                             Deadline deadline) override {
    if (!layout) return Status::InvalidArgument("Loan: null layout");
    if (layout->frame_bytes() > seg_->slot_bytes()) {
      return Status::ResourceExhausted(
          ShmUri(seg_->name()) + ": a batch needs " + MiBString(layout->frame_bytes()) +
          " but slots are " + MiBString(seg_->slot_bytes()) + "; raise the slot size (--slot-bytes)");
    }
    ShmControl* c = seg_->control();
    const size_t n = seg_->slot_count();
    auto next_reclaim = steady_clock::now() + kReclaimInterval;
    for (;;) {
      if (c->closed.load(std::memory_order_acquire)) {
        return Status::FailedPrecondition(ShmUri(seg_->name()) + ": Loan after Close");
      }
      const uint32_t seen = c->space_futex.load();
      const size_t start = hint_.fetch_add(1, std::memory_order_relaxed);
      for (size_t k = 0; k < n; ++k) {
        const size_t i = (start + k) % n;
        uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
        if (WordState(w) == SlotState::kFree &&
            c->slot_word[i].compare_exchange_strong(w, MakeWord(SlotState::kLoaned, 0, 0),
                                                    std::memory_order_acq_rel)) {
          uint8_t* frame = seg_->slot(i);
          layout->WriteHeader(frame, BatchMeta{});
          return WritableBatch(this, i, frame, std::move(layout));
        }
      }
      if (deadline.expired()) {
        return Status::DeadlineExceeded(ShmUri(seg_->name()) +
                                        ": every slot is in use (consumers are slower than "
                                        "the producer, or hold their batches)");
      }
      if (steady_clock::now() >= next_reclaim) {
        ReclaimDeadReaders();
        next_reclaim = steady_clock::now() + kReclaimInterval;
        continue;
      }
      c->writer_waiters.fetch_add(1);
      ShmSegment::Wait(&c->space_futex, seen, std::min<nanoseconds>(deadline.remaining(), kReclaimInterval));
      c->writer_waiters.fetch_sub(1);
    }
  }

  Status Publish(WritableBatch batch) override {
    if (!batch.valid() || batch.frame() != seg_->slot(batch.token())) {
      return Status::InvalidArgument("Publish: the batch was not loaned by this writer");
    }
    ShmControl* c = seg_->control();
    const size_t i = batch.token();
    std::lock_guard<std::mutex> lock(publish_mu_);
    if (c->closed.load(std::memory_order_relaxed)) {
      return Status::FailedPrecondition(ShmUri(seg_->name()) + ": Publish after Close");
    }
    const uint64_t seq = c->publish_seq.load(std::memory_order_relaxed);
    BatchMeta meta = batch.meta();
    meta.sequence = seq;
    meta.producer_id = meta.producer_id ? meta.producer_id : c->producer_id;
    BatchLayout::UpdateMeta(batch.frame(), meta);
    // By construction seq - claim_seq <= slot_count (an unclaimed batch pins
    // its slot); queue[seq % n] is therefore no longer needed by anyone.
    c->queue[seq % seg_->slot_count()].store(static_cast<uint32_t>(i), std::memory_order_relaxed);
    c->slot_word[i].store(MakeWord(SlotState::kReady, 0, seq), std::memory_order_release);
    c->publish_seq.store(seq + 1, std::memory_order_seq_cst);
    batch.Release();
    c->data_futex.fetch_add(1, std::memory_order_seq_cst);
    if (c->reader_waiters.load(std::memory_order_seq_cst) > 0) ShmSegment::Wake(&c->data_futex, 1);
    return Status::OK();
  }

  Status Close() override {
    ShmControl* c = seg_->control();
    std::lock_guard<std::mutex> lock(publish_mu_);
    if (c->closed.exchange(1) == 0) {
      c->data_futex.fetch_add(1);
      ShmSegment::Wake(&c->data_futex, INT_MAX);
      c->space_futex.fetch_add(1);
      ShmSegment::Wake(&c->space_futex, INT_MAX);
    }
    return Status::OK();
  }

  std::string endpoint() const override { return ShmUri(seg_->name()); }

  void Abandon(uint64_t token) override {
    ShmControl* c = seg_->control();
    c->slot_word[token].store(MakeWord(SlotState::kFree, 0, 0), std::memory_order_release);
    c->space_futex.fetch_add(1);
    if (c->writer_waiters.load() > 0) ShmSegment::Wake(&c->space_futex, INT_MAX);
  }

 private:
  void ReclaimDeadReaders() {
    ShmControl* c = seg_->control();
    for (size_t i = 0; i < seg_->slot_count(); ++i) {
      uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
      if (WordState(w) == SlotState::kReading && !seg_->ReaderAlive(WordOwner(w))) {
        c->slot_word[i].compare_exchange_strong(w, MakeWord(SlotState::kFree, 0, 0));
      }
    }
  }

  std::unique_ptr<ShmSegment> seg_;
  int64_t linger_ms_;
  std::mutex publish_mu_;
  std::atomic<size_t> hint_{0};
};

// Shared by a reader and every BatchView it handed out, so views outlive
// the reader safely.
struct ReaderCore {
  std::unique_ptr<ShmSegment> seg;
  std::atomic<bool> cancelled{false};

  void Release(size_t slot, uint64_t word) {
    ShmControl* c = seg->control();
    c->slot_word[slot].compare_exchange_strong(word, MakeWord(SlotState::kFree, 0, 0),
                                               std::memory_order_acq_rel);
    c->space_futex.fetch_add(1, std::memory_order_seq_cst);
    if (c->writer_waiters.load(std::memory_order_seq_cst) > 0) {
      ShmSegment::Wake(&c->space_futex, INT_MAX);
    }
  }
};

// Holds one claimed slot; destroyed when the last BatchView copy is.
struct SlotLease {
  SlotLease(std::shared_ptr<ReaderCore> c, size_t s, uint64_t w) : core(std::move(c)), slot(s), word(w) {}
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  std::shared_ptr<ReaderCore> core;
  size_t slot;
  uint64_t word;
  ~SlotLease() { core->Release(slot, word); }
};

class ShmReader final : public BatchReader {
 public:
  ShmReader(std::unique_ptr<ShmSegment> seg, const ReaderOptions& options)
      : core_(std::make_shared<ReaderCore>()), options_(options) {
    core_->seg = std::move(seg);
  }

  Result<BatchView> Next(Deadline deadline) override {
    ShmSegment* seg = core_->seg.get();
    ShmControl* c = seg->control();
    const size_t n = seg->slot_count();
    const uint64_t me = static_cast<uint64_t>(seg->reader_id());
    const auto spin_until = steady_clock::now() + std::chrono::microseconds(options_.spin_us);
    const milliseconds liveness{std::max<int64_t>(1, options_.liveness_check_ms)};
    // Remembered across calls: a caller polling with short deadlines still
    // learns of a dead producer.
    auto next_liveness = steady_clock::time_point(steady_clock::duration(next_liveness_ns_.load()));
    if (next_liveness == steady_clock::time_point{}) {
      next_liveness = steady_clock::now() + liveness;
      next_liveness_ns_.store(next_liveness.time_since_epoch().count());
    }
    for (;;) {
      if (core_->cancelled.load(std::memory_order_acquire)) {
        return Status::Cancelled(ShmUri(seg->name()) + ": reader cancelled");
      }
      const uint32_t seen = c->data_futex.load(std::memory_order_seq_cst);
      const uint64_t claim = c->claim_seq.load(std::memory_order_acquire);
      const uint64_t published = c->publish_seq.load(std::memory_order_acquire);
      if (claim < published) {
        const uint32_t i = c->queue[claim % n].load(std::memory_order_relaxed);
        if (i >= n) return Status::DataLoss(ShmUri(seg->name()) + ": corrupt ring queue entry");
        uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
        if (WordState(w) == SlotState::kReady && WordSeq(w) == (claim & kSeqMask)) {
          const uint64_t mine = MakeWord(SlotState::kReading, me, claim);
          if (c->slot_word[i].compare_exchange_strong(w, mine, std::memory_order_acq_rel)) {
            uint64_t expected = claim;
            c->claim_seq.compare_exchange_strong(expected, claim + 1);
            return MakeView(i, mine);
          }
        } else {
          // Sequence `claim` was taken by a reader that has not advanced
          // claim_seq yet (or died before it could): help it along.
          uint64_t expected = claim;
          c->claim_seq.compare_exchange_strong(expected, claim + 1);
        }
        continue;
      }
      if (c->closed.load(std::memory_order_acquire)) {
        return Status::EndOfStream(ShmUri(seg->name()) + ": the producer closed the stream");
      }
      const auto now = steady_clock::now();
      if (now >= next_liveness) {
        if (!seg->ProducerAlive()) {
          // Re-check: a batch published just before the producer died is
          // still delivered.
          if (c->claim_seq.load() < c->publish_seq.load() || c->closed.load()) continue;
          return Status::Unavailable(ShmUri(seg->name()) +
                                     ": the producer died without closing the stream; restart "
                                     "it and reconnect");
        }
        next_liveness = now + liveness;
        next_liveness_ns_.store(next_liveness.time_since_epoch().count());
      }
      if (deadline.expired()) {
        return Status::DeadlineExceeded(ShmUri(seg->name()) + ": no batch before the deadline");
      }
      if (now < spin_until) {
        // Poll without PAUSE, which under a hypervisor may trigger
        // pause-loop exits that deschedule the vCPU.
        continue;
      }
      c->reader_waiters.fetch_add(1, std::memory_order_seq_cst);
      if (c->publish_seq.load(std::memory_order_seq_cst) == published &&
          !c->closed.load(std::memory_order_seq_cst) &&
          !core_->cancelled.load(std::memory_order_seq_cst)) {
        auto timeout = std::min<nanoseconds>(deadline.remaining(), next_liveness - now);
        ShmSegment::Wait(&c->data_futex, seen, timeout);
      }
      c->reader_waiters.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  void Cancel() override {
    core_->cancelled.store(true, std::memory_order_seq_cst);
    ShmControl* c = core_->seg->control();
    c->data_futex.fetch_add(1);
    ShmSegment::Wake(&c->data_futex, INT_MAX);
  }

  Scheme transport() const override { return Scheme::kShm; }

 private:
  Result<BatchView> MakeView(size_t slot, uint64_t word) {
    auto lease = std::make_shared<SlotLease>(core_, slot, word);
    ShmSegment* seg = core_->seg.get();
    Result<FrameView> frame = ParseFrame(seg->slot(slot), seg->slot_bytes());
    if (!frame.ok()) {
      return frame.status().WithContext(ShmUri(seg->name()) + ": batch in slot " +
                                        std::to_string(slot));
    }
    return BatchView(std::move(frame).value(), std::move(lease));
  }

  std::shared_ptr<ReaderCore> core_;
  ReaderOptions options_;
  std::atomic<int64_t> next_liveness_ns_{0};  // steady_clock; 0 = not yet checked
};

}  // namespace

Result<std::unique_ptr<BatchWriter>> OpenShmWriter(const std::string& name,
                                                   const WriterOptions& options) {
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext("shm endpoint"));
  DATAFEED_ASSIGN_OR_RETURN(
      auto seg, ShmSegment::Create(name, options.shm.slot_count, options.shm.slot_bytes));
  return std::unique_ptr<BatchWriter>(new ShmWriter(std::move(seg), options.linger_ms));
}

Result<std::unique_ptr<BatchReader>> OpenShmReader(const std::string& name,
                                                   const ReaderOptions& options) {
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext("shm endpoint"));
  DATAFEED_ASSIGN_OR_RETURN(
      auto seg, ShmSegment::Open(name, Deadline::AfterMillis(options.connect_timeout_ms)));
  return std::unique_ptr<BatchReader>(new ShmReader(std::move(seg), options));
}

}  // namespace datafeed::internal
