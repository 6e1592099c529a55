#include "datafeed/consumer/consumer.h"
#include "datafeed/transport/log.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace datafeed {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Dimension 0 of the first tensor that has one: the batch size for the usual
// {"image" [B,...], "label" [B]} batches.
uint64_t SamplesIn(const BatchView& batch) {
  for (const TensorView& t : batch.frame().tensors()) {
    if (!t.shape.empty()) return t.shape[0] > 0 ? static_cast<uint64_t>(t.shape[0]) : 0;
  }
  return 0;
}

}  // namespace

std::string ConsumerStats::ToString() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "%llu batches, %llu samples, %.0f samples/s, %.2f GB/s, waiting %.1f%% of %.1f s",
                static_cast<unsigned long long>(batches), static_cast<unsigned long long>(samples),
                samples_per_s(), elapsed_s > 0 ? bytes / elapsed_s / 1e9 : 0.0,
                100.0 * wait_fraction(), elapsed_s);
  return buf;
}

std::string InputBoundAdvice(double wait_fraction) {
  if (!(wait_fraction >= kInputBoundFraction)) return "";
  return StrFormat("input-bound: the trainer waited %.0f%% of the time for batches; more producer threads "
                   "(datafeed-producer --threads) or more producers (--num-shards) would help",
                   100.0 * wait_fraction);
}

struct Consumer::Impl {
  Impl(std::unique_ptr<BatchReader> r, ConsumerOptions o, std::string uri)
      : reader(std::move(r)), options(std::move(o)), endpoint(std::move(uri)) {}

  // The prefetch thread: keeps up to options.prefetch batches in `queue`.
  void PrefetchLoop();
  // Records a status that ends the stream (the first one wins).
  void EndLocked(Status st) {
    if (end.ok()) end = std::move(st);
  }
  void MaybeLog(Clock::time_point now);
  // The clock starts at the first Next() or Peek(). mu held.
  void StartLocked(Clock::time_point entered) {
    if (started) return;
    started = true;
    first_next = entered;
    next_log = entered + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.log_every_s));
  }

  std::unique_ptr<BatchReader> reader;
  const ConsumerOptions options;
  // Set by Open() before the Consumer is returned; read-only afterwards
  // (LoadState replaces the reader under `reopen_mu`).
  std::string endpoint;
  std::optional<Endpoint> opened;  // what Open() opened (LoadState reopens it)

  mutable std::mutex mu;
  std::condition_variable ready_cv;  // a batch was queued, or the stream ended
  std::condition_variable space_cv;  // the queue has room, or stopping
  std::deque<BatchView> queue;       // prefetched (taken, not handed out), in delivery order
  uint64_t dropped = 0;              // prefetched batches whose lease was taken back
  Status end;                        // why the stream ended; OK while it goes on
  Status last;                       // status() (see the header)
  bool stopping = false;

  // Statistics, guarded by mu.
  bool started = false;      // the stats clock runs (first Next() or Peek())
  bool next_called = false;  // a Next() came (LoadState must come before)
  Clock::time_point first_next;
  // The stream's end reached (by Next() or Peek()): the stats clock stops
  // there, and the wait for the end is no wait for data (the producer
  // lingering, a run's last consumer finishing).
  bool ended = false;
  Clock::time_point ended_at;
  Clock::duration waited{0};
  // Adds a wait in Next()/Peek() that began at `entered` and ended now with
  // `st`: at the end of the stream it stops the clock instead.
  void WaitedLocked(Clock::time_point entered, Clock::time_point now, const Status& st) {
    if (st.IsEndOfStream()) {
      if (!ended) ended_at = entered;
      ended = true;
      return;
    }
    waited += now - entered;
  }
  Clock::time_point ElapsedUntilLocked(Clock::time_point now) const { return ended ? ended_at : now; }
  uint64_t batches = 0, samples = 0, bytes = 0;
  // The periodic log line's previous snapshot.
  Clock::time_point next_log;
  ConsumerStats logged;

  std::mutex join_mu;  // serialises joining `thread`
  std::thread thread;
};

