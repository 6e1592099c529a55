// BatchWriter / BatchReader over the shared-memory ring (shm_ring_internal.h
// describes the protocol), with the delivery contract's leases and sessions
// (delivery.h).
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "datafeed/proto/datafeed.pb.h"
#include "datafeed/transport/transport.h"
#include "delivery/ledger_internal.h"
#include "delivery/session_internal.h"
#include "delivery/wire_messages_internal.h"
#include "shm/shm_ring_internal.h"
#include "shm/shm_transport_internal.h"
#include "transports_internal.h"
#include "datafeed/transport/log.h"

namespace datafeed::internal {
namespace {

namespace pb = ::datafeed::v1;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::steady_clock;

// The writer's service thread: how often it looks at readers when nothing
// wakes it (leases outstanding / none).
constexpr milliseconds kServiceBusy{5};
constexpr milliseconds kServiceIdle{50};
// A session request waits at least this long for the producer's answer.
constexpr milliseconds kMinSessionWait{10'000};

std::string MiBString(size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

// Slot words the producer reports as overwritten, one line each; later ones
// are only counted (in the next line that is printed, if any).
constexpr uint64_t kReportedOverwrites = 16;

// Writes a batch's whole header into its slot from private memory. Nothing
// is read back from the slot: anyone of this user can write it while the
// batch is being filled (BatchLayout::UpdateMeta on the slot would follow
// offsets found there).
void WriteSlotHeader(const BatchLayout& layout, uint8_t* slot, const BatchMeta& meta) {
  thread_local std::vector<uint8_t> header;
  header.resize(layout.header_bytes());
  layout.WriteHeader(header.data(), meta);
  std::memcpy(slot, header.data(), header.size());
}

bool Claimed(SlotState s) {
  return s == SlotState::kReading || s == SlotState::kHanded || s == SlotState::kReleased;
}

// ------------------------------------------------------------------ mailbox

// Reader side: one session request, one answer.
Result<pb::SessionWelcome> MailboxCall(ShmSegment* seg, const pb::SessionHello& hello, Deadline deadline) {
  const std::string uri = ShmUri(seg->name());
  ShmControl* c = seg->control();
  ShmMailbox& mb = c->mailbox;
  const uint32_t me = 1 + static_cast<uint32_t>(seg->reader_id());
  std::string bytes;
  if (!hello.SerializeToString(&bytes) || bytes.size() > kShmMailboxBytes) {
    return Status::InvalidArgument(uri + ": the session request is too large (" + std::to_string(bytes.size()) +
                                   " bytes)");
  }
  for (;;) {
    uint32_t owner = 0;
    if (mb.owner.compare_exchange_strong(owner, me)) break;
    // Its holder died mid-request, or the word names no reader at all
    // (written by something other than a reader): not a hold.
    const bool no_reader = owner - 1 >= kShmMaxReaders;
    if ((no_reader || !seg->ReaderAlive(static_cast<int>(owner - 1))) && mb.owner.compare_exchange_strong(owner, me)) {
      break;
    }
    if (!seg->ProducerAlive()) return Status::Unavailable(uri + ": the producer died");
    if (deadline.expired()) return Status::DeadlineExceeded(uri + ": the producer's session mailbox stayed busy");
    std::this_thread::sleep_for(milliseconds(1));
  }
  struct Give {
    ShmMailbox* mb;
    ~Give() {
      mb->state.store(kMailboxIdle, std::memory_order_release);
      mb->owner.store(0, std::memory_order_release);
    }
  } give{&mb};
  std::memcpy(mb.data, bytes.data(), bytes.size());
  mb.request_bytes.store(static_cast<uint32_t>(bytes.size()), std::memory_order_relaxed);
  mb.state.store(kMailboxRequest, std::memory_order_release);
  c->control_futex.fetch_add(1, std::memory_order_seq_cst);
  ShmSegment::Wake(&c->control_futex, 1);
  while (mb.state.load(std::memory_order_acquire) != kMailboxResponse) {
    if (!seg->ProducerAlive()) return Status::Unavailable(uri + ": the producer died before answering");
    if (deadline.expired()) return Status::DeadlineExceeded(uri + ": the producer did not answer the session request");
    ShmSegment::Wait(&mb.state, kMailboxRequest, milliseconds(10));
  }
  const uint32_t n = std::min<uint32_t>(mb.response_bytes.load(std::memory_order_relaxed), kShmMailboxBytes);
  if (n < 4) return Status::DataLoss(uri + ": a malformed session answer");
  std::vector<uint8_t> copy(mb.data, mb.data + n);
  uint32_t code = 0;
  std::memcpy(&code, copy.data(), 4);
  if (code != 0) {
    const StatusCode sc = code <= static_cast<uint32_t>(StatusCode::kAborted) ? static_cast<StatusCode>(code)
                                                                              : StatusCode::kInternal;
    return Status(sc, std::string(reinterpret_cast<const char*>(copy.data()) + 4, n - 4));
  }
  pb::SessionWelcome welcome;
  if (!welcome.ParseFromArray(copy.data() + 4, static_cast<int>(n - 4))) {
    return Status::DataLoss(uri + ": a malformed session answer");
  }
  return welcome;
}

// ------------------------------------------------------------------ writer

class ShmWriter final : public ShmRingWriter, public LoanOwner {
 public:
  ShmWriter(std::unique_ptr<ShmSegment> seg, const WriterOptions& options, std::unique_ptr<Ledger> ledger)
      : seg_(std::move(seg)),
        linger_ms_(options.linger_ms),
        stop_lingering_(options.stop_lingering),
        ledger_(std::move(ledger)),
        readers_(kShmMaxReaders),
        slots_(seg_->slot_count()) {}

  Status Start(const WriterOptions& options) {
    if (ledger_ && options.run) {
      DATAFEED_ASSIGN_OR_RETURN(run_start_, ledger_->BeginRun(*options.run));
    }
    service_ = std::thread([this] { ServiceLoop(); });
    return Status::OK();
  }

  void Linger() override {
    if (lingered_.exchange(true)) return;
    ShmControl* c = seg_->control();
    const Deadline linger = Deadline::AfterMillis(linger_ms_);
    while (c->claim_seq.load() < published_.load() && !linger.expired() && !LingerCut()) {
      const uint32_t seen = c->space_futex.load();
      if (c->claim_seq.load() >= published_.load()) break;
      c->writer_waiters.fetch_add(1);
      ShmSegment::Wait(&c->space_futex, seen, std::min<nanoseconds>(linger.remaining(), milliseconds(10)));
      c->writer_waiters.fetch_sub(1);
    }
  }

  // Stop waiting for consumers: asked to (a second signal), or nobody is
  // left to take anything (a run whose ledger has no open session).
  bool LingerCut() const {
    if (stop_lingering_ != nullptr && stop_lingering_->load()) return true;
    return ledger_ && ledger_->begun() && ledger_->LiveSessions() == 0;
  }

  ~ShmWriter() override {
    (void)Close();
    Linger();
    ShmControl* c = seg_->control();
    stop_.store(true);
    if (ledger_) ledger_->Interrupt();
    c->control_futex.fetch_add(1);
    ShmSegment::Wake(&c->control_futex, INT_MAX);
    if (service_.joinable()) service_.join();
    // seg_'s destructor unlinks the name; readers already attached keep
    // their mapping and drain what was published.
  }

  Result<WritableBatch> Loan(std::shared_ptr<const BatchLayout> layout, Deadline deadline) override {
    if (!layout) return Status::InvalidArgument("Loan: null layout");
    if (layout->frame_bytes() > seg_->slot_bytes()) {
      return Status::ResourceExhausted(ShmUri(seg_->name()) + ": a batch needs " + MiBString(layout->frame_bytes()) +
                                       " but slots are " + MiBString(seg_->slot_bytes()) +
                                       "; raise the slot size (--slot-bytes)");
    }
    ShmControl* c = seg_->control();
    const size_t n = seg_->slot_count();
    for (;;) {
      if (closed_.load(std::memory_order_acquire)) {
        return Status::FailedPrecondition(ShmUri(seg_->name()) + ": Loan after Close");
      }
      const uint32_t seen = c->space_futex.load();
      for (int pass = 0; pass < 2; ++pass) {
        const size_t start = hint_.fetch_add(1, std::memory_order_relaxed);
        for (size_t k = 0; k < n; ++k) {
          const size_t i = (start + k) % n;
          uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
          if (WordState(w) == SlotState::kFree &&
              c->slot_word[i].compare_exchange_strong(w, MakeWord(SlotState::kLoaned, 0, 0),
                                                      std::memory_order_acq_rel)) {
            // The header is written at Publish (WriteSlotHeader).
            return LoanAccess::Make(this, i, seg_->slot(i), std::move(layout));
          }
        }
        // Released slots become free once recorded.
        std::lock_guard<std::mutex> lock(mu_);
        RecordClaimsLocked();
      }
      if (deadline.expired()) {
        return Status::DeadlineExceeded(ShmUri(seg_->name()) +
                                        ": every slot is in use (consumers are slower than the producer, or hold "
                                        "their batches)");
      }
      c->writer_waiters.fetch_add(1);
      ShmSegment::Wait(&c->space_futex, seen, std::min<nanoseconds>(deadline.remaining(), milliseconds(100)));
      c->writer_waiters.fetch_sub(1);
    }
  }

  Status Publish(WritableBatch batch) override {
    if (!batch.valid() || LoanAccess::Frame(batch) != seg_->slot(LoanAccess::Token(batch))) {
      return Status::InvalidArgument("Publish: the batch was not loaned by this writer");
    }
    ShmControl* c = seg_->control();
    const size_t i = LoanAccess::Token(batch);
    std::lock_guard<std::mutex> publish_lock(publish_mu_);
    if (closed_.load(std::memory_order_relaxed)) {
      return Status::FailedPrecondition(ShmUri(seg_->name()) + ": Publish after Close");
    }
    BatchMeta meta = batch.meta();
    const BatchKey key{meta.epoch, meta.batch_index};
    const bool tracked = ledger_ != nullptr && ledger_->begun();
    if (tracked) {
      const RunInfo& run = ledger_->run();
      if (meta.fingerprint != run.fingerprint || meta.shard != run.shard || meta.num_shards != run.num_shards) {
        return Status::InvalidArgument(ShmUri(seg_->name()) + ": published " + BatchIdString(meta) +
                                       ", which is not of the writer's run");
      }
      // Journaled before anyone can see it.
      Status st = ledger_->Published(key, meta.attempt == 0);
      if (st.code() == StatusCode::kAlreadyExists) {
        // A consumer that reconnected had it after all: not needed again.
        batch = WritableBatch();  // gives the slot back
        return Status::OK();
      }
      DATAFEED_RETURN_NOT_OK(st);
    }
    // Our own count, not publish_seq read back from the segment.
    const uint64_t seq = published_.load(std::memory_order_relaxed);
    meta.sequence = seq;
    meta.producer_id = meta.producer_id ? meta.producer_id : seg_->producer_id();
    WriteSlotHeader(batch.layout(), LoanAccess::Frame(batch), meta);
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A batch still in the slot was never claimed: someone marked the
      // slot free and we loaned it again.
      if (!slots_[i].recorded) TakeBackLocked(i, MakeWord(SlotState::kLoaned, 0, 0));
      slots_[i] = SlotRec{seq, key, tracked, false, -1};
    }
    // By construction seq - claim_seq <= slot_count (an unclaimed batch pins
    // its slot), plus one for each reader killed between its claim and
    // advancing claim_seq (its slot is freed; its sequence was claimed);
    // queue[seq % n] is therefore no longer needed by anyone. (A reader
    // checks the slot word's sequence anyway.)
    c->queue[seq % seg_->slot_count()].store(static_cast<uint32_t>(i), std::memory_order_relaxed);
    c->slot_word[i].store(MakeWord(SlotState::kReady, 0, seq), std::memory_order_release);
    published_.store(seq + 1, std::memory_order_release);
    c->publish_seq.store(seq + 1, std::memory_order_seq_cst);
    LoanAccess::Release(batch);
    c->data_futex.fetch_add(1, std::memory_order_seq_cst);
    if (c->reader_waiters.load(std::memory_order_seq_cst) > 0) ShmSegment::Wake(&c->data_futex, 1);
    return Status::OK();
  }

  Status Close() override {
    ShmControl* c = seg_->control();
    std::lock_guard<std::mutex> lock(publish_mu_);
    if (ledger_) ledger_->SetClosed();
    if (!closed_.exchange(true)) {
      c->closed.store(1);
      c->data_futex.fetch_add(1);
      ShmSegment::Wake(&c->data_futex, INT_MAX);
      c->space_futex.fetch_add(1);
      ShmSegment::Wake(&c->space_futex, INT_MAX);
    }
    return Status::OK();
  }

  std::string endpoint() const override { return ShmUri(seg_->name()); }

  Result<RunStart> run_start() const override {
    if (!ledger_ || !ledger_->begun()) return BatchWriter::run_start();
    return run_start_;
  }
  std::optional<BatchKey> TakeRemake() override { return ledger_ ? ledger_->TakeRemake() : std::nullopt; }
  void Unmade(const BatchKey& key) override {
    if (ledger_) ledger_->Unmade(key);
  }
  Work WaitForWork(Deadline deadline) override {
    if (!ledger_ || !ledger_->begun()) return Work::kDone;
    ShmControl* c = seg_->control();
    c->wants_acks.store(1);
    c->control_futex.fetch_add(1);
    ShmSegment::Wake(&c->control_futex, 1);
    switch (ledger_->WaitForWork(deadline)) {
      case Ledger::Work::kRemake: return Work::kRemake;
      case Ledger::Work::kDone: return Work::kDone;
      case Ledger::Work::kWait: return Work::kWait;
    }
    return Work::kWait;
  }

  Ledger* ledger() override { return ledger_ && ledger_->begun() ? ledger_.get() : nullptr; }
  uint64_t producer_id() const override { return seg_->producer_id(); }
  DeliveryStats delivery_stats() const override { return ledger_ ? ledger_->stats() : DeliveryStats{}; }
  WriterGauges gauges() const override {
    WriterGauges g;
    const ShmControl* c = seg_->control();
    g.slots = seg_->slot_count();
    for (size_t i = 0; i < g.slots; ++i) {
      if (WordState(c->slot_word[i].load(std::memory_order_relaxed)) != SlotState::kFree) ++g.slots_in_use;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (const ReaderRec& r : readers_) g.shm_consumers += r.active && !r.relay ? 1 : 0;
    return g;
  }
  void SetRevocationSink(std::function<void(const Revocation&)> sink) override {
    std::lock_guard<std::mutex> lock(mu_);
    sink_ = std::move(sink);
  }

  void Abandon(uint64_t token) override {
    ShmControl* c = seg_->control();
    c->slot_word[token].store(MakeWord(SlotState::kFree, 0, 0), std::memory_order_release);
    c->space_futex.fetch_add(1);
    if (c->writer_waiters.load() > 0) ShmSegment::Wake(&c->space_futex, INT_MAX);
  }

 private:
  // What the producer knows of a slot, in its own memory (never read back
  // from the segment).
  struct SlotRec {
    uint64_t seq = 0;
    BatchKey key;
    bool tracked = false;  // the batch has an identity the ledger knows
    bool recorded = true;  // its claim was recorded (or given back); true: no batch waits in the slot
    int owner = -1;        // the reader whose claim was recorded; -1: none (the slot was freed)
  };
  // What the producer knows of a reader id.
  struct ReaderRec {
    bool active = false;
    bool relay = false;
    uint64_t session = 0;     // ledger session, 0: none (a plain ring)
    uint64_t revokes = 0;     // revocations sent
    uint64_t revoke_seq = 0;  // claim_seq when the last was sent
  };

  ShmReaderEntry& Entry(int k) { return seg_->control()->readers[k]; }

  void FreeSlot(size_t i, uint64_t expected) {
    ShmControl* c = seg_->control();
    if (c->slot_word[i].compare_exchange_strong(expected, MakeWord(SlotState::kFree, 0, 0))) {
      c->space_futex.fetch_add(1);
      if (c->writer_waiters.load() > 0) ShmSegment::Wake(&c->space_futex, INT_MAX);
    }
  }

  // Whether slot i's word `w` is one the protocol can leave there, given
  // what this producer did with the slot (slots_[i]) and which readers have
  // sessions. Anything else was written by something other than this
  // producer or a reader's claim. mu_ held.
  bool PossibleLocked(size_t i, uint64_t w, uint64_t complete) const {
    const SlotRec& rec = slots_[i];
    const SlotState st = WordState(w);
    if (Claimed(st)) {
      const size_t k = static_cast<size_t>(WordOwner(w));
      if (k >= kShmMaxReaders || WordSeq(w) != (rec.seq & kSeqMask)) return false;
      // A claim not yet recorded is by a reader with a session (readers
      // open one before they take anything); a recorded one by its reader.
      return rec.recorded ? static_cast<int>(k) == rec.owner : readers_[k].active;
    }
    if (rec.recorded) return st == SlotState::kFree || st == SlotState::kLoaned;
    // Published, not claimed yet: READY until a reader claims it, which it
    // does before claim_seq passes it.
    return w == MakeWord(SlotState::kReady, 0, rec.seq) && rec.seq >= complete;
  }

  // Slot i held `w`, which PossibleLocked() rules out: the batch in it (if
  // any) goes back to the ledger, the slot is freed (unless it is LOANED:
  // that may be this producer's own loan of a slot someone marked free) and
  // it is said and counted. mu_ held.
  void TakeBackLocked(size_t i, uint64_t w) {
    SlotRec& rec = slots_[i];
    const bool had_batch = !rec.recorded;
    if (had_batch) {
      rec.recorded = true;
      if (rec.tracked && ledger_) ledger_->Returned(rec.key);
    }
    rec.owner = -1;
    const SlotState st = WordState(w);
    if (st != SlotState::kLoaned && st != SlotState::kFree) FreeSlot(i, w);
    const uint64_t n = ++overwritten_;
    if (n > kReportedOverwrites) return;
    const std::string path = "/dev/shm/" + ShmObjectName(seg_->name());
    LogWarning(StrFormat(
                 "datafeed: %s: slot %zu held 0x%016llx, a word neither this producer nor a reader's claim leaves "
                 "there (something else writes into %s); the slot is taken back%s (%llu so far%s)",
                 endpoint().c_str(), i, static_cast<unsigned long long>(w), path.c_str(),
                 !had_batch ? "" : rec.tracked && ledger_ ? " and its batch made again" : " and its batch lost",
                 static_cast<unsigned long long>(n), n == kReportedOverwrites ? "; further ones are not reported" : ""));
  }

  // Records every complete claim in sequence order, gives back claims that
  // may not be kept, frees released slots and takes back slots whose word
  // nobody could have written. mu_ held.
  void RecordClaimsLocked() {
    ShmControl* c = seg_->control();
    // Claims below claim_seq are complete. Readers write claim_seq: never
    // believed beyond what was published.
    const uint64_t complete =
        std::min(c->claim_seq.load(std::memory_order_acquire), published_.load(std::memory_order_acquire));
    struct Claim {
      uint64_t seq;
      size_t slot;
      int reader;
    };
    std::vector<Claim> claims;
    for (size_t i = 0; i < slots_.size(); ++i) {
      const uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
      const SlotState st = WordState(w);
      SlotRec& rec = slots_[i];
      if (!PossibleLocked(i, w, complete)) {
        // Not while readers may still meet its sequence: freeing the slot
        // then would let the ring hold more unclaimed sequences than slots.
        // They skip a word they cannot claim, so it comes to this soon.
        if (!rec.recorded && rec.seq >= complete) continue;
        TakeBackLocked(i, w);
        continue;
      }
      if (!Claimed(st)) continue;
      if (rec.recorded) {
        if (st == SlotState::kReleased) FreeSlot(i, w);
        continue;
      }
      if (rec.seq >= complete) continue;  // claimed, claim_seq not advanced yet: next time
      claims.push_back({rec.seq, i, WordOwner(w)});
    }
    std::sort(claims.begin(), claims.end(), [](const Claim& a, const Claim& b) { return a.seq < b.seq; });
    for (const Claim& cl : claims) {
      SlotRec& rec = slots_[cl.slot];
      ReaderRec& r = readers_[static_cast<size_t>(cl.reader)];
      rec.recorded = true;
      rec.owner = cl.reader;
      bool keep = true;
      if (ledger_ && rec.tracked && !r.relay) {
        ShmReaderEntry& e = Entry(cl.reader);
        const bool after_revocation =
            r.revokes > 0 && rec.seq >= r.revoke_seq &&
            (e.revoke_ack.load(std::memory_order_acquire) != r.revokes ||
             rec.seq < e.resume_seq.load(std::memory_order_acquire));
        if (!r.active || r.session == 0 || after_revocation) {
          keep = false;
        } else if (!ledger_->Delivered(r.session, rec.key).ok()) {
          keep = false;  // its session is over (superseded)
          e.fenced.store(1, std::memory_order_release);
        }
        if (!keep) ledger_->Returned(rec.key);
      }
      const uint64_t w = c->slot_word[cl.slot].load(std::memory_order_acquire);
      if (WordState(w) == SlotState::kReleased || (!keep && WordState(w) == SlotState::kReading)) FreeSlot(cl.slot, w);
    }
  }

  // Reader k is gone: its session ends, what it held goes back. mu_ held.
  void ReaderGoneLocked(int k, CloseKind kind) {
    ShmControl* c = seg_->control();
    RecordClaimsLocked();
    ReaderRec& r = readers_[static_cast<size_t>(k)];
    if (ledger_ && r.session != 0) {
      // Its last words: acknowledgements written just before it died count.
      ShmReaderEntry& e = Entry(k);
      const auto now = LedgerClock::now();
      ledger_->Progress(r.session, e.acked.load(std::memory_order_acquire), LedgerClock::time_point{});
      ledger_->Close(r.session, kind, now, e.handed.load(std::memory_order_acquire));
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
      const uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
      if (!Claimed(WordState(w)) || WordOwner(w) != k) continue;
      SlotRec& rec = slots_[i];
      if (!rec.recorded) {
        rec.recorded = true;
        if (ledger_ && rec.tracked && !r.relay) ledger_->Returned(rec.key);
      }
      rec.owner = -1;
      FreeSlot(i, w);
    }
    r = ReaderRec{};
  }

  void Respond(const Status& st, const std::string& payload) {
    ShmMailbox& mb = seg_->control()->mailbox;
    uint32_t code = static_cast<uint32_t>(st.code());
    std::string body = st.ok() ? payload : st.message();
    if (body.size() > kShmMailboxBytes - 4) body.resize(kShmMailboxBytes - 4);
    std::memcpy(mb.data, &code, 4);
    std::memcpy(mb.data + 4, body.data(), body.size());
    mb.response_bytes.store(static_cast<uint32_t>(4 + body.size()), std::memory_order_relaxed);
    mb.state.store(kMailboxResponse, std::memory_order_release);
    ShmSegment::Wake(&mb.state, INT_MAX);
  }

  // Answers a session request, if one waits. mu_ held.
  void HandleMailboxLocked() {
    ShmMailbox& mb = seg_->control()->mailbox;
    const uint32_t owner = mb.owner.load(std::memory_order_acquire);
    if (mb.state.load(std::memory_order_acquire) != kMailboxRequest) return;
    if (owner == 0 || owner - 1 >= kShmMaxReaders || !seg_->ReaderAlive(static_cast<int>(owner - 1))) {
      // Its author died (or the word is garbage): the next reader breaks the hold.
      return;
    }
    const int k = static_cast<int>(owner - 1);
    const uint32_t n = mb.request_bytes.load(std::memory_order_relaxed);
    if (n > kShmMailboxBytes) return Respond(Status::InvalidArgument("a session request larger than the mailbox"), "");
    const std::vector<uint8_t> copy(mb.data, mb.data + n);
    pb::SessionHello msg;
    if (!msg.ParseFromArray(copy.data(), static_cast<int>(copy.size()))) {
      return Respond(Status::InvalidArgument(endpoint() + ": a malformed session request"), "");
    }
    // Whoever held this reader id before is dead (the new holder has its lock).
    if (readers_[static_cast<size_t>(k)].active) ReaderGoneLocked(k, CloseKind::kDied);
    bool relay = false;
    const Hello hello = FromProto(msg, &relay);
    pb::SessionWelcome welcome;
    ReaderRec rec;
    rec.active = true;
    if (relay) {
      rec.relay = true;
    } else if (ledger() != nullptr) {
      Result<Welcome> w = ledger_->Open(hello, "shm reader " + std::to_string(k), LedgerClock::now());
      if (!w.ok()) return Respond(w.status(), "");
      rec.session = w->session;
      const RunInfo& run = ledger_->run();
      welcome.set_consumer_id(w->consumer_id);
      welcome.set_position(w->position);
      welcome.set_fingerprint(run.fingerprint);
      welcome.set_shard(run.shard);
      welcome.set_num_shards(run.num_shards);
      welcome.set_batches_per_epoch(run.batches_per_epoch);
      welcome.set_summary(w->summary);
    } else {
      // A plain ring: no identities, nothing to resume; positions just count.
      welcome.set_consumer_id(hello.consumer_id);
      welcome.set_position(hello.mode == Hello::Mode::kResume ? hello.received : 0);
      welcome.set_num_shards(1);
    }
    ShmReaderEntry& e = Entry(k);
    e.acked.store(welcome.position());
    e.handed.store(welcome.position());
    e.last_next_ns.store(MonotonicNanos());
    e.revoke_ack.store(0);
    e.resume_seq.store(0);
    e.revokes.store(0);
    e.revoked_from.store(0);
    e.fenced.store(0, std::memory_order_release);
    readers_[static_cast<size_t>(k)] = rec;
    std::string payload;
    welcome.SerializeToString(&payload);
    Respond(Status::OK(), payload);
  }

  void ServicePass() {
    ShmControl* c = seg_->control();
    std::vector<Revocation> revocations;
    {
      std::lock_guard<std::mutex> lock(mu_);
      HandleMailboxLocked();
      RecordClaimsLocked();
      const uint64_t now_ns = MonotonicNanos();
      for (int k = 0; k < static_cast<int>(kShmMaxReaders); ++k) {
        ReaderRec& r = readers_[static_cast<size_t>(k)];
        if (!r.active) continue;
        if (!seg_->ReaderAlive(k)) {
          ReaderGoneLocked(k, CloseKind::kDied);
          continue;
        }
        if (r.session == 0 || !ledger_) continue;
        ShmReaderEntry& e = Entry(k);
        if (!ledger_->Live(r.session)) {
          e.fenced.store(1, std::memory_order_release);
          continue;
        }
        const uint64_t last = std::min(e.last_next_ns.load(std::memory_order_relaxed), now_ns);
        ledger_->Progress(r.session, e.acked.load(std::memory_order_relaxed),
                          LedgerClock::time_point(std::chrono::duration_cast<LedgerClock::duration>(nanoseconds(last))));
      }
    }
    if (ledger() == nullptr) return;
    revocations = ledger_->Tick(LedgerClock::now());
    if (revocations.empty()) return;
    std::function<void(const Revocation&)> sink;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sink = sink_;
      for (const Revocation& rev : revocations) {
        int k = -1;
        for (int j = 0; j < static_cast<int>(kShmMaxReaders); ++j) {
          if (readers_[static_cast<size_t>(j)].active && readers_[static_cast<size_t>(j)].session == rev.session) k = j;
        }
        if (k < 0) continue;
        ReaderRec& r = readers_[static_cast<size_t>(k)];
        r.revokes++;
        r.revoke_seq = c->claim_seq.load(std::memory_order_acquire);
        ShmReaderEntry& e = Entry(k);
        e.revoked_from.store(rev.from, std::memory_order_relaxed);
        e.revokes.store(r.revokes, std::memory_order_release);
        // Slots it only read ahead come back now; batches its trainer holds
        // keep their memory until released.
        for (size_t i = 0; i < slots_.size(); ++i) {
          const uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
          if (WordState(w) != SlotState::kReading || WordOwner(w) != k) continue;
          SlotRec& rec = slots_[i];
          if (!rec.recorded) {
            // Claimed after the revocation was decided, not recorded yet:
            // nobody's now.
            rec.recorded = true;
            if (rec.tracked && !r.relay) ledger_->Returned(rec.key);
          }
          rec.owner = -1;
          FreeSlot(i, w);
        }
        LogWarning(StrFormat(
                     "datafeed: %s: consumer %016llx did not ask for a batch for longer than the consumer timeout; "
                     "its %zu leased batches go to other consumers (%s)",
                     endpoint().c_str(), static_cast<unsigned long long>(rev.consumer_id), rev.keys.size(),
                     ToString(rev.keys, 4).c_str()));
      }
      c->data_futex.fetch_add(1);
      ShmSegment::Wake(&c->data_futex, INT_MAX);
    }
    if (sink) {
      for (const Revocation& rev : revocations) sink(rev);
    }
  }

  void ServiceLoop() {
    ShmControl* c = seg_->control();
    while (!stop_.load()) {
      const uint32_t seen = c->control_futex.load();
      ServicePass();
      if (stop_.load()) break;
      const bool busy = ledger() != nullptr && c->wants_acks.load() != 0;
      c->control_waiters.fetch_add(1);
      ShmSegment::Wait(&c->control_futex, seen, busy ? kServiceBusy : kServiceIdle);
      c->control_waiters.fetch_sub(1);
    }
  }

  std::unique_ptr<ShmSegment> seg_;
  int64_t linger_ms_;
  const std::atomic<bool>* stop_lingering_;
  std::unique_ptr<Ledger> ledger_;
  RunStart run_start_;
  std::mutex publish_mu_;
  mutable std::mutex mu_;  // readers_, slots_, recording, sink_
  std::vector<ReaderRec> readers_;
  std::vector<SlotRec> slots_;
  std::function<void(const Revocation&)> sink_;
  std::atomic<size_t> hint_{0};
  // What this producer published and whether it closed, in its own memory:
  // publish_seq and closed in the segment are for readers, and anyone of
  // this user can write them.
  std::atomic<uint64_t> published_{0};
  std::atomic<bool> closed_{false};
  uint64_t overwritten_ = 0;  // slot words taken back (mu_)
  std::atomic<bool> stop_{false};
  std::atomic<bool> lingered_{false};
  std::thread service_;
};

// ------------------------------------------------------------------ readers

// One attached segment; shared by a reader and every BatchView it handed
// out, so views outlive the reader (and a reconnect) safely.
struct ReaderCore {
  std::unique_ptr<ShmSegment> seg;
  std::mutex mu;
  uint64_t processed_revokes = 0;
  ShmReaderEntry& entry() { return seg->control()->readers[seg->reader_id()]; }
};

// One claimed slot; destroyed when the last BatchView copy is.
struct SlotLease {
  SlotLease(std::shared_ptr<ReaderCore> c, size_t s, uint64_t w) : core(std::move(c)), slot(s), word(w) {}
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  ~SlotLease() {
    ShmControl* c = core->seg->control();
    const uint64_t released = MakeWord(SlotState::kReleased, static_cast<uint64_t>(WordOwner(word)), WordSeq(word));
    uint64_t expected = handed.load() ? HandedWord() : word;
    // Fails when the producer took the slot back meanwhile: nothing to give.
    if (c->slot_word[slot].compare_exchange_strong(expected, released, std::memory_order_acq_rel)) {
      c->space_futex.fetch_add(1, std::memory_order_seq_cst);
      if (c->writer_waiters.load(std::memory_order_seq_cst) > 0) ShmSegment::Wake(&c->space_futex, INT_MAX);
    }
  }
  uint64_t HandedWord() const {
    return MakeWord(SlotState::kHanded, static_cast<uint64_t>(WordOwner(word)), WordSeq(word));
  }

  std::shared_ptr<ReaderCore> core;
  size_t slot;
  uint64_t word;  // READING|me|seq as claimed
  std::atomic<bool> handed{false};
  // The frame header, copied out of the slot before it was parsed; the
  // view's names and finish specs point here.
  std::vector<uint8_t> header;
};

class ShmReader final : public BatchReader {
 public:
  ShmReader(std::string name, const ReaderOptions& options, ShmLocator locate, bool relay)
      : name_(std::move(name)),
        options_(options),
        locate_(std::move(locate)),
        relay_(relay),
        session_(ShmUri(name_), options.session) {
    trust_.uid = options.shm_owner_uid >= 0 ? static_cast<uint32_t>(options.shm_owner_uid)
                                            : static_cast<uint32_t>(::getuid());
  }

  // Attaches NAME and opens the session (the first hello). `answered`: see
  // OpenShmSessionReader.
  Status Attach(bool* answered = nullptr) {
    const Deadline deadline = Deadline::AfterMillis(options_.connect_timeout_ms);
    DATAFEED_ASSIGN_OR_RETURN(auto seg, ShmSegment::Open(name_, deadline, trust_));
    const Deadline answer = Deadline::After(std::max<nanoseconds>(deadline.remaining(), kMinSessionWait));
    pb::SessionHello hello;
    if (relay_) {
      hello.set_mode(pb::SessionHello::RELAY);
    } else {
      hello = ToProto(session_.FirstHello());
    }
    Result<pb::SessionWelcome> answered_with = MailboxCall(seg.get(), hello, answer);
    if (answered != nullptr) {
      const StatusCode code = answered_with.status().code();
      *answered = code != StatusCode::kUnavailable && code != StatusCode::kDeadlineExceeded;
    }
    DATAFEED_ASSIGN_OR_RETURN(pb::SessionWelcome w, std::move(answered_with));
    if (!relay_) {
      DATAFEED_RETURN_NOT_OK(session_.Welcomed(w.consumer_id(), w.position(), w.fingerprint(), w.shard(),
                                               w.num_shards(), w.batches_per_epoch()));
    }
    auto core = std::make_shared<ReaderCore>();
    core->seg = std::move(seg);
    std::lock_guard<std::mutex> lock(core_mu_);
    core_ = std::move(core);
    return Status::OK();
  }

  Result<BatchView> Take(Deadline deadline) override {
    const milliseconds liveness{std::max<int64_t>(1, options_.liveness_check_ms)};
    for (;;) {
      std::shared_ptr<ReaderCore> core = Core();
      ShmSegment* seg = core->seg.get();
      ShmControl* c = seg->control();
      const size_t n = seg->slot_count();
      const uint64_t me = static_cast<uint64_t>(seg->reader_id());
      const auto spin_until = steady_clock::now() + SpinBudget();
      // Remembered across calls: a caller polling with short deadlines still
      // learns of a dead producer.
      auto next_liveness = steady_clock::time_point(steady_clock::duration(next_liveness_ns_.load()));
      if (next_liveness == steady_clock::time_point{}) {
        next_liveness = steady_clock::now() + liveness;
        next_liveness_ns_.store(next_liveness.time_since_epoch().count());
      }
      bool reattached = false;
      for (;;) {
        if (cancelled_.load(std::memory_order_acquire)) {
          return Status::Cancelled(ShmUri(seg->name()) + ": reader cancelled");
        }
        if (!relay_) DATAFEED_RETURN_NOT_OK(CheckSession(core.get()));
        const uint32_t seen = c->data_futex.load(std::memory_order_seq_cst);
        const uint64_t claim = c->claim_seq.load(std::memory_order_acquire);
        const uint64_t published = c->publish_seq.load(std::memory_order_acquire);
        // claim_seq never passes publish_seq, and the ring holds at most a
        // slot per unclaimed sequence (plus one per reader that died between
        // its claim and advancing claim_seq). Else skipping ahead one by one
        // could take 2^48 steps, or wait for ever.
        if (claim > published || published - claim > n + kShmMaxReaders) {
          return Status::DataLoss(ShmUri(seg->name()) + ": the ring's counters cannot be (sequence " +
                                  std::to_string(claim) + " claimed, " + std::to_string(published) +
                                  " published, " + std::to_string(n) +
                                  " slots): something other than datafeed writes into /dev/shm/" +
                                  ShmObjectName(seg->name()) + "; restart the producer");
        }
        if (claim < published) {
          const uint32_t i = c->queue[claim % n].load(std::memory_order_relaxed);
          if (i >= n) {
            return Status::DataLoss(ShmUri(seg->name()) + ": ring queue entry " + std::to_string(claim % n) +
                                    " names slot " + std::to_string(i) + " of " + std::to_string(n) +
                                    ": something other than datafeed writes into /dev/shm/" +
                                    ShmObjectName(seg->name()));
          }
          uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
          if (WordState(w) == SlotState::kReady && WordSeq(w) == (claim & kSeqMask)) {
            const uint64_t mine = MakeWord(SlotState::kReading, me, claim);
            if (c->slot_word[i].compare_exchange_strong(w, mine, std::memory_order_acq_rel)) {
              uint64_t expected = claim;
              c->claim_seq.compare_exchange_strong(expected, claim + 1);
              NoteGap(/*arrived=*/true);
              return MakeView(core, i, mine);
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
            if (!options_.reconnect || relay_) {
              return Status::Unavailable(ShmUri(seg->name()) +
                                         ": the producer died without closing the stream; restart it and reconnect");
            }
            DATAFEED_RETURN_NOT_OK(Reattach());
            reattached = true;
            break;
          }
          next_liveness = now + liveness;
          next_liveness_ns_.store(next_liveness.time_since_epoch().count());
        }
        if (deadline.expired()) {
          NoteGap(/*arrived=*/false);
          return Status::DeadlineExceeded(ShmUri(seg->name()) + ": no batch before the deadline");
        }
        if (now < spin_until) {
          // Poll without PAUSE, which under a hypervisor may trigger
          // pause-loop exits that deschedule the vCPU.
          continue;
        }
        c->reader_waiters.fetch_add(1, std::memory_order_seq_cst);
        if (c->publish_seq.load(std::memory_order_seq_cst) == published && !c->closed.load(std::memory_order_seq_cst) &&
            !cancelled_.load(std::memory_order_seq_cst)) {
          auto timeout = std::min<nanoseconds>(deadline.remaining(), next_liveness - now);
          ShmSegment::Wait(&c->data_futex, seen, timeout);
        }
        c->reader_waiters.fetch_sub(1, std::memory_order_seq_cst);
      }
      if (!reattached) return Status::Internal("shm reader: left its loop");
    }
  }

  Result<bool> Hand(const BatchView& batch) override {
    const BatchView::Delivery& d = batch.delivery();
    if (d.reader != this || d.lease == nullptr) {
      return Status::InvalidArgument(ShmUri(name_) + ": Hand() of a batch this reader did not deliver");
    }
    if (relay_) return true;
    auto* lease = static_cast<SlotLease*>(d.lease);
    if (!session_.Current(d.generation, d.position)) return false;
    ShmControl* lc = lease->core->seg->control();
    uint64_t expected = lease->word;
    if (!lc->slot_word[lease->slot].compare_exchange_strong(expected, lease->HandedWord(), std::memory_order_acq_rel)) {
      return false;  // the producer took it back (this consumer's leases were revoked)
    }
    lease->handed.store(true);
    std::shared_ptr<ReaderCore> core = Core();
    DATAFEED_RETURN_NOT_OK(CheckSession(core.get()));
    if (!session_.Current(d.generation, d.position)) return false;
    DATAFEED_RETURN_NOT_OK(session_.Hand(d.position, batch.meta()));
    core->entry().handed.store(session_.handed(), std::memory_order_release);
    return true;
  }

  Status Ack() override {
    if (relay_) return Status::OK();
    std::shared_ptr<ReaderCore> core = Core();
    if (!core) return Status::OK();
    session_.Ack();
    ShmReaderEntry& e = core->entry();
    e.acked.store(session_.acked(), std::memory_order_release);
    e.last_next_ns.store(MonotonicNanos(), std::memory_order_release);
    ShmControl* c = core->seg->control();
    if (c->wants_acks.load(std::memory_order_relaxed)) {
      c->control_futex.fetch_add(1);
      ShmSegment::Wake(&c->control_futex, 1);
    }
    return CheckSession(core.get());
  }

  ConsumerState state() const override {
    ConsumerState s;
    if (!relay_ && session_.fingerprint() != 0) s.streams.push_back(session_.position());
    return s;
  }

  // What the trainer was handed is acknowledged in the reader's entry: the
  // producer reads it when the reader is gone (ReaderGoneLocked), so only
  // the read-ahead goes back.
  void Leave() override { (void)Ack(); }

  void Cancel() override {
    cancelled_.store(true, std::memory_order_seq_cst);
    std::shared_ptr<ReaderCore> core = Core();
    ShmControl* c = core->seg->control();
    c->data_futex.fetch_add(1);
    ShmSegment::Wake(&c->data_futex, INT_MAX);
  }

  Scheme transport() const override { return Scheme::kShm; }
  uint64_t batches_per_epoch() const override { return session_.batches_per_epoch(); }

 private:
  std::shared_ptr<ReaderCore> Core() const {
    std::lock_guard<std::mutex> lock(core_mu_);
    return core_;
  }

  // How long a Take() that finds the ring empty polls before it sleeps
  // (ReaderOptions::adaptive_spin). Polling pays only when the batch comes
  // within the poll and another CPU runs the producer meanwhile.
  nanoseconds SpinBudget() const {
    if (options_.spin_us > 0) return std::chrono::microseconds(options_.spin_us);
    if (!options_.adaptive_spin || UsableCpus() < 2) return nanoseconds(0);
    if (gap_avg_ns_.load(std::memory_order_relaxed) > ReaderOptions::kAdaptiveCloseGapUs * 1000) {
      return nanoseconds(0);
    }
    if (!CpuFree()) return nanoseconds(0);
    return std::chrono::microseconds(ReaderOptions::kAdaptiveSpinUs);
  }

  // Whether polling would have a CPU to itself: the kernel's count of
  // runnable tasks (ProcsRunning(), this thread included) is at most the
  // CPUs this process may use. On a machine shared with busy
  // tenants a poller only takes CPU time from the producer and from them,
  // and its own wake-up is no faster (measured: p50 10-40 us polling vs
  // 1.5-20 us sleeping at a load of 5 on 2 CPUs). Read at most every 20 ms
  // (a read costs a few microseconds); unreadable: assumed free.
  bool CpuFree() const {
    const int64_t now = steady_clock::now().time_since_epoch().count();
    if (now - cpu_checked_ns_.load(std::memory_order_relaxed) < 20'000'000) {
      return cpu_free_.load(std::memory_order_relaxed);
    }
    cpu_checked_ns_.store(now, std::memory_order_relaxed);
    const int running = ProcsRunning();
    const bool free = running <= 0 || running <= UsableCpus();
    cpu_free_.store(free, std::memory_order_relaxed);
    return free;
  }

  // The kernel's count of runnable tasks now: the numerator of the fourth
  // field of /proc/loadavg ("0.52 0.58 0.59 3/412 1234"; the same count as
  // procs_running in /proc/stat, whose size grows with CPUs and
  // interrupts). 0 when it cannot be read.
  static int ProcsRunning() {
    const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char text[128];
    const ssize_t got = ::read(fd, text, sizeof text - 1);
    ::close(fd);
    if (got <= 0) return 0;
    text[got] = '\0';
    double a, b, c;
    int running = 0, total = 0;
    if (std::sscanf(text, "%lf %lf %lf %d/%d", &a, &b, &c, &running, &total) != 5) return 0;
    return running;
  }

  // Folds the time since the last arrival into the moving average of gaps
  // (weight 1/4: one long pause stops the polling, three close arrivals
  // after it bring it back). A wait that ends without a batch counts as a
  // gap at least that long, so a caller polling an idle stream with short
  // deadlines stops polling too. Relaxed: Next() may run on several threads,
  // and a stale value only changes whether one wait polls.
  void NoteGap(bool arrived) {
    const int64_t now = steady_clock::now().time_since_epoch().count();
    const int64_t last = arrived ? last_arrival_ns_.exchange(now, std::memory_order_relaxed)
                                 : last_arrival_ns_.load(std::memory_order_relaxed);
    if (last == 0) return;
    const int64_t avg = gap_avg_ns_.load(std::memory_order_relaxed);
    gap_avg_ns_.store(avg + (std::max<int64_t>(0, now - last) - avg) / 4, std::memory_order_relaxed);
  }

  // CPUs this process may run on, once.
  static int UsableCpus() {
    static const int cpus = [] {
      cpu_set_t set;
      CPU_ZERO(&set);
      if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
      return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
    }();
    return cpus;
  }

  // Revocations and fencing, as the producer wrote them into our entry.
  Status CheckSession(ReaderCore* core) {
    std::lock_guard<std::mutex> lock(core->mu);
    if (!fatal_.ok()) return fatal_;
    ShmReaderEntry& e = core->entry();
    if (e.fenced.load(std::memory_order_acquire) != 0) {
      fatal_ = Status::Aborted(ShmUri(name_) + ": another session took over consumer " +
                               std::to_string(session_.consumer_id()) +
                               " (a restore or resume of the same consumer elsewhere); this one is over");
      return fatal_;
    }
    const uint64_t revokes = e.revokes.load(std::memory_order_acquire);
    if (revokes == core->processed_revokes) return Status::OK();
    const uint64_t from = e.revoked_from.load(std::memory_order_relaxed);
    Status st = session_.Revoked(from, "this consumer held leased batches without calling Next() for longer "
                                       "than the producer's consumer timeout");
    core->processed_revokes = revokes;
    e.resume_seq.store(core->seg->control()->claim_seq.load(std::memory_order_acquire), std::memory_order_relaxed);
    e.revoke_ack.store(revokes, std::memory_order_release);
    if (!st.ok()) fatal_ = st;
    return st;
  }

  Result<BatchView> MakeView(const std::shared_ptr<ReaderCore>& core, size_t slot, uint64_t word) {
    auto lease = std::make_shared<SlotLease>(core, slot, word);
    ShmSegment* seg = core->seg.get();
    const uint8_t* frame = seg->slot(slot);
    // The header is parsed from a private copy: a writer racing the reader
    // cannot change it after it was checked.
    uint32_t prefix = 0;
    std::memcpy(&prefix, frame, sizeof prefix);
    const size_t header_len = std::min<size_t>({size_t{4} + prefix, seg->slot_bytes(), MaxFrameHeaderBytes()});
    lease->header.assign(frame, frame + header_len);
    Result<FrameView> view = ParseFrameFromCopy(lease->header.data(), lease->header.size(), frame, seg->slot_bytes());
    if (!view.ok()) {
      return view.status().WithContext(ShmUri(seg->name()) + ": batch in slot " + std::to_string(slot));
    }
    BatchView::Delivery d;
    d.reader = this;
    d.lease = lease.get();
    if (!relay_) {
      DATAFEED_ASSIGN_OR_RETURN(d.position, session_.Received(view->meta(), ~uint64_t{0}));
      d.generation = session_.generation();
    }
    return BatchView(std::move(view).value(), std::move(lease), d);
  }

  // The producer died: find its successor and resume the session there.
  Status Reattach() {
    const Deadline until = Deadline::AfterMillis(options_.reconnect_timeout_ms);
    int64_t backoff_ms = 50;
    Status last = Status::Unavailable(ShmUri(name_) + ": the producer died");
    while (!until.expired() && !cancelled_.load()) {
      Result<std::string> name = locate_ ? locate_(Deadline::AfterMillis(std::max<int64_t>(backoff_ms, 500)))
                                         : Result<std::string>(name_);
      if (name.ok()) {
        Result<std::unique_ptr<ShmSegment>> seg = ShmSegment::Open(*name, Deadline::Now(), trust_);
        if (seg.ok() && (*seg)->producer_id() != Core()->seg->producer_id()) {
          Result<pb::SessionWelcome> w =
              MailboxCall(seg->get(), ToProto(session_.ResumeHello()), Deadline::After(kMinSessionWait));
          if (w.ok()) {
            DATAFEED_RETURN_NOT_OK(
                session_.Welcomed(w->consumer_id(), w->position(), w->fingerprint(), w->shard(), w->num_shards(),
                                  w->batches_per_epoch()));
            auto core = std::make_shared<ReaderCore>();
            core->seg = std::move(seg).value();
            name_ = *name;
            {
              std::lock_guard<std::mutex> lock(core_mu_);
              core_ = core;
            }
            // What the trainer acknowledged while we reconnected went to the
            // dead producer's segment: say it again to the new one.
            ShmReaderEntry& e = core->entry();
            e.handed.store(session_.handed(), std::memory_order_release);
            e.acked.store(session_.acked(), std::memory_order_release);
            e.last_next_ns.store(MonotonicNanos(), std::memory_order_release);
            next_liveness_ns_.store(0);
            return Status::OK();
          }
          if (w.status().code() == StatusCode::kDataLoss || w.status().code() == StatusCode::kFailedPrecondition ||
              w.status().code() == StatusCode::kAborted) {
            return w.status();  // the new producer cannot continue this session: say why
          }
          last = w.status();
        } else if (!seg.ok()) {
          // A name that is not one, a segment this consumer does not trust:
          // waiting will not change them.
          if (seg.status().code() == StatusCode::kInvalidArgument ||
              seg.status().code() == StatusCode::kFailedPrecondition) {
            return seg.status().WithContext("reconnecting");
          }
          last = seg.status();
        }
      } else {
        last = name.status();
      }
      std::this_thread::sleep_for(milliseconds(backoff_ms));
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 2000);
    }
    return last.WithContext("gave up reconnecting after " + std::to_string(options_.reconnect_timeout_ms) + " ms");
  }

  std::string name_;
  const ReaderOptions options_;
  const ShmLocator locate_;
  const bool relay_;
  ShmTrust trust_;
  ConsumerSession session_;
  mutable std::mutex core_mu_;
  std::shared_ptr<ReaderCore> core_;
  Status fatal_;  // an Aborted session stays so (core->mu)
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> next_liveness_ns_{0};  // steady_clock; 0 = not yet checked
  // Adaptive waiting (NoteGap): the last arrival (steady_clock ns, 0: none
  // yet) and the moving average of the gaps between arrivals, which starts
  // long (a new reader sleeps until batches come close together).
  std::atomic<int64_t> last_arrival_ns_{0};
  std::atomic<int64_t> gap_avg_ns_{1'000'000'000};
  mutable std::atomic<int64_t> cpu_checked_ns_{0};  // CpuFree(): when it last read /proc/loadavg
  mutable std::atomic<bool> cpu_free_{false};
};

Result<std::unique_ptr<ShmReader>> OpenReaderImpl(const std::string& name, const ReaderOptions& options,
                                                  ShmLocator locate, bool relay, bool* answered = nullptr) {
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext("shm endpoint"));
  auto reader = std::make_unique<ShmReader>(name, options, std::move(locate), relay);
  DATAFEED_RETURN_NOT_OK(reader->Attach(answered));
  return reader;
}

}  // namespace

Result<std::unique_ptr<ShmRingWriter>> OpenShmRingWriter(const std::string& name, const WriterOptions& options) {
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext("shm endpoint"));
  std::unique_ptr<Ledger> ledger;
  if (options.run) {
    Ledger::Options lo;
    lo.name = ShmUri(name);
    lo.state_dir = options.state_dir;
    lo.consumer_timeout_ms = options.consumer_timeout_ms;
    lo.finish_grace_ms = options.finish_grace_ms;
    DATAFEED_ASSIGN_OR_RETURN(ledger, Ledger::Create(lo));
  }
  DATAFEED_ASSIGN_OR_RETURN(auto seg, ShmSegment::Create(name, options.shm.slot_count, options.shm.slot_bytes));
  auto writer = std::make_unique<ShmWriter>(std::move(seg), options, std::move(ledger));
  DATAFEED_RETURN_NOT_OK(writer->Start(options));
  return std::unique_ptr<ShmRingWriter>(std::move(writer));
}

Result<std::unique_ptr<BatchWriter>> OpenShmWriter(const std::string& name, const WriterOptions& options) {
  DATAFEED_ASSIGN_OR_RETURN(auto writer, OpenShmRingWriter(name, options));
  return std::unique_ptr<BatchWriter>(std::move(writer));
}

Result<std::unique_ptr<BatchReader>> OpenShmRelayReader(const std::string& name) {
  DATAFEED_ASSIGN_OR_RETURN(auto reader, OpenReaderImpl(name, ReaderOptions{}, nullptr, true));
  return std::unique_ptr<BatchReader>(std::move(reader));
}

Result<std::unique_ptr<BatchReader>> OpenShmSessionReader(const std::string& name, const ReaderOptions& options,
                                                          ShmLocator locate, bool* answered) {
  if (answered != nullptr) *answered = false;
  DATAFEED_ASSIGN_OR_RETURN(auto reader, OpenReaderImpl(name, options, std::move(locate), false, answered));
  return std::unique_ptr<BatchReader>(std::move(reader));
}

Result<std::unique_ptr<BatchReader>> OpenShmReader(const std::string& name, const ReaderOptions& options) {
  return OpenShmSessionReader(name, options, nullptr);
}

}  // namespace datafeed::internal
