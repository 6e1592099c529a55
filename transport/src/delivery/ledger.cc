#include "delivery/ledger_internal.h"
#include "datafeed/transport/log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace datafeed {

std::string ToString(const BatchKey& key) {
  return "epoch " + std::to_string(key.epoch) + " batch " + std::to_string(key.index);
}

namespace internal {
namespace {

using std::chrono::milliseconds;

// Journal record types; never renumber (journals outlive builds).
enum : uint8_t {
  kRecHeader = 1,         // a: fingerprint, b: batches per epoch, c: shard << 32 | num_shards
  kRecConsumer = 2,       // a: ref, b: consumer id
  kRecParent = 3,         // a: ref, b: group digest, c: restart pair
  kRecPublished = 4,      // a: epoch, b: index (a fresh batch went into the ring)
  kRecDelivered = 5,      // a: ref, b: epoch, c: index (appended to the consumer's log)
  kRecAcked = 6,          // a: ref, b: acked count
  kRecTruncated = 7,      // a: ref, b: new log length
  kRecRetired = 8,        // a: ref
  kRecGroupRestored = 9,  // a: group digest, b: restart pair
  kRecSessionOpen = 10,   // a: ref (a consumer connected)
  kRecSessionClose = 11,  // a: ref (its session ended)
};
constexpr uint64_t kJournalVersion = 1;
constexpr size_t kRecordBytes = 32;
constexpr uint64_t kCompactBytes = uint64_t{64} << 20;
// Frames carry 32-bit epochs (BatchMeta::epoch): a journal naming a larger
// one is damaged.
constexpr uint64_t kMaxEpoch = UINT32_MAX;
// At most this many batches to make again after a replay (see ReplayLocked).
constexpr uint64_t kMaxReplayRemakes = uint64_t{1} << 22;

uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

bool Debug() {
  static const bool on = std::getenv("DATAFEED_DEBUG_LEDGER") != nullptr;
  return on;
}

uint32_t RecordCheck(uint8_t type, uint64_t a, uint64_t b, uint64_t c) {
  return static_cast<uint32_t>(Mix(type ^ Mix(a ^ Mix(b ^ Mix(c ^ 0x6A6F75726E616CULL)))));
}

void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

Status BadEpoch(const std::string& path, const BatchKey& key) {
  return Status::DataLoss("journal " + path + " names batch " + ToString(key) + ", an epoch past the largest a frame "
                          "carries (" + std::to_string(kMaxEpoch) + "): the journal is damaged. Move it away to "
                          "start the run afresh");
}

}  // namespace
}  // namespace internal

std::string ToString(const std::vector<BatchKey>& keys, size_t max) {
  std::string out;
  for (size_t i = 0; i < keys.size() && i < max; ++i) {
    if (i) out += ", ";
    out += ToString(keys[i]);
  }
  if (keys.size() > max) out += ", ... (" + std::to_string(keys.size()) + " in all)";
  return out;
}