void Consumer::Impl::PrefetchLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu);
      space_cv.wait(lock, [&] {
        return stopping || queue.size() < static_cast<size_t>(options.prefetch);
      });
      if (stopping) return;
    }
    // Claimed, not handed out: Next() hands it out. Stop() wakes this with
    // reader->Cancel().
    Result<BatchView> r = reader->Take(Deadline::Infinite());
    std::unique_lock<std::mutex> lock(mu);
    if (stopping) {
      lock.unlock();
      return;  // `r` (a batch, if any) is given back as it goes out of scope
    }
    if (r.ok()) {
      queue.push_back(std::move(r).value());
      ready_cv.notify_all();
      continue;
    }
    // A reader with its own time limit: keep waiting.
    if (r.status().IsDeadlineExceeded()) continue;
    EndLocked(r.status());
    ready_cv.notify_all();
    return;
  }
}

void Consumer::Impl::MaybeLog(Clock::time_point now) {
  // Called with mu held.
  if (options.log_every_s <= 0 || now < next_log) return;
  ConsumerStats s;
  s.batches = batches;
  s.samples = samples;
  s.bytes = bytes;
  s.elapsed_s = Seconds(now - first_next);
  s.wait_s = Seconds(waited);
  const double dt = s.elapsed_s - logged.elapsed_s;
  const double dw = s.wait_s - logged.wait_s;
  const std::string advice = InputBoundAdvice(dt > 0 ? dw / dt : 0.0);
  LogInfo(StrFormat("%s: %s (last %.1f s: %.0f samples/s, waiting %.1f%%)%s%s", options.log_name.c_str(),
                    s.ToString().c_str(), dt, dt > 0 ? (s.samples - logged.samples) / dt : 0.0,
                    dt > 0 ? 100.0 * dw / dt : 0.0, advice.empty() ? "" : "; ", advice.c_str()));
  logged = s;
  while (next_log <= now) {
    next_log += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(options.log_every_s));
  }
}

Consumer::Consumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Consumer::~Consumer() { Stop(); }

Result<std::unique_ptr<Consumer>> Consumer::Open(std::string_view uri,
                                                 const ConsumerOptions& options,
                                                 std::string_view transport) {
  DATAFEED_ASSIGN_OR_RETURN(Endpoint endpoint, ResolveEndpoint(uri, transport));
  return Open(endpoint, options);
}

Result<std::unique_ptr<Consumer>> Consumer::Open(const Endpoint& endpoint,
                                                 const ConsumerOptions& options) {
  if (options.prefetch < 0) {
    return Status::InvalidArgument("ConsumerOptions::prefetch must be >= 0, got " +
                                   std::to_string(options.prefetch));
  }
  DATAFEED_ASSIGN_OR_RETURN(std::unique_ptr<BatchReader> reader,
                            OpenReader(endpoint, options.reader));
  DATAFEED_ASSIGN_OR_RETURN(std::unique_ptr<Consumer> consumer, Make(std::move(reader), options));
  consumer->impl_->endpoint = endpoint.ToString();
  consumer->impl_->opened = endpoint;
  return consumer;
}

Result<std::unique_ptr<Consumer>> Consumer::Make(std::unique_ptr<BatchReader> reader,
                                                 const ConsumerOptions& options) {
  if (reader == nullptr) return Status::InvalidArgument("Consumer::Make: null reader");
  if (options.prefetch < 0) {
    return Status::InvalidArgument("ConsumerOptions::prefetch must be >= 0, got " +
                                   std::to_string(options.prefetch));
  }
  auto impl = std::make_unique<Impl>(std::move(reader), options, std::string());
  Impl* raw = impl.get();
  std::unique_ptr<Consumer> consumer(new Consumer(std::move(impl)));
  if (options.prefetch > 0) raw->thread = std::thread([raw] { raw->PrefetchLoop(); });
  return consumer;
}

