// The gRPC transport. Producer side: the writer is a shared-memory ring
// plus a gRPC server whose StreamBatches handlers are readers of that ring,
// so local (shm) and remote (gRPC) consumers compete for the same batches,
// each batch goes to exactly one of them, and a batch travels from its slot
// to the socket without a copy. Consumer side: Handshake decides between
// the ring (colocated, auto://) and the stream.
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/impl/codegen/rpc_service_method.h>
#include <grpcpp/impl/codegen/sync_stream.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "datafeed/proto/datafeed.grpc.pb.h"
#include "transports_internal.h"
#include "util_internal.h"
#include "wire_internal.h"

namespace datafeed::internal {
namespace {

namespace pb = ::datafeed::v1;
using std::chrono::milliseconds;

constexpr size_t kDefaultMaxFrame = size_t{1} << 30;

// ---------------------------------------------------------------- server

struct ServerState {
  std::unique_ptr<BatchReader> ring_reader;  // the gRPC side's reader of the ring
  std::string shm_name;
  uint64_t producer_id = 0;
  size_t slot_count = 0, slot_bytes = 0;
  pb::HostIdentity host;
  std::atomic<uint64_t> streamed{0}, bytes{0};
  std::atomic<uint32_t> active{0};
  std::atomic<uint64_t>* published = nullptr;

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

  grpc::Status Handshake(grpc::ServerContext*, const pb::HandshakeRequest* req,
                         pb::HandshakeResponse* resp) override {
    if (!s_->WaitReady()) return NotStarted();
    if (Status st = CheckConsumerProtocol(req->protocol_version()); !st.ok()) return ToGrpc(st);
    resp->set_protocol_version(kProtocolVersion);
    *resp->mutable_producer_host() = s_->host;
    resp->set_producer_id(s_->producer_id);
    resp->set_max_frame_bytes(s_->slot_bytes);
    const bool colocated = SameHost(req->host(), s_->host) && req->can_map_shm();
    if (req->preference() == pb::TRANSPORT_GRPC || (!colocated && req->preference() == pb::TRANSPORT_AUTO)) {
      resp->set_transport(pb::TRANSPORT_GRPC);
      resp->set_reason(req->preference() == pb::TRANSPORT_GRPC ? "the consumer asked for gRPC"
                                                              : "the consumer is on another host");
      return grpc::Status::OK;
    }
    if (!colocated) {
      return ToGrpc(Status::FailedPrecondition(
          "shared memory was forced (DATAFEED_TRANSPORT=shm) but the consumer is not on the producer's "
          "host (" + s_->host.hostname() + ") or cannot map its segments; use auto or grpc"));
    }
    resp->set_transport(pb::TRANSPORT_SHM);
    resp->set_shm_name(s_->shm_name);
    resp->set_reason("the consumer shares the producer's host");
    return grpc::Status::OK;
  }