namespace internal {
namespace {

enum SlotState : uint8_t { kUnmade = 0, kInRing, kQueued, kMaking, kOwned };

}  // namespace

struct Ledger::Slot {
  uint32_t ref = 0;  // owner (kOwned)
  uint8_t state = kUnmade;
};

struct Ledger::Consumer {
  uint64_t id = 0;
  std::vector<BatchKey> log;
  uint64_t acked = 0;
  uint64_t session = 0;  // the live session, 0: none
  bool orphaned = false;  // lost its connection; leases kept until orphan_until
  LedgerClock::time_point orphan_until;
  bool retired = false;   // rolled back by a group restore; cannot be resumed
  // The log position its leases were last taken back from (it stalled, or
  // stayed away past the grace period); UINT64_MAX: never. For messages.
  uint64_t leases_lost_from = UINT64_MAX;
  uint64_t parent_digest = 0;  // derived by a group restore of this list
  uint64_t parent_pair = 0;
};

struct Ledger::Session {
  uint32_t ref = 0;
  std::string peer;
  bool live = true;
  LedgerClock::time_point last_active;
};

Ledger::Ledger(const Options& options) : options_(options) {}

Ledger::~Ledger() {
  if (fd_ >= 0) {
    ::fsync(fd_);
    ::close(fd_);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Result<std::unique_ptr<Ledger>> Ledger::Create(const Options& options) {
  if (options.consumer_timeout_ms <= 0) {
    return Status::InvalidArgument("consumer timeout must be positive, got " +
                                   std::to_string(options.consumer_timeout_ms) + " ms");
  }
  return std::unique_ptr<Ledger>(new Ledger(options));
}

bool Ledger::begun() const {
  std::lock_guard<std::mutex> lock(mu_);
  return begun_;
}

Ledger::Slot* Ledger::SlotLocked(const BatchKey& key) {
  if (key.index >= run_.batches_per_epoch) return nullptr;
  auto& slots = epochs_[key.epoch];
  if (slots.empty()) {
    slots.resize(run_.batches_per_epoch);
    counts_[kUnmade] += run_.batches_per_epoch;
  }
  return &slots[key.index];
}

void Ledger::SetLocked(Slot* slot, uint8_t state, uint32_t ref) {
  --counts_[slot->state];
  ++counts_[state];
  slot->state = state;
  slot->ref = ref;
}

BatchKey Ledger::NextKeyLocked(const BatchKey& key) const {
  if (key.index + 1 < run_.batches_per_epoch) return {key.epoch, key.index + 1};
  return {key.epoch + 1, 0};
}

uint32_t Ledger::RefLocked(uint64_t consumer_id, bool journal) {
  auto it = refs_.find(consumer_id);
  if (it != refs_.end()) return it->second;
  auto c = std::make_unique<Consumer>();
  c->id = consumer_id;
  consumers_.push_back(std::move(c));
  const auto ref = static_cast<uint32_t>(consumers_.size());
  refs_[consumer_id] = ref;
  if (journal) (void)AppendLocked(kRecConsumer, ref, consumer_id, 0);
  return ref;
}

// ------------------------------------------------------------------ journal

JournalRecordBytes JournalRecord(uint8_t type, uint64_t a, uint64_t b, uint64_t c) {
  JournalRecordBytes rec{};
  rec[0] = type;
  const uint32_t check = RecordCheck(type, a, b, c);
  std::memcpy(rec.data() + 4, &check, 4);
  PutU64(rec.data() + 8, a);
  PutU64(rec.data() + 16, b);
  PutU64(rec.data() + 24, c);
  return rec;
}

Status Ledger::AppendLocked(uint8_t type, uint64_t a, uint64_t b, uint64_t c) {
  if (fd_ < 0) return Status::OK();
  const JournalRecordBytes rec = JournalRecord(type, a, b, c);
  const auto t0 = LedgerClock::now();
  ssize_t n;
  do {
    n = ::write(fd_, rec.data(), rec.size());
  } while (n < 0 && errno == EINTR);
  stats_.journal_write_s += std::chrono::duration<double>(LedgerClock::now() - t0).count();
  if (n != static_cast<ssize_t>(sizeof rec)) {
    const int err = n < 0 ? errno : ENOSPC;
    return Status::FromErrno(err, "journal " + journal_path_ + ": cannot append (the positions of "
                                  "this run are no longer recorded; free space in the state directory)");
  }
  journal_bytes_ += sizeof rec;
  ++stats_.journal_records;
  stats_.journal_bytes = journal_bytes_;
  if (journal_bytes_ > kCompactBytes) return CompactLocked();
  return Status::OK();
}

Status Ledger::OpenJournalLocked(RunStart* start) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(options_.state_dir, ec);
  if (!fs::is_directory(options_.state_dir, ec)) {
    return Status::IOError("--state-dir " + options_.state_dir +
                           " is not a directory and cannot be created" + (ec ? ": " + ec.message() : ""));
  }
  const std::string base = options_.state_dir + "/journal-shard" + std::to_string(run_.shard) + "-of-" +
                           std::to_string(run_.num_shards);
  journal_path_ = base + ".dfj";
  const std::string lock_path = base + ".lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return Status::FromErrno(errno, "cannot open " + lock_path);
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status::AlreadyExists("another producer is using the state directory " + options_.state_dir +
                                 " for shard " + std::to_string(run_.shard) +
                                 " (it holds " + lock_path + "); stop it or give another --state-dir");
  }
  if (fs::exists(journal_path_, ec)) {
    DATAFEED_RETURN_NOT_OK(ReplayLocked(journal_path_, start));
  }
  fd_ = ::open(journal_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) return Status::FromErrno(errno, "cannot open the journal " + journal_path_);
  struct stat st {};
  if (::fstat(fd_, &st) == 0) journal_bytes_ = static_cast<uint64_t>(st.st_size);
  if (journal_bytes_ == 0) {
    DATAFEED_RETURN_NOT_OK(AppendLocked(kRecHeader, run_.fingerprint, run_.batches_per_epoch,
                                        (uint64_t{run_.shard} << 32) | run_.num_shards));
    DATAFEED_RETURN_NOT_OK(AppendLocked(kRecHeader, kJournalVersion, 0, 0));
  }
  last_sync_ = LedgerClock::now();
  return Status::OK();
}

Status Ledger::ReplayLocked(const std::string& path, RunStart* start) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "cannot read the journal " + path);
  std::vector<uint8_t> bytes;
  {
    uint8_t buf[1 << 16];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        const int err = errno;
        ::close(fd);
        return Status::FromErrno(err, "cannot read the journal " + path);
      }
      if (n == 0) break;
      bytes.insert(bytes.end(), buf, buf + n);
    }
  }
  ::close(fd);
  size_t valid = 0;
  bool header_seen = false;
  bool any_published = false;
  BatchKey max_published;
  for (size_t off = 0; off + kRecordBytes <= bytes.size(); off += kRecordBytes) {
    const uint8_t* r = bytes.data() + off;
    const uint8_t type = r[0];
    uint32_t check = 0;
    std::memcpy(&check, r + 4, 4);
    const uint64_t a = GetU64(r + 8), b = GetU64(r + 16), c = GetU64(r + 24);
    if (check != RecordCheck(type, a, b, c)) break;  // a torn tail (or garbage): stop here
    valid = off + kRecordBytes;
    if (!header_seen) {
      if (type != kRecHeader) {
        return Status::DataLoss("journal " + path + " does not start with a header; it is not a datafeed "
                                "journal or it is damaged. Move it away to start the run afresh");
      }
      header_seen = true;
      const uint64_t shard_word = (uint64_t{run_.shard} << 32) | run_.num_shards;
      if (a != run_.fingerprint || b != run_.batches_per_epoch || c != shard_word) {
        return Status::FailedPrecondition(
            "the state directory " + options_.state_dir + " holds the positions of another run (fingerprint " +
            Hex(a) + ", " + std::to_string(b) + " batches per epoch, shard " + std::to_string(c >> 32) + "/" +
            std::to_string(c & 0xFFFFFFFF) + "), but this producer serves fingerprint " + Hex(run_.fingerprint) +
            " (" + std::to_string(run_.batches_per_epoch) + " batches per epoch, shard " +
            std::to_string(run_.shard) + "/" + std::to_string(run_.num_shards) +
            "): the dataset, pipeline, seed, batch size or sharding changed. Restart with the flags of that run, "
            "or give a new --state-dir to start another run");
      }
      continue;
    }
    switch (type) {
      case kRecHeader:
        if (a != kJournalVersion) {
          return Status::FailedPrecondition("journal " + path + " is version " + std::to_string(a) +
                                            "; this build reads version " + std::to_string(kJournalVersion));
        }
        break;
      case kRecConsumer: {
        if (a != consumers_.size() + 1) return Status::DataLoss("journal " + path + ": consumer refs out of order");
        RefLocked(b, false);
        break;
      }
      case kRecParent:
        if (a == 0 || a > consumers_.size()) return Status::DataLoss("journal " + path + ": bad consumer ref");
        consumers_[a - 1]->parent_digest = b;
        consumers_[a - 1]->parent_pair = c;
        break;
      case kRecPublished: {
        const BatchKey k{a, b};
        if (k.index >= run_.batches_per_epoch) return Status::DataLoss("journal " + path + ": bad batch index");
        if (k.epoch > kMaxEpoch) return BadEpoch(path, k);
        if (!any_published || max_published < k) max_published = k;
        any_published = true;
        break;
      }
      case kRecDelivered: {
        if (a == 0 || a > consumers_.size()) return Status::DataLoss("journal " + path + ": bad consumer ref");
        if (b > kMaxEpoch) return BadEpoch(path, {b, c});
        Slot* slot = SlotLocked({b, c});
        if (slot == nullptr) return Status::DataLoss("journal " + path + ": bad batch index");
        consumers_[a - 1]->log.push_back({b, c});
        SetLocked(slot, kOwned, static_cast<uint32_t>(a));
        break;
      }
      case kRecAcked:
        if (a == 0 || a > consumers_.size()) return Status::DataLoss("journal " + path + ": bad consumer ref");
        consumers_[a - 1]->acked = std::min<uint64_t>(b, consumers_[a - 1]->log.size());
        break;
      case kRecTruncated: {
        if (a == 0 || a > consumers_.size()) return Status::DataLoss("journal " + path + ": bad consumer ref");
        Consumer& cons = *consumers_[a - 1];
        while (cons.log.size() > b) {
          Slot* slot = SlotLocked(cons.log.back());
          if (slot && slot->ref == a) SetLocked(slot, kUnmade, 0);
          cons.log.pop_back();
        }
        cons.acked = std::min<uint64_t>(cons.acked, cons.log.size());
        break;
      }
      case kRecRetired:
        if (a == 0 || a > consumers_.size()) return Status::DataLoss("journal " + path + ": bad consumer ref");
        consumers_[a - 1]->retired = true;
        break;
      case kRecGroupRestored:
        group_restores_.insert({a, b});
        break;
      case kRecSessionOpen:
        if (a == 0 || a > consumers_.size()) return Status::DataLoss("journal " + path + ": bad consumer ref");
        awaiting_.insert(static_cast<uint32_t>(a));
        break;
      case kRecSessionClose:
        awaiting_.erase(static_cast<uint32_t>(a));
        break;
      default:
        return Status::DataLoss("journal " + path + ": unknown record type " + std::to_string(type) +
                                " (written by a newer datafeed?)");
    }
  }
  if (!header_seen) {
    // An empty or torn-at-birth journal: start afresh.
    if (::truncate(path.c_str(), 0) != 0) return Status::FromErrno(errno, "cannot reset the journal " + path);
    return Status::OK();
  }
  if (valid < bytes.size() && ::truncate(path.c_str(), static_cast<off_t>(valid)) != 0) {
    return Status::FromErrno(errno, "cannot cut the torn end off the journal " + path);
  }
  // What is not owned below the cursor was in the dead producer's ring, or
  // being made: make it again.
  cursor_ = any_published ? NextKeyLocked(max_published) : BatchKey{run_.first_epoch, 0};
  const uint64_t first_epoch = epochs_.empty() ? cursor_.epoch : std::min(epochs_.begin()->first, cursor_.epoch);
  {
    // Every batch below the cursor that no consumer owns is made again. A
    // dead producer cannot have lost more than its ring and its consumers'
    // leases, so a journal implying millions is damaged (and replaying it
    // would allocate and queue them all).
    const uint64_t from = std::min(first_epoch, run_.first_epoch);
    uint64_t below = 0;
    if (__builtin_mul_overflow(cursor_.epoch - from, run_.batches_per_epoch, &below) ||
        __builtin_add_overflow(below, cursor_.index, &below) || below - std::min(below, counts_[kOwned]) > kMaxReplayRemakes) {
      return Status::DataLoss("journal " + path + " says the last batch published was " + ToString(max_published) +
                              " (epochs " + std::to_string(from) + ".." + std::to_string(cursor_.epoch) + " of " +
                              std::to_string(run_.batches_per_epoch) + " batches), which leaves more than " +
                              std::to_string(kMaxReplayRemakes) + " batches no consumer holds to make again: "
                              "the journal is damaged. Move it away to start the run afresh");
    }
  }
  for (uint64_t e = std::min(first_epoch, run_.first_epoch); e <= cursor_.epoch; ++e) {
    const uint64_t end = e < cursor_.epoch ? run_.batches_per_epoch : cursor_.index;
    if (end == 0) continue;
    for (uint64_t i = 0; i < end; ++i) {
      Slot* slot = SlotLocked({e, i});
      if (slot->state != kOwned) {
        SetLocked(slot, kQueued, 0);
        remake_.insert({e, i});
      }
    }
  }
  // Consumers that held leases keep them for the grace period: they may
  // reconnect and say what they received.
  uint64_t orphans = 0, leased = 0;
  const auto until = LedgerClock::now() + milliseconds(options_.consumer_timeout_ms);
  for (auto& c : consumers_) {
    if (c->log.size() > c->acked && !c->retired) {
      c->orphaned = true;
      c->orphan_until = until;
      ++orphans;
      leased += c->log.size() - c->acked;
    }
  }
  // Consumers connected when the producer died may hold batches it had not
  // recorded yet (a shared-memory claim is recorded a moment after it is
  // made): nothing is made again until they reconnected and said what they
  // hold, or the grace period is over.
  hold_until_ = until;
  replayed_ = true;
  start->resumed = true;
  start->remakes = remake_.size();
  start->summary = "resumed from " + path + ": next fresh batch " + ToString(cursor_) + ", " +
                   std::to_string(remake_.size()) + " batches to make again, " + std::to_string(consumers_.size()) +
                   " consumers known, " + std::to_string(leased) + " leases of " + std::to_string(orphans) +
                   " consumers kept for " + std::to_string(options_.consumer_timeout_ms) +
                   " ms while they reconnect; " + std::to_string(awaiting_.size()) +
                   " consumers were connected: nothing is made again until they reconnect (or that time passes)";
  return Status::OK();
}