Result<BatchView> Consumer::Next() {
  Impl& m = *impl_;
  const Clock::time_point entered = Clock::now();
  const Deadline deadline = m.options.timeout_ms < 0 ? Deadline::Infinite()
                                                     : Deadline::AfterMillis(m.options.timeout_ms);
  std::unique_lock<std::mutex> lock(m.mu);
  m.StartLocked(entered);
  m.next_called = true;
  Result<BatchView> got = Status::Internal("unset");
  // Asking for the next batch acknowledges every batch handed out before.
  lock.unlock();
  Status acked = m.reader->Ack();
  lock.lock();
  if (!acked.ok() && m.end.ok()) m.EndLocked(acked);
  if (m.options.prefetch > 0) {
    auto have = [&] { return !m.queue.empty() || !m.end.ok(); };
    for (;;) {
      if (deadline.infinite()) {
        m.ready_cv.wait(lock, have);
      } else {
        m.ready_cv.wait_until(lock, deadline.when(), have);
      }
      if (!m.end.ok() && (m.queue.empty() || m.end.code() == StatusCode::kAborted)) {
        got = m.end;
      } else if (!m.queue.empty()) {
        BatchView view = std::move(m.queue.front());
        m.queue.pop_front();
        m.space_cv.notify_all();
        lock.unlock();
        Result<bool> handed = m.reader->Hand(view);
        lock.lock();
        if (!handed.ok()) {
          m.EndLocked(handed.status());
          got = m.end;
        } else if (!*handed) {
          ++m.dropped;  // its lease was taken back while it waited: the next one
          continue;
        } else {
          got = std::move(view);
        }
      } else {
        got = Status::DeadlineExceeded("no batch from " +
                                       (m.endpoint.empty() ? std::string("the reader") : m.endpoint) + " within " +
                                       std::to_string(m.options.timeout_ms) + " ms; is the producer running?");
      }
      break;
    }
  } else if (!m.end.ok()) {
    got = m.end;
  } else {
    // No prefetch thread: read here, without holding the lock (Stop() and
    // stats() stay responsive; Stop() cancels the reader).
    lock.unlock();
    got = m.reader->Next(deadline);
    lock.lock();
    if (!got.ok() && !got.status().IsDeadlineExceeded()) {
      // After Stop() the reader says Cancelled; report the Consumer's reason.
      m.EndLocked(got.status());
      got = m.end;
    } else if (got.ok() && m.stopping) {
      got = m.end;  // Stop() raced with a batch arriving: it is given back
    }
  }
  const Clock::time_point now = Clock::now();
  m.WaitedLocked(entered, now, got.status());
  if (got.ok()) {
    ++m.batches;
    m.samples += SamplesIn(*got);
    m.bytes += got->frame().size();
    m.last = Status::OK();
    m.MaybeLog(now);
  } else {
    m.last = got.status();
  }
  return got;
}

void Consumer::Stop() {
  Impl& m = *impl_;
  std::deque<BatchView> dropped;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (!m.stopping) {
      m.stopping = true;
      m.EndLocked(Status::Cancelled("consumer stopped" +
                                    (m.endpoint.empty() ? std::string() : " (" + m.endpoint + ")")));
      dropped.swap(m.queue);
      m.ready_cv.notify_all();
      m.space_cv.notify_all();
    }
  }
  // Handed batches count as consumed, the read-ahead goes back at once;
  // then the reader stops (Cancel first would cut a gRPC stream before it
  // could say so, and the producer would hold the read-ahead for its
  // consumer timeout).
  m.reader->Leave();
  m.reader->Cancel();
  dropped.clear();  // gives the prefetched batches back, outside the lock
  std::lock_guard<std::mutex> join_lock(m.join_mu);
  if (m.thread.joinable()) m.thread.join();
}

Status Consumer::status() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->last;
}

ConsumerStats Consumer::stats() const {
  const Impl& m = *impl_;
  const Clock::time_point now = Clock::now();
  std::lock_guard<std::mutex> lock(m.mu);
  ConsumerStats s;
  s.batches = m.batches;
  s.samples = m.samples;
  s.bytes = m.bytes;
  s.wait_s = Seconds(m.waited);
  s.elapsed_s = m.started ? Seconds(m.ElapsedUntilLocked(now) - m.first_next) : 0;
  s.dropped = m.dropped;
  return s;
}

ConsumerState Consumer::state() const { return impl_->reader->state(); }

Status Consumer::LoadState(const ConsumerState& state, const SessionOptions& group) {
  return LoadState(std::vector<ConsumerState>{state}, group);
}