  grpc::Status GetStats(grpc::ServerContext*, const pb::StatsRequest*, pb::StatsResponse* resp) override {
    if (!s_->WaitReady()) return NotStarted();
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

  grpc::Status Serve(grpc::ServerContext* ctx, Stream* stream) {
    if (!s_->WaitReady()) return NotStarted();
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
    ctx->AddInitialMetadata(kAcceptedKey, "1");
    stream->SendInitialMetadata();  // tells the consumer its stream is accepted
    s_->active.fetch_add(1);
    struct Leave {
      ServerState* s;
      ~Leave() { s->active.fetch_sub(1); }
    } leave{s_};
    for (;;) {
      if (ctx->IsCancelled()) return ToGrpc(Status::Cancelled("the consumer cancelled the stream"));
      Result<BatchView> v = s_->ring_reader->Next(Deadline::AfterMillis(100));
      if (v.status().IsDeadlineExceeded()) continue;
      if (v.status().IsEndOfStream()) break;
      // The ring's own status goes as the message: the consumer sees the
      // producer's side as unavailable whatever went wrong in its ring.
      if (!v.ok()) return ToGrpc(Status::Unavailable(v.status().ToString()));
      WireFrame frame;
      frame.view = std::move(v).value();
      const size_t n = frame.view.frame().size();
      // Blocks while the consumer is slow (HTTP/2 flow control): the slot
      // stays claimed, so the ring, not memory, absorbs the backlog. A batch
      // whose write fails is lost with the consumer that was receiving it.
      if (!stream->Write(frame)) return ToGrpc(Status::Cancelled("the consumer stopped receiving"));
      s_->streamed.fetch_add(1);
      s_->bytes.fetch_add(n);
    }
    // The end: send the marker, then wait for the consumer to half-close,
    // which it does once it has read the marker, and so every frame before
    // it. Returning earlier lets a producer that exits next reset the
    // connection under frames still in flight. A consumer that never answers
    // is cut off by Server::Shutdown's deadline (the writer's linger).
    WireFrame end;
    end.end = true;
    if (!stream->Write(end)) return ToGrpc(Status::Cancelled("the consumer stopped receiving"));
    while (stream->Read(&req)) {
    }
    return grpc::Status::OK;
  }

 private:
  ServerState* s_;
};

class GrpcWriter final : public BatchWriter {
 public:
  static Result<std::unique_ptr<BatchWriter>> Open(const Endpoint& ep, const WriterOptions& o) {
    std::unique_ptr<GrpcWriter> w(new GrpcWriter());
    w->state_.host = LocalHost();
    DATAFEED_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, ServerCredentials(o.grpc));
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    int port = 0;
    const std::string address = GrpcAddress(ep.name, ep.port);
    builder.AddListeningPort(address, creds, &port);
    ApplyServerArgs(o.grpc, &builder);
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
    DATAFEED_ASSIGN_OR_RETURN(w->ring_, OpenShmWriter(w->state_.shm_name, o));
    DATAFEED_ASSIGN_OR_RETURN(w->state_.ring_reader, OpenShmReader(w->state_.shm_name, ReaderOptions{}));
    w->state_.slot_count = o.shm.slot_count;
    w->state_.slot_bytes = o.shm.slot_bytes;
    w->state_.published = &w->published_;
    w->linger_ms_ = o.linger_ms;
    w->state_.SetReady(true);
    return std::unique_ptr<BatchWriter>(std::move(w));
  }

  ~GrpcWriter() override {
    state_.SetReady(false);  // no-op after a successful Open
    (void)Close();
    // Destroying the ring lingers (up to linger_ms) until consumers have
    // claimed what was published; the server keeps answering handshakes and
    // opening streams meanwhile, so a consumer that arrives late still gets
    // the last batches. Then the streams, which read the ring through their
    // own mapping, drain and end.
    // Each stream ends with an end-of-stream marker the consumer
    // acknowledges; Shutdown waits for that (at least 2 s, or as long as the
    // writer lingers), then cuts off consumers that did not answer.
    ring_.reset();
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        milliseconds(std::max<int64_t>(2000, linger_ms_)));
    }
    if (state_.ring_reader) state_.ring_reader->Cancel();
    server_.reset();
    state_.ring_reader.reset();
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

 private:
  GrpcWriter() = default;
  Endpoint endpoint_;
  ServerState state_;
  std::atomic<uint64_t> published_{0};
  int64_t linger_ms_ = 0;
  std::unique_ptr<BatchWriter> ring_;
  std::unique_ptr<ControlService> control_;
  std::unique_ptr<StreamService> stream_;
  std::unique_ptr<grpc::Server> server_;
};

// ---------------------------------------------------------------- client

Result<std::shared_ptr<grpc::Channel>> MakeChannel(const Endpoint& ep, const GrpcOptions& o) {
  DATAFEED_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds, ClientCredentials(o));
  const size_t max_frame = o.max_frame_bytes ? o.max_frame_bytes : kDefaultMaxFrame;
  return grpc::CreateCustomChannel(GrpcAddress(ep.name, ep.port), creds, ClientChannelArgs(o, max_frame));
}