Status Ledger::CompactLocked() {
  const std::string tmp = journal_path_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "cannot write " + tmp);
  std::vector<uint8_t> out;
  auto put = [&](uint8_t type, uint64_t a, uint64_t b, uint64_t c) {
    const JournalRecordBytes rec = JournalRecord(type, a, b, c);
    out.insert(out.end(), rec.begin(), rec.end());
  };
  put(kRecHeader, run_.fingerprint, run_.batches_per_epoch, (uint64_t{run_.shard} << 32) | run_.num_shards);
  put(kRecHeader, kJournalVersion, 0, 0);
  for (size_t i = 0; i < consumers_.size(); ++i) {
    const Consumer& c = *consumers_[i];
    const uint64_t ref = i + 1;
    put(kRecConsumer, ref, c.id, 0);
    if (c.parent_digest) put(kRecParent, ref, c.parent_digest, c.parent_pair);
    for (const BatchKey& k : c.log) put(kRecDelivered, ref, k.epoch, k.index);
    if (c.acked) put(kRecAcked, ref, c.acked, 0);
    if (c.retired) put(kRecRetired, ref, 0, 0);
    if (c.session != 0) put(kRecSessionOpen, ref, 0, 0);
  }
  for (const auto& g : group_restores_) put(kRecGroupRestored, g.first, g.second, 0);
  if (!(cursor_ == BatchKey{run_.first_epoch, 0})) {
    // The last fresh batch published: the cursor follows it.
    BatchKey last = cursor_.index > 0 ? BatchKey{cursor_.epoch, cursor_.index - 1}
                                      : BatchKey{cursor_.epoch - 1, run_.batches_per_epoch - 1};
    put(kRecPublished, last.epoch, last.index, 0);
  }
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::write(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      return Status::FromErrno(err, "cannot write " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) return Status::FromErrno(errno, "cannot write " + tmp);
  if (::rename(tmp.c_str(), journal_path_.c_str()) != 0) {
    return Status::FromErrno(errno, "cannot rename " + tmp + " to " + journal_path_);
  }
  ::close(fd_);
  fd_ = ::open(journal_path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return Status::FromErrno(errno, "cannot reopen the journal " + journal_path_);
  journal_bytes_ = out.size();
  stats_.journal_bytes = journal_bytes_;
  return Status::OK();
}

void Ledger::Sync() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0) ::fdatasync(fd_);
  last_sync_ = LedgerClock::now();
}

