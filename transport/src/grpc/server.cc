// The producer side of the gRPC transport: a grpc:// or auto:// writer is
// a shared-memory ring plus a gRPC server whose StreamBatches handlers are
// readers of that ring, so local (shm) and remote (gRPC) consumers compete
// for the same batches, each batch goes to exactly one of them, and a batch
// travels from its slot to the socket without a copy.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/impl/codegen/rpc_service_method.h>
#include <grpcpp/impl/codegen/sync_stream.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <set>
#include <mutex>
#include <string>
#include <thread>

#include "datafeed/proto/datafeed.grpc.pb.h"
#include "delivery/ledger_internal.h"
#include "handshake_internal.h"
#include "delivery/wire_messages_internal.h"
#include "server_guard_internal.h"
#include "shm/shm_transport_internal.h"
#include "transports_internal.h"
#include "util_internal.h"
#include "wire_internal.h"

namespace datafeed::internal {
namespace {

namespace pb = ::datafeed::v1;
using std::chrono::milliseconds;

// One StreamBatches call, as the ring's service thread reaches it with a
// revocation, and as its handler's two threads (sending frames, reading the
// consumer's progress) share it.
struct StreamControl {
  std::mutex mu;
  std::condition_variable cv;
  bool revoke_pending = false;
  uint64_t revoked_from = 0;
  bool paused = false;          // revoked: send nothing until the consumer asks again
  uint64_t received = 0;        // delivery positions the consumer has taken off the stream
  bool closing = false;         // the consumer said close
  bool upstream_done = false;   // the consumer half-closed or the call broke
  grpc::ServerContext* ctx = nullptr;
  // When the send in progress began (0: none), for the writer's watchdog.
  std::atomic<int64_t> writing_since_ns{0};
  // One Write at a time on the stream: frames from the handler's thread,
  // confirmations from the upstream thread.
  std::mutex write_mu;
};

struct ServerState {
  std::unique_ptr<BatchReader> ring_reader;  // the gRPC side's reader of the ring (a relay)
  Ledger* ledger = nullptr;                  // the ring's delivery ledger; null without a run
  std::string shm_name;
  uint64_t producer_id = 0;
  size_t slot_count = 0, slot_bytes = 0;
  std::string digest;  // LocalHostDigest()
  std::string token;   // bearer token; empty: none required
  int max_streams = 64, max_streams_per_peer = 16;
  std::map<std::string, int> streams_by_peer;  // (streams_mu)
  int streams_open = 0;                         // (streams_mu)
  std::atomic<uint64_t> streamed{0}, bytes{0};
  std::atomic<uint32_t> active{0};
  std::atomic<uint64_t>* published = nullptr;

  // Live streams by ledger session, for revocations; every stream, for the
  // watchdog that cuts off sends that wait too long.
  mutable std::mutex streams_mu;
  std::map<uint64_t, StreamControl*> streams;
  std::set<StreamControl*> all_streams;
  void Revoke(const Revocation& r) {
    std::lock_guard<std::mutex> lock(streams_mu);
    auto it = streams.find(r.session);
    if (it == streams.end()) return;
    StreamControl* sc = it->second;
    std::lock_guard<std::mutex> l2(sc->mu);
    sc->revoke_pending = true;
    sc->revoked_from = r.from;
    sc->cv.notify_all();
  }

  // The server answers as soon as it is bound, which is before the ring
  // exists (the ring's name may need the kernel-chosen port). Handlers wait
  // here until Open() has filled in the fields above (true) or failed (false).
  bool WaitReady() {
    std::unique_lock<std::mutex> lock(ready_mu);
    ready_cv.wait(lock, [&] { return ready != 0; });
    return ready > 0;
  }
  void SetReady(bool ok) {
    std::lock_guard<std::mutex> lock(ready_mu);
    if (ready == 0) ready = ok ? 1 : -1;
    ready_cv.notify_all();
  }
  std::mutex ready_mu;
  std::condition_variable ready_cv;
  int ready = 0;
};

grpc::Status NotStarted() { return ToGrpc(Status::Unavailable("the producer failed to start")); }

class ControlService final : public pb::DataFeed::Service {
 public:
  explicit ControlService(ServerState* s) : s_(s) {}

