// A consumer of several producers at once (docs/DESIGN.md, "Many
// producers"): one reader per producer (OpenAutoReader: its ring when it is
// on this host, its stream otherwise), each fed by a pump thread that keeps
// at most one batch taken ahead, merged into one Take(). Producers are named
// by a list (grpc://h1:5000,h2:5000) or by DNS names that may resolve to
// several addresses, resolved again now and then so producers that appear
// are read too. A producer that ends or is lost does not stop the others.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "multi/multi_reader_internal.h"
#include "transports_internal.h"
#include "datafeed/transport/log.h"

namespace datafeed::internal {
namespace {

int64_t NowNs() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

std::mutex& ResolverMutex() {
  static std::mutex mu;
  return mu;
}
HostResolver& ResolverSlot() {
  static HostResolver resolver;
  return resolver;
}

Result<std::vector<std::string>> ResolveWithDns(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    return Status::Unavailable("cannot resolve '" + host + "': " + gai_strerror(rc) +
                               " (a DNS name of producers: is the Service there, are its pods ready?)");
  }
  std::vector<std::string> out;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    const void* addr = a->ai_family == AF_INET ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                                               : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
        inet_ntop(a->ai_family, addr, text, sizeof text) != nullptr &&
        std::find(out.begin(), out.end(), text) == out.end()) {
      out.emplace_back(text);
    }
  }
  freeaddrinfo(res);
  return out;
}

Result<std::vector<std::string>> Resolve(const std::string& host) {
  HostResolver resolver;
  {
    std::lock_guard<std::mutex> lock(ResolverMutex());
    resolver = ResolverSlot();
  }
  return resolver ? resolver(host) : ResolveWithDns(host);
}

// Codes that end the consumer's session with a producer for good: the
// contract was broken or the consumer is misconfigured. Everything else
// (a producer gone, a connection cut) loses that producer only.
bool IsFatal(StatusCode code) {
  return code == StatusCode::kDataLoss || code == StatusCode::kAborted || code == StatusCode::kInvalidArgument ||
         code == StatusCode::kFailedPrecondition || code == StatusCode::kInternal ||
         code == StatusCode::kResourceExhausted;
}

class MultiReader final : public BatchReader {
 public:
  MultiReader(const Endpoint& endpoint, const ReaderOptions& options) : endpoint_(endpoint), options_(options) {
    names_.push_back({endpoint.name, endpoint.port});
    for (const Endpoint::HostPort& hp : endpoint.more) names_.push_back({hp.host, hp.port});
  }

  ~MultiReader() override {
    Leave();
    Cancel();
    if (resolver_.joinable()) resolver_.join();
    for (auto& c : children_) {
      if (c->pump.joinable()) c->pump.join();
    }
  }