// ------------------------------------------------------------------ producer side

Result<RunStart> Ledger::BeginRun(const RunInfo& run) {
  if (run.fingerprint == 0) return Status::InvalidArgument("BeginRun: the run has no fingerprint");
  if (run.batches_per_epoch == 0) return Status::InvalidArgument("BeginRun: an epoch has no batches");
  if (run.num_shards == 0 || run.shard >= run.num_shards) {
    return Status::InvalidArgument("BeginRun: shard " + std::to_string(run.shard) + " of " +
                                   std::to_string(run.num_shards));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (begun_) return Status::FailedPrecondition("BeginRun called twice");
  run_ = run;
  cursor_ = {run.first_epoch, 0};
  RunStart start;
  if (!options_.state_dir.empty()) DATAFEED_RETURN_NOT_OK(OpenJournalLocked(&start));
  begun_ = true;
  start.run = run_;
  start.next = cursor_;
  start.finished = run.num_epochs != RunInfo::kEndless && cursor_.epoch >= run.first_epoch + run.num_epochs;
  if (start.summary.empty()) {
    start.summary = options_.state_dir.empty()
                        ? "positions kept in memory only (no --state-dir): a restarted producer starts the run again"
                        : "new run, positions journaled in " + journal_path_;
  }
  return start;
}

Status Ledger::Published(const BatchKey& key, bool fresh) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot* slot = SlotLocked(key);
  if (slot == nullptr) return Status::InvalidArgument("Publish: " + ToString(key) + " is outside the run");
  if (!fresh && slot->state != kMaking) {
    // Made again, but meanwhile a consumer that reconnected showed it had it.
    return Status::AlreadyExists(ToString(key) + " was taken back by the consumer that held it");
  }
  if (fresh) {
    DATAFEED_RETURN_NOT_OK(AppendLocked(kRecPublished, key.epoch, key.index, 0));
    if (!(NextKeyLocked(key) < cursor_)) cursor_ = NextKeyLocked(key);
  }
  SetLocked(slot, kInRing, 0);
  return Status::OK();
}

bool Ledger::HoldingLocked() {
  if (awaiting_.empty()) return false;
  if (LedgerClock::now() < hold_until_) return true;
  awaiting_.clear();  // the grace is over: whoever did not come back lost its claims
  return false;
}