  grpc::Status Handshake(grpc::ServerContext* ctx, const pb::HandshakeRequest* req,
                         pb::HandshakeResponse* resp) override {
    if (!s_->WaitReady()) return NotStarted();
    if (!Authorized(*ctx, s_->token)) return Unauthenticated();
    grpc::Status st = AnswerHandshake(s_->digest, s_->shm_name, s_->producer_id, s_->slot_bytes, *req, resp);
    if (st.ok() && s_->ledger != nullptr) {
      const RunInfo& run = s_->ledger->run();
      resp->set_fingerprint(run.fingerprint);
      resp->set_shard(run.shard);
      resp->set_num_shards(run.num_shards);
      resp->set_batches_per_epoch(run.batches_per_epoch);
    }
    return st;
  }

  grpc::Status GetStats(grpc::ServerContext* ctx, const pb::StatsRequest*, pb::StatsResponse* resp) override {
    if (!s_->WaitReady()) return NotStarted();
    if (!Authorized(*ctx, s_->token)) return Unauthenticated();
    resp->set_batches_published(s_->published ? s_->published->load() : 0);
    resp->set_batches_streamed(s_->streamed.load());
    resp->set_bytes_streamed(s_->bytes.load());
    resp->set_active_streams(s_->active.load());
    resp->set_slot_count(static_cast<uint32_t>(s_->slot_count));
    resp->set_slot_bytes(s_->slot_bytes);
    resp->set_shm_name(s_->shm_name);
    return grpc::Status::OK;
  }

 private:
  ServerState* s_;
};

// StreamBatches, registered by hand so responses use WireFrame's zero-copy
// serialization instead of a protobuf message.
class StreamService final : public grpc::Service {
 public:
  using Stream = grpc::ServerReaderWriter<WireFrame, pb::StreamRequest>;
  explicit StreamService(ServerState* s) : s_(s) {
    AddMethod(new grpc::internal::RpcServiceMethod(
        kStreamMethod, grpc::internal::RpcMethod::BIDI_STREAMING,
        new grpc::internal::BidiStreamingHandler<StreamService, pb::StreamRequest, WireFrame>(
            [](StreamService* self, grpc::ServerContext* ctx, Stream* stream) {
              return self->Serve(ctx, stream);
            },
            this)));
  }

  static bool WriteLocked(StreamControl& control, Stream* stream, const WireFrame& frame) {
    std::lock_guard<std::mutex> lock(control.write_mu);
    return stream->Write(frame);
  }