Result<pb::HandshakeResponse> DoHandshake(const std::shared_ptr<grpc::Channel>& channel,
                                          const Endpoint& ep, pb::Transport preference,
                                          Deadline deadline) {
  pb::DataFeed::Stub stub(channel);
  grpc::ClientContext ctx;
  // Wait (up to the deadline) for a producer that is still starting.
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(deadline.infinite() ? std::chrono::system_clock::time_point::max()
                                       : std::chrono::system_clock::now() + deadline.remaining());
  pb::HandshakeRequest req;
  req.set_protocol_version(kProtocolVersion);
  *req.mutable_host() = LocalHost();
  struct stat st {};
  req.set_can_map_shm(::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode));
  req.set_preference(preference);
  pb::HandshakeResponse resp;
  grpc::Status gs = stub.Handshake(&ctx, req, &resp);
  if (gs.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return Status::Unavailable(Uri(ep) + ": no producer answered the handshake in time "
                               "(is datafeed-producer running there, and is the port right?): " +
                               gs.error_message());
  }
  if (!gs.ok()) return FromGrpc(gs, Uri(ep), "handshake");
  DATAFEED_RETURN_NOT_OK(CheckProducerProtocol(resp.protocol_version(), Uri(ep)));
  return resp;
}

class GrpcReader final : public BatchReader {
 public:
  using Stream = grpc::ClientReaderWriter<pb::StreamRequest, WireFrame>;
  GrpcReader(Endpoint ep, ReaderOptions o, std::shared_ptr<grpc::Channel> channel)
      : ep_(std::move(ep)), o_(std::move(o)), channel_(std::move(channel)),
        pool_(std::make_shared<FramePool>(static_cast<size_t>(std::max(1, o_.grpc_prefetch)) + 6)) {}
  ~GrpcReader() override {
    Cancel();
    if (thread_.joinable()) thread_.join();
  }

  // Opens the stream and waits until the producer has accepted it, so that a
  // producer closing right after OpenReader returns still serves this reader.
  Status Start(Deadline deadline) {
    DATAFEED_RETURN_NOT_OK(OpenStream(deadline));
    thread_ = std::thread([this] { Receive(); });
    return Status::OK();
  }