std::optional<BatchKey> Ledger::TakeRemake() {
  std::lock_guard<std::mutex> lock(mu_);
  if (remake_.empty() || HoldingLocked()) return std::nullopt;
  const BatchKey key = *remake_.begin();
  remake_.erase(remake_.begin());
  SetLocked(SlotLocked(key), kMaking, 0);
  return key;
}

void Ledger::Unmade(const BatchKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot* slot = SlotLocked(key);
  if (slot && slot->state == kMaking) {
    SetLocked(slot, kQueued, 0);
    remake_.insert(key);
    work_cv_.notify_all();
  }
}

bool Ledger::DoneLocked() const {
  if (!remake_.empty() || counts_[kInRing] || counts_[kQueued] || counts_[kMaking]) return false;
  for (const auto& c : consumers_) {
    if (c->log.size() > c->acked) return false;
  }
  return true;
}

Ledger::Work Ledger::WaitForWork(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (!remake_.empty() && !HoldingLocked()) return Work::kRemake;
    const auto now = LedgerClock::now();
    // A producer restarted on a journal does not end while consumers that
    // were connected when it died may still come back (they may hold
    // batches, or restore checkpoints): until each came back or the grace
    // period is over.
    const bool holding = replayed_ && HoldingLocked();
    bool done = DoneLocked() && !holding;
    if (done && !was_done_) done_since_ = now;
    was_done_ = done;
    if (done && now - done_since_ >= milliseconds(options_.finish_grace_ms)) return Work::kDone;
    if (interrupted_ || deadline.expired()) return Work::kWait;
    // Wake in time for the grace periods too.
    auto until = deadline.when();
    if (holding) until = std::min(until, hold_until_);
    if (done) until = std::min(until, done_since_ + milliseconds(options_.finish_grace_ms));
    if (until == LedgerClock::time_point::max()) {
      work_cv_.wait(lock);
    } else {
      work_cv_.wait_until(lock, until);
    }
  }
}

void Ledger::SetClosed() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
}

void Ledger::Interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  interrupted_ = true;
  work_cv_.notify_all();
}

// ------------------------------------------------------------------ sessions

void Ledger::TruncateLocked(uint32_t ref, uint64_t len, bool lease_loss, bool journal) {
  Consumer& c = *consumers_[ref - 1];
  if (c.log.size() <= len) return;
  if (Debug()) LogInfo(StrFormat("ledger: truncate ref %u from %zu to %llu", ref, c.log.size(), (unsigned long long)len));
  while (c.log.size() > len) {
    const BatchKey key = c.log.back();
    c.log.pop_back();
    Slot* slot = SlotLocked(key);
    if (slot != nullptr && slot->state == kOwned && slot->ref == ref) {
      SetLocked(slot, kQueued, 0);
      remake_.insert(key);
      ++stats_.remade;
    }
  }
  c.acked = std::min<uint64_t>(c.acked, c.log.size());
  if (lease_loss) {
    ++stats_.leases_lost;
    c.leases_lost_from = len;
  }
  if (journal) (void)AppendLocked(kRecTruncated, ref, len, 0);
  work_cv_.notify_all();
}

void Ledger::SupersedeLocked(uint32_t ref) {
  Consumer& c = *consumers_[ref - 1];
  if (c.session == 0) return;
  auto it = sessions_.find(c.session);
  if (it != sessions_.end()) it->second->live = false;
  c.session = 0;
}

Result<Welcome> Ledger::Open(const Hello& hello, const std::string& peer, LedgerClock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!begun_) return Status::Unavailable(options_.name + ": the producer has not started its run yet");
  if (hello.fingerprint != 0 && hello.fingerprint != run_.fingerprint) {
    return Status::FailedPrecondition(
        options_.name + " serves run " + Hex(run_.fingerprint) + " but this consumer belongs to run " +
        Hex(hello.fingerprint) +
        " (another dataset, pipeline, seed, batch size or shard): its batches cannot continue that run");
  }
  const uint64_t session = next_session_++;
  Result<Welcome> welcome = Status::Internal("unset");
  switch (hello.mode) {
    case Hello::Mode::kRestore:
      welcome = OpenRestoreLocked(hello, session);
      break;
    case Hello::Mode::kResume:
      welcome = OpenResumeLocked(hello, session);
      break;
    case Hello::Mode::kNew: {
      if (hello.consumer_id == 0) return Status::InvalidArgument(options_.name + ": a consumer id of 0");
      const bool known = refs_.count(hello.consumer_id) > 0;
      const uint32_t ref = RefLocked(hello.consumer_id, true);
      Consumer& c = *consumers_[ref - 1];
      if (c.retired) {
        return Status::FailedPrecondition(options_.name + ": consumer " + Hex(c.id) +
                                          " was rolled back by a group restore; restore a checkpoint instead");
      }
      SupersedeLocked(ref);
      // The same id without a checkpoint: what it had not acknowledged goes back.
      TruncateLocked(ref, c.acked, known, true);
      Welcome w;
      w.consumer_id = c.id;
      w.position = c.log.size();
      w.summary = known ? "consumer " + Hex(c.id) + " continues at position " + std::to_string(w.position)
                        : "new consumer " + Hex(c.id);
      welcome = w;
      break;
    }
  }
  if (!welcome.ok()) return welcome;
  if (closed_ && !remake_.empty()) {
    return Status::FailedPrecondition(
        options_.name + " finished its run and closed its stream before this consumer came back; the " +
        std::to_string(remake_.size()) + " batches it had been given after its checkpoint were taken back" +
        (options_.state_dir.empty()
             ? " but cannot be served again (the producer has no --state-dir): restart the run"
             : " and are recorded in " + journal_path_ +
                   ": restart the producer with the same flags and --state-dir to serve them"));
  }
  const uint32_t ref = refs_.at(welcome->consumer_id);
  Consumer& c = *consumers_[ref - 1];
  if (awaiting_.erase(ref) && awaiting_.empty()) work_cv_.notify_all();  // the hold may be over
  (void)AppendLocked(kRecSessionOpen, ref, 0, 0);
  auto s = std::make_unique<Session>();
  s->ref = ref;
  s->peer = peer;
  s->last_active = now;
  sessions_[session] = std::move(s);
  c.session = session;
  c.orphaned = false;
  welcome->session = session;
  return welcome;
}

