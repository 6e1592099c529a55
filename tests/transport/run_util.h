// Helpers for the delivery-contract tests (delivery.h): a small run whose
// batches carry an identity and a content that is a function of it, and a
// loop that serves such a run on any writer the way datafeed::Producer does
// (fresh batches in order, batches to make again first, until every batch
// was acknowledged).
#ifndef DATAFEED_TESTS_TRANSPORT_RUN_UTIL_H_
#define DATAFEED_TESTS_TRANSPORT_RUN_UTIL_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/transport/transport.h"
#include "test_util.h"

namespace datafeed {
// gtest prints keys as "epoch 2 batch 17".
inline void PrintTo(const BatchKey& key, std::ostream* os) { *os << ToString(key); }
}  // namespace datafeed

namespace datafeed::testing {

inline constexpr uint64_t kTestFingerprint = 0x7e57'f1a9'0000'0001ULL;

inline RunInfo TestRun(uint64_t batches_per_epoch, uint64_t epochs, uint64_t fingerprint = kTestFingerprint) {
  RunInfo run;
  run.fingerprint = fingerprint;
  run.batches_per_epoch = batches_per_epoch;
  run.num_epochs = epochs;
  return run;
}

// The id FillBatch writes for a batch (meta().first_index and the bytes):
// the content is a function of the identity alone.
inline uint64_t IdOf(const BatchKey& key) { return key.epoch * 1'000'000 + key.index; }
inline BatchKey KeyOf(const BatchMeta& meta) { return {meta.epoch, meta.batch_index}; }

// Every key of the run, in order.
inline std::vector<BatchKey> AllKeys(const RunInfo& run) {
  std::vector<BatchKey> keys;
  for (uint64_t e = run.first_epoch; e < run.first_epoch + run.num_epochs; ++e) {
    for (uint64_t i = 0; i < run.batches_per_epoch; ++i) keys.push_back({e, i});
  }
  return keys;
}

// Empty if the batch is `run`'s and its bytes are those of its identity.
inline std::string CheckRunBatch(const BatchView& v, const RunInfo& run) {
  const BatchMeta& m = v.meta();
  if (m.fingerprint != run.fingerprint) return "a batch of another run: " + BatchIdString(m);
  if (m.first_index != IdOf(KeyOf(m))) return "content id " + std::to_string(m.first_index) + " of " + BatchIdString(m);
  return CheckBatch(v);
}

// Loans, fills and publishes one batch of the run. A loan that times out is
// retried until `stop`.
inline Status PublishKey(BatchWriter& w, const RunInfo& run, const BatchKey& key, bool remake,
                         const std::atomic<bool>& stop) {
  auto layout = TestLayout(8, 512);
  for (;;) {
    Result<WritableBatch> b = w.Loan(layout, Deadline::AfterMillis(100));
    if (b.status().IsDeadlineExceeded()) {
      if (stop.load()) return Status::Cancelled("stopped");
      continue;
    }
    DATAFEED_RETURN_NOT_OK(b.status());
    FillBatch(*b, IdOf(key));
    BatchMeta& m = b->meta();
    m.fingerprint = run.fingerprint;
    m.shard = run.shard;
    m.num_shards = run.num_shards;
    m.epoch = static_cast<uint32_t>(key.epoch);
    m.batch_index = key.index;
    m.attempt = remake ? 1 : 0;
    return w.Publish(std::move(*b));
  }
}

// Serves the writer's run to the end, as datafeed::Producer does: a batch
// to make again goes first, then the next fresh one; once every fresh batch
// is out, waits until the ledger says every batch was acknowledged. OK at
// the end (the caller closes the writer), Cancelled when `stop` is set.
// `published` (optional) counts publications.
inline Status ServeRun(BatchWriter& w, const std::atomic<bool>& stop, std::atomic<uint64_t>* published = nullptr) {
  DATAFEED_ASSIGN_OR_RETURN(RunStart start, w.run_start());
  const RunInfo& run = start.run;
  BatchKey next = start.next;
  const BatchKey end{run.first_epoch + run.num_epochs, 0};
  auto count = [&] {
    if (published != nullptr) published->fetch_add(1);
  };
  for (;;) {
    if (stop.load()) return Status::Cancelled("stopped");
    if (std::optional<BatchKey> key = w.TakeRemake()) {
      Status st = PublishKey(w, run, *key, true, stop);
      if (!st.ok()) {
        w.Unmade(*key);
        return st;
      }
      count();
      continue;
    }
    if (next < end) {
      DATAFEED_RETURN_NOT_OK(PublishKey(w, run, next, false, stop));
      count();
      next = next.index + 1 < run.batches_per_epoch ? BatchKey{next.epoch, next.index + 1}
                                                    : BatchKey{next.epoch + 1, 0};
      continue;
    }
    if (w.WaitForWork(Deadline::AfterMillis(100)) == BatchWriter::Work::kDone) return Status::OK();
  }
}

// Serves the writer's run on a thread (ServeRun) and closes the writer once
// every batch was acknowledged, as a producer does.
class ServeThread {
 public:
  explicit ServeThread(BatchWriter& w) : w_(w), thread_([this] { Serve(); }) {}
  ~ServeThread() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  // The run's end: OK once every batch was acknowledged and the writer
  // closed. A run that does not end within `limit_ms` (a batch nobody
  // acknowledges) is stopped: DeadlineExceeded.
  Status Join(int64_t limit_ms = 30'000) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::milliseconds(limit_ms), [&] { return done_; })) {
        stop_.store(true);
      }
    }
    thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    return timed_out_ ? Status::DeadlineExceeded("the run did not end within " + std::to_string(limit_ms) +
                                                 " ms (a batch was never acknowledged)")
                      : status_;
  }

 private:
  void Serve() {
    Status st = ServeRun(w_, stop_);
    if (st.ok()) st = w_.Close();
    std::lock_guard<std::mutex> lock(mu_);
    timed_out_ = st.code() == StatusCode::kCancelled;
    status_ = st;
    done_ = true;
    cv_.notify_all();
  }

  BatchWriter& w_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool timed_out_ = false;
  Status status_;
  std::thread thread_;
};

// Keys counted across consumers: Check() says what is missing or repeated.
class KeyTally {
 public:
  void Add(const BatchKey& key, const std::string& who) { seen_[key].push_back(who); }
  void Add(const std::vector<BatchKey>& keys, const std::string& who) {
    for (const BatchKey& k : keys) Add(k, who);
  }
  // Empty when every key of `expected` was seen exactly once and nothing else.
  std::string Check(const std::vector<BatchKey>& expected) const {
    std::string out;
    std::map<BatchKey, std::vector<std::string>> rest = seen_;
    for (const BatchKey& k : expected) {
      auto it = rest.find(k);
      if (it == rest.end()) {
        out += ToString(k) + " missing; ";
        continue;
      }
      if (it->second.size() != 1) out += ToString(k) + " " + std::to_string(it->second.size()) + " times (" + Join(it->second) + "); ";
      rest.erase(it);
    }
    for (const auto& kv : rest) out += ToString(kv.first) + " not of the run (" + Join(kv.second) + "); ";
    return out;
  }

 private:
  static std::string Join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }
  std::map<BatchKey, std::vector<std::string>> seen_;
};

}  // namespace datafeed::testing

#endif  // DATAFEED_TESTS_TRANSPORT_RUN_UTIL_H_