  grpc::Status Serve(grpc::ServerContext* ctx, Stream* stream) {
    if (!s_->WaitReady()) return NotStarted();
    if (!Authorized(*ctx, s_->token)) return Unauthenticated();
    // Limits: a peer cannot open streams without bound.
    const std::string peer = PeerAddress(ctx->peer());
    {
      std::lock_guard<std::mutex> lock(s_->streams_mu);
      if (s_->streams_open >= s_->max_streams) {
        return ToGrpc(Status::ResourceExhausted("the producer serves " + std::to_string(s_->max_streams) +
                                                " streams already (--max-streams)"));
      }
      if (s_->streams_by_peer[peer] >= s_->max_streams_per_peer) {
        return ToGrpc(Status::ResourceExhausted(peer + " has " + std::to_string(s_->max_streams_per_peer) +
                                                " streams open already (--max-streams-per-peer)"));
      }
      ++s_->streams_open;
      ++s_->streams_by_peer[peer];
    }
    struct Count {
      ServerState* s;
      std::string peer;
      ~Count() {
        std::lock_guard<std::mutex> lock(s->streams_mu);
        --s->streams_open;
        if (--s->streams_by_peer[peer] == 0) s->streams_by_peer.erase(peer);
      }
    } count{s_, peer};
    pb::StreamRequest req;
    if (!stream->Read(&req)) {
      return ToGrpc(Status::InvalidArgument("the stream carried no StreamRequest"));
    }
    if (Status st = CheckConsumerProtocol(req.protocol_version()); !st.ok()) return ToGrpc(st);
    if (req.compression() == "gzip") {
      ctx->set_compression_algorithm(GRPC_COMPRESS_GZIP);
    } else if (!req.compression().empty()) {
      return ToGrpc(
          Status::InvalidArgument("unknown compression '" + req.compression() + "'; use gzip or none"));
    }
    // The session: refused (a checkpoint of another run, a consumer this
    // producer cannot honour) before the stream is accepted.
    bool relay = false;
    const Hello hello = FromProto(req.hello(), &relay);
    if (relay) return ToGrpc(Status::InvalidArgument("a relay session over gRPC"));
    pb::SessionWelcome welcome;
    uint64_t session = 0;
    Ledger* ledger = s_->ledger;
    if (ledger != nullptr) {
      Result<Welcome> w = ledger->Open(hello, ctx->peer(), LedgerClock::now());
      if (!w.ok()) return ToGrpc(w.status());
      session = w->session;
      const RunInfo& run = ledger->run();
      welcome.set_consumer_id(w->consumer_id);
      welcome.set_position(w->position);
      welcome.set_fingerprint(run.fingerprint);
      welcome.set_shard(run.shard);
      welcome.set_num_shards(run.num_shards);
      welcome.set_batches_per_epoch(run.batches_per_epoch);
      welcome.set_summary(w->summary);
    } else {
      welcome.set_consumer_id(hello.consumer_id);
      welcome.set_position(hello.mode == Hello::Mode::kResume ? hello.received : 0);
      welcome.set_num_shards(1);
    }
    std::string welcome_bytes;
    welcome.SerializeToString(&welcome_bytes);
    ctx->AddInitialMetadata(kAcceptedKey, "1");
    ctx->AddInitialMetadata(kSessionKey, welcome_bytes);
    stream->SendInitialMetadata();  // tells the consumer its stream is accepted
    s_->active.fetch_add(1);
    StreamControl control;
    control.ctx = ctx;
    {
      std::lock_guard<std::mutex> lock(s_->streams_mu);
      if (session != 0) s_->streams[session] = &control;
      s_->all_streams.insert(&control);
    }
    // The consumer's progress, read on a thread of its own (a bidi stream
    // may read and write at once).
    std::thread upstream([&] {
      pb::StreamRequest msg;
      while (stream->Read(&msg)) {
        if (ledger != nullptr && session != 0) {
          ledger->Progress(session, msg.acked(), msg.active() ? LedgerClock::now() : LedgerClock::time_point{});
        }
        if (msg.confirm()) {
          // Recorded (and journaled) above: tell the consumer, whose Next()
          // waits for it.
          WireFrame confirmed;
          confirmed.confirms = true;
          confirmed.acked = msg.acked();
          if (!WriteLocked(control, stream, confirmed)) break;
        }
        std::lock_guard<std::mutex> lock(control.mu);
        if (msg.active()) control.paused = false;
        if (msg.close()) control.closing = true;
        control.received = std::max<uint64_t>(control.received, msg.received());
        control.cv.notify_all();
      }
      std::lock_guard<std::mutex> lock(control.mu);
      control.upstream_done = true;
      control.cv.notify_all();
    });
    uint64_t position = welcome.position();
    // Every frame in flight is leased to this consumer: a peer cannot ask
    // for more than kMaxWindow.
    const uint64_t window = std::clamp<uint32_t>(req.window() == 0 ? 3 : req.window(), 1, kMaxWindow);
    control.received = position;
    bool clean = false;  // the call ended as the protocol says (end marker acknowledged, or close)
    grpc::Status result = grpc::Status::OK;
    for (;;) {
      if (ctx->IsCancelled()) {
        result = ToGrpc(Status::Cancelled("the consumer cancelled the stream"));
        break;
      }
      {
        std::unique_lock<std::mutex> lock(control.mu);
        if (control.closing) {
          clean = true;
          break;
        }
        if (control.upstream_done) {
          result = ToGrpc(Status::Cancelled("the consumer stopped sending"));
          break;
        }
        if (control.revoke_pending) {
          control.revoke_pending = false;
          control.paused = true;
          position = control.revoked_from;
          control.received = std::min(control.received, position);
          WireFrame revoked;
          revoked.revoked = true;
          revoked.revoked_from = control.revoked_from;
          lock.unlock();
          if (!WriteLocked(control, stream, revoked)) {
            result = ToGrpc(Status::Cancelled("the consumer stopped receiving"));
            break;
          }
          continue;
        }
        if (control.paused) {
          // It stopped asking for batches: send none until it asks again.
          control.cv.wait_for(lock, milliseconds(100));
          continue;
        }
        if (position >= control.received + window) {
          // `window` frames in flight: wait until it takes one.
          control.cv.wait_for(lock, milliseconds(100));
          continue;
        }
      }
      Result<BatchView> v = s_->ring_reader->Take(Deadline::AfterMillis(100));
      if (v.status().IsDeadlineExceeded()) continue;
      if (v.status().IsEndOfStream()) break;
      // The ring's own status goes as the message: the consumer sees the
      // producer's side as unavailable whatever went wrong in its ring.
      if (!v.ok()) {
        result = ToGrpc(Status::Unavailable(v.status().ToString()));
        break;
      }
      WireFrame frame;
      frame.view = std::move(v).value();
      const BatchMeta& meta = frame.view.meta();
      if (ledger != nullptr && meta.fingerprint != 0) {
        // Recorded before it is sent: a producer killed mid-send still knows
        // this consumer may hold it.
        const BatchKey key{meta.epoch, meta.batch_index};
        Status st = ledger->Delivered(session, key);
        if (!st.ok()) {
          ledger->Returned(key);
          result = ToGrpc(st);
          break;
        }
      }
      frame.position = position++;
      const size_t n = frame.view.frame().size();
      // Blocks while the consumer is slow (HTTP/2 flow control): the slot
      // stays claimed, so the ring, not memory, absorbs the backlog.
      control.writing_since_ns.store(std::chrono::steady_clock::now().time_since_epoch().count());
      const bool sent = WriteLocked(control, stream, frame);
      control.writing_since_ns.store(0);
      if (!sent) {
        result = ToGrpc(Status::Cancelled("the consumer stopped receiving"));
        break;
      }
      s_->streamed.fetch_add(1);
      s_->bytes.fetch_add(n);
    }
    const bool ended = result.ok() && !clean;
    if (ended) {
      // The end: send the marker, then wait for the consumer to half-close,
      // which it does once it has read the marker, and so every frame before
      // it. Returning earlier lets a producer that exits next reset the
      // connection under frames still in flight. A consumer that never
      // answers is cut off by Server::Shutdown's deadline (the writer's linger).
      WireFrame end;
      end.end = true;
      if (WriteLocked(control, stream, end)) {
        clean = true;
      } else {
        result = ToGrpc(Status::Cancelled("the consumer stopped receiving"));
      }
    } else if (!clean) {
      ctx->TryCancel();  // unblocks the upstream Read
    }
    upstream.join();
    {
      std::lock_guard<std::mutex> lock(s_->streams_mu);
      s_->all_streams.erase(&control);
      if (session != 0) s_->streams.erase(session);
    }
    if (session != 0) {
      // A broken call keeps the consumer's leases for the grace period: it
      // may reconnect and say what it received.
      ledger->Close(session, clean ? CloseKind::kClean : CloseKind::kLostConnection, LedgerClock::now());
    }
    s_->active.fetch_sub(1);
    return result;
  }