Result<Welcome> Ledger::OpenResumeLocked(const Hello& hello, uint64_t session) {
  (void)session;
  auto it = refs_.find(hello.consumer_id);
  if (it == refs_.end()) {
    if (hello.received == 0) {
      const uint32_t ref = RefLocked(hello.consumer_id, true);
      Welcome w;
      w.consumer_id = consumers_[ref - 1]->id;
      w.position = 0;
      w.summary = "new consumer " + Hex(w.consumer_id);
      return w;
    }
    return Status::DataLoss(
        options_.name + " has no record of consumer " + Hex(hello.consumer_id) + ", which received " +
        std::to_string(hello.received) +
        " batches of this run from it: the producer was restarted without --state-dir (or with another one), "
        "so it cannot tell which batches that consumer holds; continuing would repeat or lose batches. "
        "Restart the producer with its --state-dir, or start the consumers afresh");
  }
  const uint32_t ref = it->second;
  Consumer& c = *consumers_[ref - 1];
  if (c.retired) {
    return Status::Aborted(options_.name + ": consumer " + Hex(c.id) +
                           " was rolled back by a group restore of its checkpoint; this session is over");
  }
  SupersedeLocked(ref);
  const uint64_t m = hello.received;
  const uint64_t tail_start = m - std::min<uint64_t>(m, hello.tail.size());
  const uint64_t known = c.log.size();
  // Positions the ledger has must agree with what the consumer received.
  for (uint64_t p = tail_start; p < std::min(m, known); ++p) {
    if (c.log[p] != hello.tail[p - tail_start]) {
      return Status::DataLoss(options_.name + ": consumer " + Hex(c.id) + " says its batch " + std::to_string(p) +
                              " was " + ToString(hello.tail[p - tail_start]) + " but the producer gave it " +
                              ToString(c.log[p]) + "; the two disagree about what was delivered");
    }
  }
  if (m > known) {
    // It received batches the journal did not record yet (the producer
    // died before writing them down): take them from its tail.
    if (known < tail_start) {
      // Name what the consumer has that the producer gave back (the part
      // of its tail it knows), and why when the ledger knows.
      std::string keys;
      for (const BatchKey& k : hello.tail) keys += (keys.empty() ? "" : ", ") + ToString(k);
      std::string why = " (the producer has no record of positions " + std::to_string(known) + ".." +
                        std::to_string(m - 1) + ")";
      if (c.leases_lost_from <= known) {
        why = ": its leases from position " + std::to_string(c.leases_lost_from) +
              " were taken back while it was away or stalled longer than the consumer timeout (" +
              std::to_string(options_.consumer_timeout_ms) + " ms, --consumer-timeout) and made again for "
              "other consumers, so batches it handed to its trainer may reach another trainer too. Raise "
              "--consumer-timeout above the longest outage or pause";
      }
      return Status::DataLoss(options_.name + ": consumer " + Hex(c.id) + " received " + std::to_string(m) +
                              " batches but the producer recorded only " + std::to_string(known) +
                              " and the consumer's tail [" + keys + "] does not cover the difference" + why);
    }
    std::vector<BatchKey> lost;
    for (uint64_t p = known; p < m; ++p) {
      const BatchKey key = hello.tail[p - tail_start];
      Slot* slot = SlotLocked(key);
      if (slot == nullptr || slot->state == kOwned || slot->state == kInRing) {
        // Already given to someone else, or being made again: this consumer
        // must not keep its copy. Everything from here on goes back.
        lost.push_back(key);
        break;
      }
      remake_.erase(key);
      SetLocked(slot, kOwned, ref);
      c.log.push_back(key);
      (void)AppendLocked(kRecDelivered, ref, key.epoch, key.index);
    }
  }
  TruncateLocked(ref, std::min<uint64_t>(m, c.log.size()), false, true);
  const uint64_t acked = std::min<uint64_t>(hello.acked, c.log.size());
  if (acked > c.acked) {
    c.acked = acked;
    (void)AppendLocked(kRecAcked, ref, acked, 0);
  }
  Welcome w;
  w.consumer_id = c.id;
  w.position = c.log.size();
  w.summary = "consumer " + Hex(c.id) + " resumed at position " + std::to_string(w.position) +
              (w.position < m ? " (" + std::to_string(m - w.position) +
                                    " batches it received were already given to others and must be dropped)"
                              : "");
  return w;
}