  // Connects to every producer that answers before the connect deadline
  // (at least one); the others are tried again in the background.
  Status Start() {
    const Deadline deadline = Deadline::AfterMillis(std::max<int64_t>(options_.connect_timeout_ms, 1000));
    Status last = Status::Unavailable("no producer answered");
    for (int64_t backoff_ms = 50;; backoff_ms = std::min<int64_t>(backoff_ms * 2, 1000)) {
      Status st = Discover(deadline, /*first=*/true);
      if (!st.ok() && st.code() != StatusCode::kUnavailable) return st;
      if (!st.ok()) last = st;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!children_.empty()) break;
      }
      if (deadline.expired()) {
        return Status::Unavailable(endpoint_.ToString() + ": no producer answered before the connect deadline (" +
                                   std::to_string(options_.connect_timeout_ms) + " ms); last: " + last.ToString());
      }
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(std::chrono::milliseconds(backoff_ms), deadline.remaining()));
    }
    if (!options_.session.restore.empty() && !restored_any_) {
      return Status::FailedPrecondition(
          endpoint_.ToString() + ": the checkpoint has no position for the run of any producer there (it belongs to "
          "another run); restore it against the producers of that run");
    }
    if (options_.resolve_every_ms > 0) resolver_ = std::thread([this] { ResolveLoop(); });
    return Status::OK();
  }

  Result<BatchView> Take(Deadline deadline) override {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t barrier_ns = std::max<int64_t>(0, options_.epoch_barrier_ms) * 1'000'000;
    for (;;) {
      if (cancelled_) return Status::Cancelled(endpoint_.ToString() + ": the reader was cancelled");
      if (!fatal_.ok()) return fatal_;
      const int64_t now = NowNs();
      // The lowest epoch a producer still sending may send this consumer:
      // batches of later epochs wait for it, up to the barrier.
      // Several streams to one producer (grpc_streams) are held to each
      // other as producers are: a batch the producer sent earlier may still
      // be on its way on a sibling's connection, and handing out a later
      // epoch first would end a pass (Loader's split_epochs) one batch short.
      uint64_t floor = UINT64_MAX;
      int64_t wake_ns = INT64_MAX;
      bool reading = false;
      for (auto& c : children_) {
        if (c->ready) {
          floor = std::min<uint64_t>(floor, c->ready->meta().epoch);
        } else if (c->state == Child::kReading) {
          reading = true;
          if (now - c->heard_ns > barrier_ns) continue;  // silent too long: not waited for
          if (c->any || have_epoch_) floor = std::min<uint64_t>(floor, c->any ? c->last_epoch : epoch_);
          wake_ns = std::min(wake_ns, c->heard_ns + barrier_ns);
        }
      }
      Child* best = nullptr;
      for (auto& c : children_) {
        if (!c->ready || c->ready->meta().epoch > floor) continue;
        if (best == nullptr || c->ready->meta().epoch < best->ready->meta().epoch ||
            (c->ready->meta().epoch == best->ready->meta().epoch && c->ready_ns < best->ready_ns)) {
          best = c.get();
        }
      }
      if (best != nullptr) {
        BatchView v = std::move(*best->ready);
        best->ready.reset();
        best->heard_ns = now;
        best->any = true;
        best->last_epoch = std::max<uint64_t>(best->last_epoch, v.meta().epoch);
        ++best->batches;
        epoch_ = have_epoch_ ? std::max<uint64_t>(epoch_, v.meta().epoch) : v.meta().epoch;
        have_epoch_ = true;
        taken_.push_back(best);
        cv_.notify_all();  // its pump may take the next one
        return v;
      }
      bool waiting_batch = false;
      for (auto& c : children_) waiting_batch = waiting_batch || c->ready.has_value();
      if (!reading && !waiting_batch) {
        // Every producer ended or was lost.
        for (auto& c : children_) {
          if (c->state == Child::kLost) {
            if (children_.size() == 1) return c->error;
            return Status::Unavailable(endpoint_.ToString() + ": every producer ended or was lost; lost: " +
                                       LostListLocked() + " (their batches not yet sent are not delivered)");
          }
        }
        return Status::EndOfStream(endpoint_.ToString() + ": every producer ended its stream");
      }
      if (deadline.expired()) {
        return Status::DeadlineExceeded(endpoint_.ToString() + ": no batch from " +
                                        std::to_string(children_.size()) + " producer(s) before the deadline");
      }
      auto until = deadline.infinite() ? std::chrono::steady_clock::now() + std::chrono::hours(1) : deadline.when();
      if (wake_ns != INT64_MAX) {
        until = std::min(until, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(wake_ns + 1'000'000)));
      }
      cv_.wait_until(lock, until);
    }
  }

  Result<bool> Hand(const BatchView& batch) override {
    Child* c = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (taken_.empty()) return Status::Internal(endpoint_.ToString() + ": Hand() without a batch from Take()");
      c = taken_.front();
      taken_.pop_front();
    }
    Result<bool> handed = c->reader->Hand(batch);
    if (!handed.ok() && (handed.status().code() == StatusCode::kUnavailable || handed.status().code() == StatusCode::kCancelled)) {
      // Its producer is gone: the batch's bytes are whole, nobody can take
      // it back, and no other consumer has it.
      return true;
    }
    return handed;
  }

  Status Ack() override {
    std::vector<Child*> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : children_) {
        if (c->state != Child::kLost) live.push_back(c.get());
      }
    }
    Status first = Status::OK();
    for (Child* c : live) {
      Status st = c->reader->Ack();
      // A producer lost on the way is the pump's to report; a broken
      // contract ends the consumer.
      if (!st.ok() && IsFatal(st.code()) && first.ok()) first = st;
    }
    return first;
  }

  ConsumerState state() const override {
    std::lock_guard<std::mutex> lock(mu_);
    ConsumerState all;
    for (const auto& c : children_) {
      const ConsumerState one = c->state == Child::kLost ? c->final_state : c->reader->state();
      all.streams.insert(all.streams.end(), one.streams.begin(), one.streams.end());
    }
    return all;
  }

  void Leave() override {
    std::vector<Child*> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& c : children_) {
        if (c->state != Child::kLost) live.push_back(c.get());
      }
    }
    for (Child* c : live) c->reader->Leave();
  }

  void Cancel() override {
    std::vector<Child*> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      for (auto& c : children_) all.push_back(c.get());
      cv_.notify_all();
    }
    for (Child* c : all) c->reader->Cancel();
  }

  // Every producer's epoch reaches this consumer (the epoch barrier), so
  // its epoch is the sum of theirs (once per producer, however many
  // streams read it); 0 (unknown) while one does not say.
  uint64_t batches_per_epoch() const override {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t sum = 0;
    std::set<uint64_t> counted;
    for (const auto& c : children_) {
      if (c->state == Child::kLost || !counted.insert(c->producer_id).second) continue;
      const uint64_t one = c->reader->batches_per_epoch();
      if (one == 0) return 0;
      sum += one;
    }
    return sum;
  }

  Scheme transport() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<Scheme> seen;
    for (const auto& c : children_) seen.insert(c->transport);
    return seen.size() == 1 ? *seen.begin() : (seen.empty() ? endpoint_.scheme : Scheme::kAuto);
  }

  std::vector<ProducerLink> links() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<ProducerLink> out;
    for (const auto& c : children_) {
      ProducerLink l;
      l.endpoint = c->uri;
      l.transport = c->transport;
      l.batches = c->batches;
      l.state = c->state == Child::kReading ? "reading"
                : c->state == Child::kEnded ? "ended"
                                            : "lost: " + c->error.ToString();
      out.push_back(std::move(l));
    }
    return out;
  }

 private:
  struct Child {
    enum State { kReading, kEnded, kLost };
    std::string uri;      // the address, and the name it came from
    std::string address;  // "HOST:PORT" as resolved
    uint64_t producer_id = 0;
    int stream = 0;       // which of the producer's grpc_streams
    std::unique_ptr<BatchReader> reader;
    Scheme transport = Scheme::kGrpc;
    std::thread pump;
    // Under mu_:
    std::optional<BatchView> ready;  // taken from its reader, not yet from us
    int64_t ready_ns = 0;
    int64_t heard_ns = 0;            // its last batch, or when it could send again
    bool any = false;                // it sent this consumer a batch
    uint64_t last_epoch = 0;
    uint64_t batches = 0;
    State state = kReading;
    Status error;
    ConsumerState final_state;       // when lost
  };
  struct Name {
    std::string host;
    int port = 0;
  };

  static std::string HostPortText(const std::string& host, int port) {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  }

  std::string LostListLocked() const {
    std::string out;
    for (const auto& c : children_) {
      if (c->state != Child::kLost) continue;
      if (!out.empty()) out += "; ";
      out += c->uri + " (" + c->error.ToString() + ")";
    }
    return out;
  }

  // The session of stream `slot` of `streams` to one producer, restoring
  // `mine` (that producer's positions in the checkpoint; empty: a fresh
  // session). One stream: the consumer's own session, as given. Several: a
  // checkpoint is restored as a group restore of its positions, this
  // consumer's rank r of W becoming ranks r*N .. r*N+N-1 of W*N (so a
  // checkpoint of any number of streams, or of several ranks, restores onto
  // any N); a consumer id to continue gives stream i > 0 an id derived from
  // it (one id per session: two sessions with one id would supersede each
  // other).
  SessionOptions StreamSession(const std::vector<StreamPosition>& mine, int slot, int streams) const {
    SessionOptions s = options_.session;
    s.restore = mine;
    if (mine.empty()) {
      s.world_size = 0;
      s.rank = 0;
    }
    if (streams <= 1) return s;
    if (!mine.empty()) {
      const uint64_t w = std::max<uint32_t>(1, options_.session.world_size);
      const uint64_t r = options_.session.world_size == 0 ? 0 : options_.session.rank;
      s.rank = static_cast<uint32_t>(r * static_cast<uint64_t>(streams) + static_cast<uint64_t>(slot));
      s.world_size = static_cast<uint32_t>(std::min<uint64_t>(w * static_cast<uint64_t>(streams), UINT32_MAX));
    }
    if (s.consumer_id != 0 && slot > 0) {
      // splitmix64 of (id, slot): a fixed function, so a restart with the
      // same id continues every stream's session.
      uint64_t z = s.consumer_id + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(slot);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      z ^= z >> 31;
      s.consumer_id = z == 0 ? 1 : z;
    }
    return s;
  }

  // Resolves every name and opens a reader for each address not read yet.
  // Unavailable: no address answered (yet); another error: a producer
  // refused this consumer (a bad token, another protocol, a checkpoint of
  // another run), which trying again does not cure.
  Status Discover(Deadline deadline, bool first) {
    Status result = Status::OK();
    bool any_answered = false;
    for (const Name& name : names_) {
      std::vector<std::string> addresses;
      if (IsAddressLiteral(name.host)) {
        addresses.push_back(name.host);
      } else {
        Result<std::vector<std::string>> r = Resolve(name.host);
        if (!r.ok()) {
          result = r.status();
          continue;
        }
        addresses = std::move(r).value();
      }
      for (const std::string& host : addresses) {
        const std::string address = HostPortText(host, name.port);
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (cancelled_) return Status::Cancelled("cancelled");
          if (addresses_.count(address)) continue;
        }
        Endpoint target;
        target.scheme = endpoint_.scheme;
        target.name = host;
        target.port = name.port;
        target.force_shm = endpoint_.force_shm;
        ReaderOptions o = options_;
        // The producer's certificate names the DNS name, not the address.
        if (o.grpc.tls_server_name.empty() && !IsAddressLiteral(name.host)) o.grpc.tls_server_name = name.host;
        const Deadline probe_deadline =
            first ? deadline : Deadline::AfterMillis(std::max<int64_t>(1000, std::min<int64_t>(5000, options_.connect_timeout_ms)));
        Result<ProducerProbe> probe = ProbeProducer(target, o, probe_deadline);
        if (!probe.ok()) {
          if (probe.status().code() != StatusCode::kUnavailable && !probe.status().IsDeadlineExceeded()) return probe.status();
          result = Status::Unavailable(probe.status().message());
          continue;
        }
        any_answered = true;
        // The streams of this producer read already (by this address or
        // another one of it), and which of the grpc_streams slots they fill.
        const int wanted = std::max(1, options_.grpc_streams);
        std::set<int> open_slots;
        bool run_seen = false;
        {
          std::lock_guard<std::mutex> lock(mu_);
          bool on_shm = false;
          for (auto& c : children_) {
            if (c->producer_id != probe->producer_id) continue;
            if (c->state != Child::kLost) open_slots.insert(c->stream);
            on_shm = on_shm || c->transport == Scheme::kShm;
          }
          run_seen = probe->run.fingerprint != 0 &&
                     runs_read_.count({probe->run.fingerprint, probe->run.shard}) > 0;
          if (on_shm || static_cast<int>(open_slots.size()) >= wanted) {
            addresses_.insert(address);  // read already (another address of it, or all its streams)
            continue;
          }
        }
        // This producer's part of a checkpoint; none: it starts afresh. A
        // checkpoint is restored once per run: a stream opened again later
        // (one that was lost, a producer restarted on its journal) starts a
        // fresh session, or rolling back again would give the batches
        // handed out since the restore a second time.
        std::vector<StreamPosition> mine;
        if (!run_seen) {
          for (const StreamPosition& p : options_.session.restore) {
            if (p.fingerprint == probe->run.fingerprint && p.shard == probe->run.shard) mine.push_back(p);
          }
        }
        if (!mine.empty()) restored_any_ = true;
        bool all_open = true;
        for (int slot = 0; slot < wanted; ++slot) {
          if (open_slots.count(slot)) continue;
          ReaderOptions so = o;
          so.session = StreamSession(mine, slot, wanted);
          Result<std::unique_ptr<BatchReader>> reader = OpenAutoReader(target, so);
          if (!reader.ok()) {
            if (reader.status().code() != StatusCode::kUnavailable && !reader.status().IsDeadlineExceeded()) {
              return reader.status();
            }
            result = Status::Unavailable(reader.status().message());
            all_open = false;
            break;
          }
          auto child = std::make_unique<Child>();
          child->address = address;
          child->uri = target.ToString() + (IsAddressLiteral(name.host) ? "" : " (" + name.host + ")") +
                       (wanted > 1 ? " stream " + std::to_string(slot + 1) + "/" + std::to_string(wanted) : "");
          child->producer_id = probe->producer_id;
          child->stream = slot;
          child->reader = std::move(reader).value();
          child->transport = child->reader->transport();
          child->heard_ns = NowNs();
          Child* raw = child.get();
          std::lock_guard<std::mutex> lock(mu_);
          if (cancelled_) return Status::Cancelled("cancelled");
          if (probe->run.fingerprint != 0) runs_read_.insert({probe->run.fingerprint, probe->run.shard});
          children_.push_back(std::move(child));
          raw->pump = std::thread([this, raw] { Pump(raw); });
          cv_.notify_all();
          // The handshake gave this consumer the producer's ring: one
          // reader of it is all there is to read (grpc_streams is for the
          // network).
          if (raw->transport == Scheme::kShm) break;
        }
        if (all_open) {
          std::lock_guard<std::mutex> lock(mu_);
          addresses_.insert(address);
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_ = !result.ok();
    }
    if (any_answered) return Status::OK();
    return result;
  }

  // Takes batches from one producer's reader, one ahead of Take().
  void Pump(Child* c) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return cancelled_ || !c->ready; });
        if (cancelled_) return;
      }
      Result<BatchView> v = c->reader->Take(Deadline::AfterMillis(200));
      if (v.status().IsDeadlineExceeded()) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return;
      if (v.ok()) {
        c->ready = std::move(v).value();
        c->ready_ns = c->heard_ns = NowNs();
      } else if (v.status().IsEndOfStream()) {
        c->state = Child::kEnded;
      } else if (IsFatal(v.status().code())) {
        c->state = Child::kLost;
        c->error = v.status();
        c->final_state = c->reader->state();
        if (fatal_.ok()) fatal_ = v.status();
      } else {
        c->state = Child::kLost;
        c->error = v.status();
        c->final_state = c->reader->state();
        // A producer restarted at the same address is read again when the
        // names are next looked at (a new producer, a new session).
        addresses_.erase(c->address);
        pending_ = true;
        size_t reading = 0;
        for (auto& o : children_) reading += o->state == Child::kReading ? 1 : 0;
        LogWarning(StrFormat(
                     "datafeed: WARNING: lost producer %s: %s; reading the other %zu. Batches it had leased to "
                     "this consumer and not yet acknowledged may go to other consumers if it comes back "
                     "(ReaderOptions::reconnect resumes instead)",
                     c->uri.c_str(), v.status().ToString().c_str(), reading));
      }
      cv_.notify_all();
      if (c->state != Child::kReading) return;
    }
  }

  // Resolves the names again every resolve_every_ms; addresses that did not
  // answer are tried every second until they do.
  void ResolveLoop() {
    int64_t last_resolve = NowNs();
    for (;;) {
      bool pending = false;
      {
        std::unique_lock<std::mutex> lock(mu_);
        pending = pending_;  // an address that did not answer yet
        cv_.wait_for(lock, std::chrono::milliseconds(pending ? 1000 : options_.resolve_every_ms),
                     [&] { return cancelled_; });
        if (cancelled_) return;
      }
      const bool due = NowNs() - last_resolve >= options_.resolve_every_ms * 1'000'000;
      if (!pending && !due) continue;
      if (due) last_resolve = NowNs();
      Status st = Discover(Deadline::AfterMillis(options_.connect_timeout_ms), /*first=*/false);
      if (!st.ok() && st.code() != StatusCode::kUnavailable && st.code() != StatusCode::kCancelled) {
        LogWarning(StrFormat("datafeed: WARNING: %s: a producer that appeared refused this consumer: %s",
                             endpoint_.ToString().c_str(), st.ToString().c_str()));
      }
    }
  }

  const Endpoint endpoint_;
  const ReaderOptions options_;
  std::vector<Name> names_;
  bool restored_any_ = false;  // Start() only
  std::thread resolver_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Child>> children_;  // only appended to
  std::set<std::string> addresses_;               // HOST:PORT read (or aliases of one read)
  std::set<std::pair<uint64_t, uint32_t>> runs_read_;  // (fingerprint, shard) a session was opened for
  std::deque<Child*> taken_;                      // Take() order, until Hand()
  bool cancelled_ = false;
  bool pending_ = false;  // the last Discover() left an address unanswered
  Status fatal_;
  bool have_epoch_ = false;
  uint64_t epoch_ = 0;  // the latest epoch handed out
};

}  // namespace

bool IsAddressLiteral(const std::string& host) {
  if (host == "localhost") return true;
  in_addr a4{};
  in6_addr a6{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

void SetHostResolverForTesting(HostResolver resolver) {
  std::lock_guard<std::mutex> lock(ResolverMutex());
  ResolverSlot() = std::move(resolver);
}

Result<std::unique_ptr<BatchReader>> OpenMultiReader(const Endpoint& endpoint, const ReaderOptions& options) {
  if (endpoint.port == 0) {
    return Status::InvalidArgument(endpoint.ToString() + ": port 0 only lets a producer pick its port; "
                                   "give the port the producer serves on (it prints it)");
  }
  for (const Endpoint::HostPort& hp : endpoint.more) {
    if (hp.port == 0) return Status::InvalidArgument(endpoint.ToString() + ": every producer needs its port");
  }
  auto reader = std::make_unique<MultiReader>(endpoint, options);
  DATAFEED_RETURN_NOT_OK(reader->Start());
  return std::unique_ptr<BatchReader>(std::move(reader));
}

}  // namespace datafeed::internal