  Result<BatchView> Next(Deadline deadline) override {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (cancelled_) return Status::Cancelled(Uri(ep_) + ": reader cancelled");
      if (!queue_.empty()) break;
      if (!end_.ok()) return end_;
      if (deadline.infinite()) {
        cv_.wait(lock);
      } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout && queue_.empty() &&
                 end_.ok() && !cancelled_) {
        return Status::DeadlineExceeded(Uri(ep_) + ": no batch before the deadline");
      }
    }
    WireFrame f = std::move(queue_.front());
    queue_.pop_front();
    cv_.notify_all();
    lock.unlock();
    if (!TakePayload(&f, pool_.get())) {
      return Status::ResourceExhausted(Uri(ep_) + ": out of memory for a " + std::to_string(f.size) +
                                       "-byte frame");
    }
    Result<FrameView> frame = ParseFrame(f.buffer->data, f.size);
    if (!frame.ok()) return frame.status().WithContext(Uri(ep_) + ": malformed frame from the network");
    return BatchView(std::move(frame).value(), std::move(f.buffer));
  }

  void Cancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (ctx_) ctx_->TryCancel();
    cv_.notify_all();
  }

  Scheme transport() const override { return Scheme::kGrpc; }

 private:
  Status OpenStream(Deadline deadline) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_wait_for_ready(true);
    pb::StreamRequest req;
    req.set_protocol_version(kProtocolVersion);
    req.set_compression(o_.grpc.compression);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return Status::Cancelled(Uri(ep_) + ": reader cancelled");
      ctx_ = ctx.get();
    }
    std::atomic<bool> done{false};
    std::thread watchdog([&] {
      std::unique_lock<std::mutex> lock(mu_);
      auto finished = [&] { return done.load() || cancelled_; };
      if (deadline.infinite()) {
        cv_.wait(lock, finished);
      } else {
        cv_.wait_until(lock, deadline.when(), finished);
      }
      if (!done.load()) ctx->TryCancel();
    });
    // The producer accepts the stream (initial metadata) once it has read
    // the request; the watchdog cancels a call that is not accepted in time.
    // A failed write shows up as a failed read later.
    std::unique_ptr<Stream> reader(grpc::internal::ClientReaderWriterFactory<pb::StreamRequest, WireFrame>::Create(
        channel_.get(),
        grpc::internal::RpcMethod(kStreamMethod, grpc::internal::RpcMethod::BIDI_STREAMING, channel_),
        ctx.get()));
    bool accepted = false;
    if (reader->Write(req)) {
      reader->WaitForInitialMetadata();
      accepted = ctx->GetServerInitialMetadata().count(kAcceptedKey) > 0;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      done.store(true);
      cv_.notify_all();
    }
    watchdog.join();
    if (!accepted) {
      // Refused (the call's status says why), cut off by the deadline, or
      // cancelled; either way the call is over, so Finish does not block.
      const grpc::Status gs = reader->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      ctx_ = nullptr;
      if (cancelled_) return Status::Cancelled(Uri(ep_) + ": reader cancelled");
      if (gs.error_code() == grpc::StatusCode::CANCELLED || gs.ok()) {
        return Status::DeadlineExceeded(Uri(ep_) + ": the producer did not accept the batch stream in time");
      }
      return FromGrpc(gs, Uri(ep_), "opening the batch stream");
    }
    std::lock_guard<std::mutex> lock(mu_);
    stream_ctx_ = std::move(ctx);
    stream_ = std::move(reader);
    return Status::OK();
  }

  // Receives frames into queue_ (at most grpc_prefetch ahead). Reconnects
  // with backoff when asked to.
  void Receive() {
    const int64_t limit = std::max(1, o_.grpc_prefetch);
    Deadline reconnect_until = Deadline::Infinite();
    int64_t backoff_ms = 50;
    for (;;) {
      std::unique_ptr<grpc::ClientContext> ctx;
      std::unique_ptr<Stream> reader;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ctx = std::move(stream_ctx_);
        reader = std::move(stream_);
      }
      bool got_any = false, got_end = false;
      grpc::Status gs;
      if (reader) {
        for (;;) {
          {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return cancelled_ || static_cast<int64_t>(queue_.size()) < limit; });
            if (cancelled_) break;
          }
          WireFrame f;
          if (!reader->Read(&f)) break;
          if (f.end) {
            // Every frame has arrived; half-closing tells the producer so.
            got_end = true;
            reader->WritesDone();
            continue;
          }
          got_any = true;
          std::lock_guard<std::mutex> lock(mu_);
          queue_.push_back(std::move(f));
          cv_.notify_all();
        }
        gs = reader->Finish();
      } else {
        gs = grpc::Status(grpc::StatusCode::UNAVAILABLE, "reconnecting");
      }
      std::unique_lock<std::mutex> lock(mu_);
      ctx_ = nullptr;
      if (cancelled_) return;
      // After the end marker the stream is complete, whatever the call's
      // status (a producer that exits may reset the connection first).
      Status end = gs.ok() || got_end ? Status::EndOfStream(Uri(ep_) + ": the producer closed the stream")
                                      : FromGrpc(gs, Uri(ep_), "batch stream");
      if (got_end) {
        end_ = end;
        cv_.notify_all();
        return;
      }
      if (gs.ok()) {
        // A protocol-2 producer always ends with the marker.
        end = Status::DataLoss(Uri(ep_) + ": the stream ended without its end-of-stream marker");
      } else if (gs.error_code() == grpc::StatusCode::UNAVAILABLE ||
          gs.error_code() == grpc::StatusCode::INTERNAL ||
          gs.error_code() == grpc::StatusCode::CANCELLED) {
        end = Status::Unavailable(Uri(ep_) + ": the producer went away (" + gs.error_message() + ")" +
                                  (o_.reconnect ? "; gave up reconnecting" : "; restart it, or reconnect"));
      }
      const bool retry = o_.reconnect && !gs.ok() && gs.error_code() != grpc::StatusCode::DATA_LOSS &&
                         gs.error_code() != grpc::StatusCode::FAILED_PRECONDITION;
      if (retry) {
        if (got_any || reconnect_until.infinite()) {
          reconnect_until = Deadline::AfterMillis(o_.reconnect_timeout_ms);
          backoff_ms = 50;
        }
        if (!reconnect_until.expired()) {
          cv_.wait_for(lock, milliseconds(backoff_ms), [&] { return cancelled_; });
          backoff_ms = std::min<int64_t>(backoff_ms * 2, 2000);
          lock.unlock();
          // A failed attempt leaves stream_ empty and is retried after backoff.
          (void)OpenStream(Deadline::AfterMillis(std::max<int64_t>(backoff_ms, 500)));
          continue;
        }
      }
      end_ = end;
      cv_.notify_all();
      return;
    }
  }

  Endpoint ep_;
  ReaderOptions o_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<FramePool> pool_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WireFrame> queue_;
  Status end_;  // set when the stream ended; returned once queue_ is empty
  bool cancelled_ = false;
  grpc::ClientContext* ctx_ = nullptr;  // the live stream, for Cancel()
  std::unique_ptr<grpc::ClientContext> stream_ctx_;  // opened, not yet taken by Receive()
  std::unique_ptr<Stream> stream_;
  std::thread thread_;
};

}  // namespace