Result<Welcome> Ledger::OpenRestoreLocked(const Hello& hello, uint64_t session) {
  (void)session;
  std::vector<StreamPosition> mine;
  for (const StreamPosition& p : hello.restore) {
    if (p.fingerprint == run_.fingerprint && p.shard == run_.shard) mine.push_back(p);
  }
  if (mine.empty()) {
    return Status::FailedPrecondition(
        options_.name + ": the checkpoint has no position for run " + Hex(run_.fingerprint) + " shard " +
        std::to_string(run_.shard) + " (it belongs to another run); restore it against the producer of that run");
  }
  auto rollback = [&](const StreamPosition& p, bool retire) -> Status {
    auto it = refs_.find(p.consumer_id);
    if (it == refs_.end()) {
      if (p.position == 0) return Status::OK();
      return Status::FailedPrecondition(
          options_.name + " has no record of consumer " + Hex(p.consumer_id) + " (position " +
          std::to_string(p.position) + " in the checkpoint): the producer was restarted without its --state-dir, "
          "so it cannot tell what that consumer was given after the checkpoint. Restart it with the --state-dir "
          "of this run");
    }
    const uint32_t ref = it->second;
    Consumer& c = *consumers_[ref - 1];
    // Deliveries the producer had not recorded when it died: the
    // checkpoint's tail names them.
    const uint64_t tail_start = p.position - std::min<uint64_t>(p.position, p.tail.size());
    while (c.log.size() < p.position && c.log.size() >= tail_start) {
      const BatchKey key = p.tail[c.log.size() - tail_start];
      Slot* slot = SlotLocked(key);
      if (slot == nullptr || slot->state == kOwned || slot->state == kInRing) break;
      remake_.erase(key);
      SetLocked(slot, kOwned, ref);
      c.log.push_back(key);
      (void)AppendLocked(kRecDelivered, ref, key.epoch, key.index);
    }
    if (p.position > c.log.size()) {
      // The batches the checkpoint has that the producer gave to others,
      // as far as its tail names them.
      std::vector<BatchKey> repeated;
      for (uint64_t q = std::max<uint64_t>(c.log.size(), tail_start); q < p.position; ++q) {
        repeated.push_back(p.tail[q - tail_start]);
      }
      return Status::DataLoss(
          options_.name + ": the checkpoint says consumer " + Hex(c.id) + " consumed " + std::to_string(p.position) +
          " batches but the producer knows of only " + std::to_string(c.log.size()) + " deliveries to it" +
          (repeated.empty() ? std::string() : " (not " + ToString(repeated) + ")") +
          ": its later batches were taken back (it held them without asking for more, or was "
          "gone, for longer than the consumer timeout) and went to other consumers, so restoring this checkpoint "
          "would repeat them. Raise --consumer-timeout, or restore an earlier checkpoint");
    }
    SupersedeLocked(ref);
    TruncateLocked(ref, p.position, false, true);
    if (c.acked != p.position) {
      c.acked = p.position;
      (void)AppendLocked(kRecAcked, ref, c.acked, 0);
    }
    if (retire && !c.retired) {
      c.retired = true;
      (void)AppendLocked(kRecRetired, ref, 0, 0);
    }
    return Status::OK();
  };
  ++stats_.restores;
  Welcome w;
  if (hello.world_size == 0) {
    if (mine.size() != 1) {
      return Status::InvalidArgument(options_.name + ": a checkpoint with " + std::to_string(mine.size()) +
                                     " consumers' positions needs a group restore (give rank and world size; the positions of one consumer "
                                     "that read over several gRPC streams restore with grpc_streams > 1 too)");
    }
    const StreamPosition& p = mine[0];
    auto it = refs_.find(p.consumer_id);
    if (it != refs_.end() && consumers_[it->second - 1]->retired) {
      return Status::FailedPrecondition(options_.name + ": consumer " + Hex(p.consumer_id) +
                                        " was rolled back by a group restore; restore that group's checkpoint");
    }
    DATAFEED_RETURN_NOT_OK(rollback(p, false));
    const uint32_t ref = RefLocked(p.consumer_id, true);
    w.consumer_id = p.consumer_id;
    w.position = consumers_[ref - 1]->log.size();
    w.summary = "consumer " + Hex(w.consumer_id) + " restored at position " + std::to_string(w.position);
    return w;
  }
  if (hello.rank >= hello.world_size) {
    return Status::InvalidArgument(options_.name + ": rank " + std::to_string(hello.rank) + " of a group of " +
                                   std::to_string(hello.world_size));
  }
  std::sort(mine.begin(), mine.end(), [](const StreamPosition& a, const StreamPosition& b) {
    return a.consumer_id < b.consumer_id;
  });
  uint64_t digest = Mix(run_.fingerprint ^ 0x67726F7570ULL);
  for (const StreamPosition& p : mine) digest = Mix(digest ^ Mix(p.consumer_id) ^ Mix(p.position + 0x1234567));
  const uint64_t pair = Mix(Mix(hello.world_size) ^ Mix(hello.generation + 0x9E3779B97F4A7C15ULL));
  if (!group_restores_.count({digest, pair})) {
    // First rank of this restart: roll every old consumer back to its
    // checkpoint (once), and undo what an earlier restart of the same
    // checkpoint with another group shape consumed.
    for (const StreamPosition& p : mine) DATAFEED_RETURN_NOT_OK(rollback(p, true));
    for (size_t i = 0; i < consumers_.size(); ++i) {
      Consumer& c = *consumers_[i];
      if (c.parent_digest == digest && c.parent_pair != pair) {
        SupersedeLocked(static_cast<uint32_t>(i + 1));
        TruncateLocked(static_cast<uint32_t>(i + 1), 0, false, true);
        c.acked = 0;
        if (!c.retired) {
          c.retired = true;
          (void)AppendLocked(kRecRetired, i + 1, 0, 0);
        }
      }
    }
    group_restores_.insert({digest, pair});
    (void)AppendLocked(kRecGroupRestored, digest, pair, 0);
  }
  uint64_t id = Mix(digest ^ Mix(hello.rank + 0x72616E6BULL) ^ pair);
  if (id == 0) id = 1;
  const bool known = refs_.count(id) > 0;
  const uint32_t ref = RefLocked(id, true);
  Consumer& c = *consumers_[ref - 1];
  if (!known) {
    c.parent_digest = digest;
    c.parent_pair = pair;
    (void)AppendLocked(kRecParent, ref, digest, pair);
  } else {
    // The same rank of the same restart again: start it over.
    SupersedeLocked(ref);
    TruncateLocked(ref, 0, false, true);
    c.acked = 0;
  }
  w.consumer_id = id;
  w.position = 0;
  w.summary = "rank " + std::to_string(hello.rank) + " of " + std::to_string(hello.world_size) +
              " restored a group checkpoint of " + std::to_string(mine.size()) + " consumers as consumer " + Hex(id);
  return w;
}