Status Consumer::LoadState(const std::vector<ConsumerState>& states, const SessionOptions& group) {
  Impl& m = *impl_;
  if (!m.opened) {
    return Status::FailedPrecondition("Consumer::LoadState needs a Consumer opened from an endpoint (Open), "
                                      "not one made from a reader");
  }
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.next_called) return Status::FailedPrecondition("Consumer::LoadState must come before the first Next()");
  }
  ConsumerOptions options = m.options;
  options.reader.session = group;
  options.reader.session.restore.clear();
  for (const ConsumerState& s : states) {
    options.reader.session.restore.insert(options.reader.session.restore.end(), s.streams.begin(), s.streams.end());
  }
  if (options.reader.session.restore.empty()) {
    return Status::InvalidArgument("Consumer::LoadState: the state has no stream (taken from a producer without a run?)");
  }
  // The current session (what it read ahead) goes back first.
  Stop();
  {
    std::lock_guard<std::mutex> join_lock(m.join_mu);
    if (m.thread.joinable()) m.thread.join();
  }
  m.reader.reset();
  DATAFEED_ASSIGN_OR_RETURN(std::unique_ptr<BatchReader> reader, OpenReader(*m.opened, options.reader));
  std::lock_guard<std::mutex> lock(m.mu);
  m.reader = std::move(reader);
  m.end = Status::OK();
  m.last = Status::OK();
  m.stopping = false;
  m.queue.clear();
  Impl* raw = &m;
  if (m.options.prefetch > 0) m.thread = std::thread([raw] { raw->PrefetchLoop(); });
  return Status::OK();
}

Result<BatchMeta> Consumer::Peek() {
  Impl& m = *impl_;
  if (m.options.prefetch == 0) {
    return Status::FailedPrecondition("Consumer::Peek needs a prefetching consumer (ConsumerOptions::prefetch > 0)");
  }
  DATAFEED_RETURN_NOT_OK(m.reader->Ack());
  const Clock::time_point entered = Clock::now();
  const Deadline deadline = m.options.timeout_ms < 0 ? Deadline::Infinite()
                                                     : Deadline::AfterMillis(m.options.timeout_ms);
  std::unique_lock<std::mutex> lock(m.mu);
  m.StartLocked(entered);
  auto have = [&] { return !m.queue.empty() || !m.end.ok(); };
  bool arrived = true;
  if (deadline.infinite()) {
    m.ready_cv.wait(lock, have);
  } else {
    arrived = m.ready_cv.wait_until(lock, deadline.when(), have);
  }
  // Waiting here for the next batch is the trainer waiting for data, as in
  // Next() (Python's Loader peeks before it takes each batch).
  m.WaitedLocked(entered, Clock::now(), m.queue.empty() ? m.end : Status::OK());
  if (!arrived) {
    return Status::DeadlineExceeded("no batch from " + (m.endpoint.empty() ? std::string("the reader") : m.endpoint) +
                                    " within " + std::to_string(m.options.timeout_ms) + " ms");
  }
  if (m.queue.empty()) return m.end;
  return m.queue.front().meta();
}

const std::string& Consumer::endpoint() const { return impl_->endpoint; }

Scheme Consumer::transport() const { return impl_->reader->transport(); }
uint64_t Consumer::batches_per_epoch() const { return impl_->reader->batches_per_epoch(); }

std::vector<ProducerLink> Consumer::producers() const { return impl_->reader->links(); }

Consumer::Iterator Consumer::begin() { return Iterator(this); }

Consumer::Iterator& Consumer::Iterator::operator++() {
  Advance();
  return *this;
}

void Consumer::Iterator::Advance() {
  current_ = BatchView();  // give the previous batch back before waiting
  Result<BatchView> next = consumer_->Next();
  if (next.ok()) {
    current_ = std::move(next).value();
  } else {
    done_ = true;
  }
}

Status FinishTensor(const TensorView& tensor, float* out, size_t out_floats) {
  if (tensor.finish.empty()) {
    return Status::InvalidArgument("FinishTensor: tensor '" + std::string(tensor.name) +
                                   "' has no finish (its producer pipeline was not split); use it as is");
  }
  if (tensor.dtype != DType::kUInt8) {
    return Status::InvalidArgument("FinishTensor: tensor '" + std::string(tensor.name) + "' is " +
                                   DTypeName(tensor.dtype) + ", a finish needs uint8");
  }
  DATAFEED_ASSIGN_OR_RETURN(Finish finish, Finish::Parse(tensor.finish));
  return finish.Apply(tensor.data, tensor.shape, out, out_floats)
      .WithContext("FinishTensor '" + std::string(tensor.name) + "'");
}

Result<std::vector<float>> FinishTensor(const TensorView& tensor) {
  std::vector<float> out(static_cast<size_t>(tensor.numel()));
  DATAFEED_RETURN_NOT_OK(FinishTensor(tensor, out.data(), out.size()));
  return out;
}

}  // namespace datafeed