Result<std::unique_ptr<BatchWriter>> OpenGrpcWriter(const Endpoint& endpoint, const WriterOptions& options) {
  return GrpcWriter::Open(endpoint, options);
}

Result<std::unique_ptr<BatchReader>> OpenGrpcReader(const Endpoint& endpoint, const ReaderOptions& options) {
  if (endpoint.port == 0) {
    return Status::InvalidArgument(Uri(endpoint) + ": port 0 only lets a producer pick its port; "
                                   "give the port the producer serves on (it prints it)");
  }
  DATAFEED_ASSIGN_OR_RETURN(auto channel, MakeChannel(endpoint, options.grpc));
  const pb::Transport preference = endpoint.scheme == Scheme::kGrpc ? pb::TRANSPORT_GRPC
                                   : endpoint.force_shm              ? pb::TRANSPORT_SHM
                                                                     : pb::TRANSPORT_AUTO;
  // One deadline for the handshake and the stream together.
  const Deadline deadline = Deadline::AfterMillis(std::max<int64_t>(options.connect_timeout_ms, 1000));
  DATAFEED_ASSIGN_OR_RETURN(pb::HandshakeResponse hs, DoHandshake(channel, endpoint, preference, deadline));
  if (hs.transport() == pb::TRANSPORT_SHM) {
    // The handshake says the ring exists: do not wait for it to appear.
    ReaderOptions now = options;
    now.connect_timeout_ms = 0;
    Result<std::unique_ptr<BatchReader>> shm = OpenShmReader(hs.shm_name(), now);
    // Same machine and boot but another /dev/shm (a container): use the stream.
    if (shm.ok() || endpoint.force_shm) {
      if (!shm.ok()) return shm.status().WithContext(Uri(endpoint) + " (shared memory was forced)");
      return shm;
    }
  }
  auto reader = std::make_unique<GrpcReader>(endpoint, options, std::move(channel));
  DATAFEED_RETURN_NOT_OK(reader->Start(deadline));
  return std::unique_ptr<BatchReader>(std::move(reader));
}

}  // namespace datafeed::internal