 private:
  ServerState* s_;
};

class GrpcWriter final : public BatchWriter {
 public:
  static Result<std::unique_ptr<BatchWriter>> Open(const Endpoint& ep, const WriterOptions& o) {
    std::unique_ptr<GrpcWriter> w(new GrpcWriter());
    w->state_.digest = LocalHostDigest();
    const bool tls = !o.grpc.tls_cert.empty() || !o.grpc.tls_key.empty();
    if (!tls && !o.grpc.insecure && !IsLoopbackHost(ep.name)) {
      return Status::FailedPrecondition(
          Uri(ep) + ": serving plaintext gRPC on " + ep.name +
          " would let anyone who can reach the port read the stream; give --tls-cert and --tls-key (with "
          "--tls-client-ca or --auth-token-file to say who may consume), listen on 127.0.0.1, or pass "
          "--insecure to accept that (GrpcOptions::insecure)");
    }
    if (!o.grpc.auth_token_file.empty()) {
      DATAFEED_ASSIGN_OR_RETURN(w->state_.token, ReadAuthToken(o.grpc.auth_token_file));
    }
    if (o.grpc.introspection && !IsLoopbackHost(ep.name) && w->state_.token.empty() && o.grpc.tls_ca.empty()) {
      return Status::FailedPrecondition(
          Uri(ep) + ": --grpc-introspection on " + ep.name +
          " would describe the producer to anyone who reaches the port; say who may call with "
          "--auth-token-file or --tls-client-ca (GrpcOptions::auth_token_file, tls_ca), or listen on 127.0.0.1");
    }
    if (o.grpc.max_streams < 1 || o.grpc.max_streams_per_peer < 1) {
      return Status::InvalidArgument(Uri(ep) + ": max_streams and max_streams_per_peer must be at least 1");
    }
    w->state_.max_streams = o.grpc.max_streams;
    w->state_.max_streams_per_peer = o.grpc.max_streams_per_peer;
    w->send_limit_ms_ = o.consumer_timeout_ms;
    DATAFEED_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, ServerCredentials(o.grpc));
    grpc::EnableDefaultHealthCheckService(true);
    // Before the builder: turning channelz on registers its plugin for
    // builders made from then on (server_guard_internal.h).
    std::unique_ptr<grpc::ServerBuilderOption> introspection = IntrospectionOption(o.grpc.introspection);
    grpc::ServerBuilder builder;
    builder.SetOption(std::move(introspection));
    // Every service, reflection and channelz included, behind the token;
    // the handlers below check it again.
    RequireTokenOnEveryCall(w->state_.token, &builder);
    int port = 0;
    const std::string address = GrpcAddress(ep.name, ep.port);
    builder.AddListeningPort(address, creds, &port);
    ApplyServerArgs(o.grpc, &builder);
    // A bounded pool: one thread per stream, a few for handshakes.
    grpc::ResourceQuota quota("datafeed-producer");
    quota.SetMaxThreads(o.grpc.max_streams + 8);
    builder.SetResourceQuota(quota);
    w->control_ = std::make_unique<ControlService>(&w->state_);
    w->stream_ = std::make_unique<StreamService>(&w->state_);
    builder.RegisterService(w->control_.get());
    builder.RegisterService(w->stream_.get());
    // The ring's name may need the port the kernel picks (port 0), so the
    // server starts first; its handlers wait (WaitReady) until the ring
    // exists. If Open fails below, ~GrpcWriter releases them.
    w->server_ = builder.BuildAndStart();
    if (!w->server_ || port == 0) {
      return Status::Unavailable(Uri(ep) + ": cannot listen on " + address +
                                 " (port in use, or not an address of this host?)");
    }
    w->endpoint_ = ep;
    w->endpoint_.port = port;
    w->state_.shm_name = !o.shm_name.empty() ? o.shm_name
                         : ep.port != 0      ? "datafeed-grpc-" + std::to_string(port)
                                             : "datafeed-grpc-" + std::to_string(getpid()) + "-" +
                                                   std::to_string(port);
    DATAFEED_ASSIGN_OR_RETURN(w->ring_, OpenShmRingWriter(w->state_.shm_name, o));
    DATAFEED_ASSIGN_OR_RETURN(w->state_.ring_reader, OpenShmRelayReader(w->state_.shm_name));
    w->state_.ledger = w->ring_->ledger();
    w->state_.producer_id = w->ring_->producer_id();
    ServerState* state = &w->state_;
    w->ring_->SetRevocationSink([state](const Revocation& r) { state->Revoke(r); });
    w->state_.slot_count = o.shm.slot_count;
    w->state_.slot_bytes = o.shm.slot_bytes;
    w->state_.published = &w->published_;
    w->linger_ms_ = o.linger_ms;
    w->stop_lingering_ = o.stop_lingering;
    w->state_.SetReady(true);
    GrpcWriter* raw = w.get();
    w->watchdog_ = std::thread([raw] { raw->Watchdog(); });
    return std::unique_ptr<BatchWriter>(std::move(w));
  }