Status Ledger::Delivered(uint64_t session, const BatchKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end() || !it->second->live) {
    return Status::Aborted(options_.name + ": the session was superseded or closed");
  }
  const uint32_t ref = it->second->ref;
  Slot* slot = SlotLocked(key);
  if (slot == nullptr || slot->state != kInRing) {
    return Status::Internal(options_.name + ": " + ToString(key) + " was delivered but was not waiting in the ring");
  }
  DATAFEED_RETURN_NOT_OK(AppendLocked(kRecDelivered, ref, key.epoch, key.index));
  if (Debug()) LogInfo(StrFormat("ledger: deliver %s to ref %u at %zu", ToString(key).c_str(), ref, consumers_[ref - 1]->log.size()));
  SetLocked(slot, kOwned, ref);
  Consumer& c = *consumers_[ref - 1];
  // A consumer that held nothing was waiting in Next(): the timeout counts
  // from this lease, not from its last Next() (a wait for a batch is no stall).
  if (c.log.size() <= c.acked) it->second->last_active = std::max(it->second->last_active, LedgerClock::now());
  c.log.push_back(key);
  ++stats_.delivered;
  return Status::OK();
}

void Ledger::Returned(const BatchKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot* slot = SlotLocked(key);
  if (slot != nullptr && slot->state == kInRing) {
    if (Debug()) LogInfo(StrFormat("ledger: returned %s", ToString(key).c_str()));
    SetLocked(slot, kQueued, 0);
    remake_.insert(key);
    ++stats_.remade;
    work_cv_.notify_all();
  }
}

void Ledger::Progress(uint64_t session, uint64_t acked, LedgerClock::time_point active_at) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end() || !it->second->live) return;
  if (active_at > it->second->last_active) it->second->last_active = active_at;
  const uint32_t ref = it->second->ref;
  Consumer& c = *consumers_[ref - 1];
  acked = std::min<uint64_t>(acked, c.log.size());
  if (acked > c.acked) {
    if (Debug()) LogInfo(StrFormat("ledger: ref %u acked %llu", ref, (unsigned long long)acked));
    c.acked = acked;
    (void)AppendLocked(kRecAcked, ref, acked, 0);
    work_cv_.notify_all();
  }
}

void Ledger::Close(uint64_t session, CloseKind kind, LedgerClock::time_point now, uint64_t handed) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return;
  std::unique_ptr<Session> s = std::move(it->second);
  sessions_.erase(it);
  if (!s->live) return;  // superseded: the consumer is someone else's now
  Consumer& c = *consumers_[s->ref - 1];
  if (c.session == session) c.session = 0;
  (void)AppendLocked(kRecSessionClose, s->ref, 0, 0);
  if (kind == CloseKind::kDied) {
    // What it read ahead goes back now; what its trainer held waits out the
    // grace period (a checkpoint may count it).
    TruncateLocked(s->ref, std::max<uint64_t>(c.acked, std::min<uint64_t>(handed, c.log.size())), true, true);
  }
  if (kind != CloseKind::kClean && c.log.size() > c.acked) {
    c.orphaned = true;
    c.orphan_until = now + milliseconds(options_.consumer_timeout_ms);
    return;
  }
  TruncateLocked(s->ref, c.acked, false, true);
}

bool Ledger::Live(uint64_t session) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session);
  return it != sessions_.end() && it->second->live;
}

size_t Ledger::LiveSessions() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& kv : sessions_) n += kv.second->live ? 1 : 0;
  return n;
}

uint64_t Ledger::Position(uint64_t session) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return 0;
  return consumers_[it->second->ref - 1]->log.size();
}

std::vector<Revocation> Ledger::Tick(LedgerClock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Revocation> out;
  const auto limit = milliseconds(options_.consumer_timeout_ms);
  for (size_t i = 0; i < consumers_.size(); ++i) {
    Consumer& c = *consumers_[i];
    const auto ref = static_cast<uint32_t>(i + 1);
    if (c.orphaned && c.session == 0 && now >= c.orphan_until) {
      c.orphaned = false;
      TruncateLocked(ref, c.acked, true, true);
      continue;
    }
    if (c.session == 0 || c.log.size() <= c.acked) continue;
    auto it = sessions_.find(c.session);
    if (it == sessions_.end() || now - it->second->last_active < limit) continue;
    Revocation r;
    r.session = c.session;
    r.consumer_id = c.id;
    r.from = c.acked;
    r.keys.assign(c.log.begin() + static_cast<std::ptrdiff_t>(c.acked), c.log.end());
    TruncateLocked(ref, c.acked, true, true);
    // It stays live: if it was only reading ahead it goes on from `from`.
    it->second->last_active = now;
    out.push_back(std::move(r));
  }
  if (fd_ >= 0 && now - last_sync_ > std::chrono::seconds(1)) {
    ::fdatasync(fd_);
    last_sync_ = now;
  }
  return out;
}

LedgerStats Ledger::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  LedgerStats s = stats_;
  s.consumers = consumers_.size();
  for (const auto& kv : sessions_) s.live_sessions += kv.second->live ? 1 : 0;
  return s;
}

}  // namespace internal
}  // namespace datafeed