  ~GrpcWriter() override {
    state_.SetReady(false);  // no-op after a successful Open
    (void)Close();
    {
      std::lock_guard<std::mutex> lock(watchdog_mu_);
      stopping_ = true;
      watchdog_cv_.notify_all();
    }
    // The ring lingers (up to linger_ms) until consumers have claimed what
    // was published; the server keeps answering handshakes and opening
    // streams meanwhile, so a consumer that arrives late still gets the last
    // batches. Then the streams, which read the ring through their own
    // mapping, drain and end. Each stream ends with an end-of-stream marker
    // the consumer acknowledges; Shutdown waits for that (at least 2 s, or
    // as long as the writer lingers), then cuts off consumers that did not
    // answer. The ring (and its ledger, which the handlers use) goes last.
    if (ring_) ring_->Linger();
    if (server_) {
      // Streams still open get their end marker read until the deadline,
      // unless the wait is cut (WriterOptions::stop_lingering); then
      // Shutdown cancels whatever is left.
      const Deadline drain = Deadline::AfterMillis(std::max<int64_t>(2000, linger_ms_));
      while (!drain.expired() && !(stop_lingering_ != nullptr && stop_lingering_->load())) {
        {
          std::lock_guard<std::mutex> lock(state_.streams_mu);
          if (state_.streams_open == 0) break;
        }
        std::this_thread::sleep_for(milliseconds(10));
      }
      server_->Shutdown(std::chrono::system_clock::now() + milliseconds(100));
    }
    if (state_.ring_reader) state_.ring_reader->Cancel();
    server_.reset();
    state_.ring_reader.reset();
    if (ring_) ring_->SetRevocationSink(nullptr);
    state_.ledger = nullptr;
    ring_.reset();
    if (watchdog_.joinable()) watchdog_.join();
  }

  // A stream whose send has waited longer than the consumer timeout (its
  // consumer stopped reading: HTTP/2 flow control holds the send, and the
  // send holds a ring slot) is cut off, so that streams that never read
  // cannot hold the ring's slots and starve the consumers that do.
  void Watchdog() {
    const int64_t limit_ns = std::max<int64_t>(1, send_limit_ms_) * 1'000'000;
    std::unique_lock<std::mutex> lock(watchdog_mu_);
    while (!stopping_) {
      watchdog_cv_.wait_for(lock, milliseconds(500));
      const int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
      std::lock_guard<std::mutex> streams_lock(state_.streams_mu);
      for (StreamControl* sc : state_.all_streams) {
        const int64_t since = sc->writing_since_ns.load();
        if (since != 0 && now - since > limit_ns) sc->ctx->TryCancel();
      }
    }
  }

  Result<WritableBatch> Loan(std::shared_ptr<const BatchLayout> layout, Deadline deadline) override {
    if (!ring_) return Status::FailedPrecondition(Uri(endpoint_) + ": the ring is not open");
    return ring_->Loan(std::move(layout), deadline);
  }
  Status Publish(WritableBatch batch) override {
    DATAFEED_RETURN_NOT_OK(ring_->Publish(std::move(batch)));
    published_.fetch_add(1);
    return Status::OK();
  }
  Status Close() override { return ring_ ? ring_->Close() : Status::OK(); }
  std::string endpoint() const override { return endpoint_.ToString(); }
  Result<RunStart> run_start() const override {
    return ring_ ? ring_->run_start() : BatchWriter::run_start();
  }
  std::optional<BatchKey> TakeRemake() override { return ring_ ? ring_->TakeRemake() : std::nullopt; }
  void Unmade(const BatchKey& key) override {
    if (ring_) ring_->Unmade(key);
  }
  Work WaitForWork(Deadline deadline) override { return ring_ ? ring_->WaitForWork(deadline) : Work::kDone; }
  DeliveryStats delivery_stats() const override { return ring_ ? ring_->delivery_stats() : DeliveryStats{}; }
  WriterGauges gauges() const override {
    WriterGauges g = ring_ ? ring_->gauges() : WriterGauges{};
    std::lock_guard<std::mutex> lock(state_.streams_mu);
    g.grpc_consumers = static_cast<uint64_t>(state_.streams_open);
    return g;
  }

 private:
  GrpcWriter() = default;
  Endpoint endpoint_;
  ServerState state_;
  std::atomic<uint64_t> published_{0};
  int64_t linger_ms_ = 0;
  const std::atomic<bool>* stop_lingering_ = nullptr;
  int64_t send_limit_ms_ = 30'000;
  std::thread watchdog_;
  std::mutex watchdog_mu_;
  std::condition_variable watchdog_cv_;
  bool stopping_ = false;
  std::unique_ptr<ShmRingWriter> ring_;
  std::unique_ptr<ControlService> control_;
  std::unique_ptr<StreamService> stream_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace

Result<std::unique_ptr<BatchWriter>> OpenGrpcWriter(const Endpoint& endpoint, const WriterOptions& options) {
  return GrpcWriter::Open(endpoint, options);
}

}  // namespace datafeed::internal
