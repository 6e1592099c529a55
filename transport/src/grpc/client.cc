// The consumer side of the gRPC transport: the channel, the handshake and
// the batch stream reader (see client_internal.h).
#include "client_internal.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/impl/codegen/sync_stream.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "datafeed/proto/datafeed.grpc.pb.h"
#include "delivery/session_internal.h"
#include "delivery/wire_messages_internal.h"
#include "util_internal.h"
#include "wire_internal.h"

namespace datafeed::internal {
namespace {

namespace pb = ::datafeed::v1;
using std::chrono::milliseconds;

// What GrpcOptions::max_frame_bytes = 0 stands for.
constexpr size_t kDefaultMaxFrame = size_t{1} << 30;

class GrpcReader final : public BatchReader {
 public:
  using Stream = grpc::ClientReaderWriter<pb::StreamRequest, WireFrame>;
  GrpcReader(Endpoint ep, ReaderOptions o, std::shared_ptr<grpc::Channel> channel)
      : ep_(std::move(ep)), o_(std::move(o)), channel_(std::move(channel)),
        pool_(std::make_shared<FramePool>(static_cast<size_t>(std::max(1, o_.grpc_prefetch)) + 6)),
        session_(Uri(ep_), o_.session) {}
  ~GrpcReader() override {
    Close();
    Cancel();
    if (thread_.joinable()) thread_.join();
    if (upstream_.joinable()) upstream_.join();
  }

  // Opens the stream and its session, and waits until the producer has
  // accepted it, so that a producer closing right after OpenReader returns
  // still serves this reader.
  Status Start(Deadline deadline) {
    if (!o_.grpc.auth_token_file.empty()) {
      DATAFEED_ASSIGN_OR_RETURN(token_, ReadAuthToken(o_.grpc.auth_token_file));
    }
    Status opened = OpenStream(session_.FirstHello(), deadline);
    // With reconnect, a connection that breaks while the stream opens is
    // tried again until the connect deadline, as a broken stream would be.
    int64_t backoff_ms = 50;
    while (!opened.ok() && o_.reconnect && !deadline.expired() &&
           (opened.code() == StatusCode::kUnavailable || opened.code() == StatusCode::kDeadlineExceeded ||
            opened.code() == StatusCode::kInternal)) {
      std::this_thread::sleep_for(milliseconds(backoff_ms));
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 1000);
      opened = OpenStream(session_.FirstHello(), deadline);
    }
    DATAFEED_RETURN_NOT_OK(opened);
    thread_ = std::thread([this] { Receive(); });
    upstream_ = std::thread([this] { Upstream(); });
    return Status::OK();
  }

  Result<BatchView> Take(Deadline deadline) override {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (cancelled_) return Status::Cancelled(Uri(ep_) + ": reader cancelled");
      if (!fatal_.ok()) return fatal_;
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
    if (f.position != ~uint64_t{0}) {
      // Tell the producer: one more frame may come.
      progress_received_ = std::max(progress_received_, f.position + 1);
      progress_dirty_ = true;
    }
    // Until the session has counted this frame, a resume waits (it says
    // what the session received).
    taking_ = true;
    cv_.notify_all();
    lock.unlock();
    struct Taken {
      GrpcReader* self;
      ~Taken() {
        std::lock_guard<std::mutex> l(self->mu_);
        self->taking_ = false;
        self->cv_.notify_all();
      }
    } taken{this};
    if (!TakePayload(&f, pool_.get())) {
      return Status::ResourceExhausted(Uri(ep_) + ": out of memory for a " + std::to_string(f.size) +
                                       "-byte frame");
    }
    Result<FrameView> frame = ParseFrame(f.buffer->data, f.size);
    if (!frame.ok()) return frame.status().WithContext(Uri(ep_) + ": malformed frame from the network");
    BatchView::Delivery d;
    d.reader = this;
    d.lease = this;
    DATAFEED_ASSIGN_OR_RETURN(d.position, session_.Received(frame->meta(), f.position));
    d.generation = session_.generation();
    return BatchView(std::move(frame).value(), std::move(f.buffer), d);
  }

  Result<bool> Hand(const BatchView& batch) override {
    const BatchView::Delivery& d = batch.delivery();
    if (d.reader != this) return Status::InvalidArgument(Uri(ep_) + ": Hand() of a batch this reader did not deliver");
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!fatal_.ok()) return fatal_;
    }
    if (!session_.Current(d.generation, d.position)) return false;
    DATAFEED_RETURN_NOT_OK(session_.Hand(d.position, batch.meta()));
    return true;
  }

  // Sends the acknowledgement and waits until the producer confirms that it
  // recorded it (one round trip): Next() returns only then, so a consumer
  // killed right after Next() cannot have the batch it finished made again
  // for another consumer. Sent from the upstream thread without waiting, it
  // was lost with the process in ~1 kill in 8 in tests; written by the
  // caller without the confirmation, still in 1 in 5 (gRPC's Write returns
  // before the bytes leave the process).
  Status Ack() override {
    session_.Ack();
    pb::StreamRequest msg;
    uint64_t want = 0, gen = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      progress_acked_ = want = session_.acked();
      msg.set_acked(want);
      msg.set_active(true);
      msg.set_received(progress_received_);
      msg.set_confirm(want > confirmed_acked_);
      progress_active_ = false;
      progress_dirty_ = false;
      gen = stream_gen_;
    }
    bool sent = false;
    {
      std::lock_guard<std::mutex> wlock(write_mu_);
      if (live_stream_ != nullptr && !writes_done_) sent = live_stream_->Write(msg);
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (!sent) {
      // No stream now (reconnecting): the upstream thread sends it later,
      // and a resumed session says it in its hello.
      progress_active_ = true;
      progress_dirty_ = true;
      cv_.notify_all();
      return fatal_;
    }
    if (msg.confirm()) {
      // Bounded: a producer that stops answering is found out by the
      // stream (keepalive), which ends this generation.
      cv_.wait_for(lock, milliseconds(10'000), [&] {
        return confirmed_acked_ >= want || stream_gen_ != gen || cancelled_ || !end_.ok() || !fatal_.ok();
      });
    }
    return fatal_;
  }

  ConsumerState state() const override {
    ConsumerState s;
    if (session_.fingerprint() != 0) s.streams.push_back(session_.position());
    return s;
  }

  void Cancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (ctx_) ctx_->TryCancel();
    cv_.notify_all();
  }

  void Leave() override { Close(); }

  Scheme transport() const override { return Scheme::kGrpc; }
  uint64_t batches_per_epoch() const override { return session_.batches_per_epoch(); }

 private:
  // Tells the producer this consumer is closing: what its trainer was
  // handed counts as consumed, what it only read ahead goes to other
  // consumers at once (not after the grace a broken connection gets); and
  // gives the producer a moment to end the call.
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_ || !end_.ok() || ctx_ == nullptr || closing_) return;
      closing_ = true;
    }
    session_.Ack();
    {
      std::lock_guard<std::mutex> wlock(write_mu_);
      if (live_stream_ != nullptr && !writes_done_) {
        pb::StreamRequest msg;
        msg.set_acked(session_.acked());
        msg.set_close(true);
        live_stream_->Write(msg);
        live_stream_->WritesDone();
        writes_done_ = true;
      }
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, milliseconds(1000), [&] { return !end_.ok() || ctx_ == nullptr; });
  }

  // Sends the consumer's progress (acknowledgements, activity) as it changes.
  void Upstream() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return cancelled_ || closing_ || progress_dirty_ || !end_.ok(); });
      if (cancelled_ || closing_ || !end_.ok()) return;
      pb::StreamRequest msg;
      msg.set_acked(progress_acked_);
      msg.set_active(progress_active_);
      msg.set_received(progress_received_);
      progress_dirty_ = false;
      progress_active_ = false;
      lock.unlock();
      {
        std::lock_guard<std::mutex> wlock(write_mu_);
        // A failed write shows up as a failed read in Receive().
        if (live_stream_ != nullptr && !writes_done_) live_stream_->Write(msg);
      }
      lock.lock();
    }
  }

  Status OpenStream(const Hello& hello, Deadline deadline) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token_.empty()) ctx->AddMetadata(kAuthKey, "Bearer " + token_);
    ctx->set_wait_for_ready(true);
    pb::StreamRequest req;
    req.set_protocol_version(kProtocolVersion);
    req.set_compression(o_.grpc.compression);
    *req.mutable_hello() = ToProto(hello);
    req.set_window(static_cast<uint32_t>(std::min<int64_t>(std::max(1, o_.grpc_prefetch) + 2, kMaxWindow)));
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
    // the request and opened the session; the watchdog cancels a call that
    // is not accepted in time. A failed write shows up as a failed read later.
    std::unique_ptr<Stream> reader(grpc::internal::ClientReaderWriterFactory<pb::StreamRequest, WireFrame>::Create(
        channel_.get(),
        grpc::internal::RpcMethod(kStreamMethod, grpc::internal::RpcMethod::BIDI_STREAMING, channel_),
        ctx.get()));
    bool accepted = false, live = false;
    pb::SessionWelcome welcome;
    if (reader->Write(req)) {
      reader->WaitForInitialMetadata();
      const auto& md = ctx->GetServerInitialMetadata();
      accepted = md.count(kAcceptedKey) > 0;
      auto it = md.find(kSessionKey);
      if (accepted && (it == md.end() || !welcome.ParseFromArray(it->second.data(), static_cast<int>(it->second.size())))) {
        accepted = false;
        live = true;  // accepted without a session: not a protocol-3 producer; end the call
      }
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
      if (live) ctx->TryCancel();
      const grpc::Status gs = reader->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      ctx_ = nullptr;
      if (cancelled_) return Status::Cancelled(Uri(ep_) + ": reader cancelled");
      if (live) {
        return Status::FailedPrecondition(Uri(ep_) + ": the producer accepted the stream without a session "
                                          "(protocol 3); use matching datafeed builds");
      }
      if (gs.error_code() == grpc::StatusCode::CANCELLED || gs.ok()) {
        return Status::DeadlineExceeded(Uri(ep_) + ": the producer did not accept the batch stream in time");
      }
      return FromGrpc(gs, Uri(ep_), "opening the batch stream");
    }
    Status st = session_.Welcomed(welcome.consumer_id(), welcome.position(), welcome.fingerprint(), welcome.shard(),
                                  welcome.num_shards(), welcome.batches_per_epoch());
    std::lock_guard<std::mutex> lock(mu_);
    // Frames received past the producer's position were given to others.
    while (!queue_.empty() && queue_.back().position >= welcome.position()) queue_.pop_back();
    net_received_ = welcome.position();
    if (!st.ok()) {
      ctx->TryCancel();
      ctx_ = nullptr;
      fatal_ = st;
      cv_.notify_all();
      return st;
    }
    stream_ctx_ = std::move(ctx);
    stream_ = std::move(reader);
    // Progress sent on a stream that broke may never have arrived: say it
    // again on this one.
    progress_acked_ = session_.acked();
    progress_dirty_ = true;
    cv_.notify_all();
    return Status::OK();
  }

  // A reconnect resumes the session where the trainer is: what Take()
  // took, with the keys of the last of them. Frames still in the queue are
  // not claimed (the welcome drops them; the producer makes them again),
  // so the producer's window starts from an empty queue. Claiming them
  // too, as this did, made the window count them as taken: the producer
  // sent a full window on top, the queue reached its limit and stopped
  // reading, and the confirmation Next() waits for sat unread behind the
  // frames past the consumer timeout (DeliveryReconnect.FramesQueued...).
  Hello ResumeHello() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !taking_; });  // a frame Take() popped is counted first
    queue_.clear();
    Hello h = session_.ResumeHello();
    net_received_ = h.received;
    return h;
  }

  // Receives frames into queue_. Reconnects with backoff when asked to.
  // It reads whatever arrives: the producer sends at most the window
  // (grpc_prefetch + 2 frames beyond what Take() took off the queue), so
  // the queue stays that short, and a revocation behind queued frames is
  // seen at once rather than after them (a batch handed out after its
  // lease was taken back would reach two consumers). A producer that sends
  // beyond the window is held back by flow control.
  void Receive() {
    const int64_t limit = std::min<int64_t>(std::max(1, o_.grpc_prefetch) + 2, kMaxWindow) + 1;
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
      {
        std::lock_guard<std::mutex> wlock(write_mu_);
        live_stream_ = reader.get();
        writes_done_ = false;
      }
      bool got_any = false, got_end = false;
      grpc::Status gs;
      std::string malformed;
      if (reader) {
        for (;;) {
          {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return cancelled_ || static_cast<int64_t>(queue_.size()) < limit; });
            if (cancelled_) break;
          }
          WireFrame f;
          (void)TakeWireError();
          if (!reader->Read(&f)) {
            malformed = TakeWireError();
            // A message that did not decode: the producer is still sending,
            // so end the call now rather than wait in Finish() for it.
            if (!malformed.empty()) ctx->TryCancel();
            break;
          }
          if (f.end) {
            // Every frame has arrived; half-closing tells the producer so.
            got_end = true;
            std::lock_guard<std::mutex> wlock(write_mu_);
            if (!writes_done_) reader->WritesDone();
            writes_done_ = true;
            continue;
          }
          std::lock_guard<std::mutex> lock(mu_);
          if (f.confirms) {
            confirmed_acked_ = std::max(confirmed_acked_, f.acked);
            cv_.notify_all();
            continue;
          }
          if (f.revoked) {
            // Our leases from revoked_from on went to other consumers.
            while (!queue_.empty() && queue_.back().position >= f.revoked_from) queue_.pop_back();
            net_received_ = std::min(net_received_, f.revoked_from);
            Status st = session_.Revoked(f.revoked_from, "this consumer held leased batches without calling "
                                                         "Next() for longer than the producer's consumer timeout");
            if (!st.ok()) fatal_ = st;
            cv_.notify_all();
            continue;
          }
          got_any = true;
          if (f.position != ~uint64_t{0}) net_received_ = f.position + 1;
          queue_.push_back(std::move(f));
          cv_.notify_all();
        }
        {
          std::lock_guard<std::mutex> wlock(write_mu_);
          live_stream_ = nullptr;
        }
        gs = reader->Finish();
      } else {
        gs = grpc::Status(grpc::StatusCode::UNAVAILABLE, "reconnecting");
      }
      std::unique_lock<std::mutex> lock(mu_);
      ctx_ = nullptr;
      ++stream_gen_;  // an Ack() waiting for this stream's confirmation stops waiting
      cv_.notify_all();
      if (!malformed.empty() && !cancelled_) {
        end_ = Status::DataLoss(Uri(ep_) + ": a malformed message on the batch stream (" + malformed +
                                "): not a datafeed producer, or a corrupted connection");
        cv_.notify_all();
        return;
      }
      if (cancelled_ || closing_) {
        if (end_.ok()) end_ = Status::Cancelled(Uri(ep_) + ": reader closed");
        cv_.notify_all();
        return;
      }
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
        // A protocol-3 producer always ends with the marker.
        end = Status::DataLoss(Uri(ep_) + ": the stream ended without its end-of-stream marker");
      } else if (gs.error_code() == grpc::StatusCode::UNAVAILABLE ||
          gs.error_code() == grpc::StatusCode::INTERNAL ||
          gs.error_code() == grpc::StatusCode::CANCELLED) {
        end = Status::Unavailable(Uri(ep_) + ": the producer went away (" + gs.error_message() + ")" +
                                  (o_.reconnect ? "; gave up reconnecting" : "; restart it, or reconnect"));
      }
      const bool retry = o_.reconnect && !gs.ok() && gs.error_code() != grpc::StatusCode::DATA_LOSS &&
                         gs.error_code() != grpc::StatusCode::FAILED_PRECONDITION &&
                         gs.error_code() != grpc::StatusCode::ABORTED && fatal_.ok();
      if (retry) {
        if (got_any || reconnect_until.infinite()) {
          reconnect_until = Deadline::AfterMillis(o_.reconnect_timeout_ms);
          backoff_ms = 50;
        }
        if (!reconnect_until.expired()) {
          cv_.wait_for(lock, milliseconds(backoff_ms), [&] { return cancelled_; });
          backoff_ms = std::min<int64_t>(backoff_ms * 2, 2000);
          lock.unlock();
          // The session resumes where the consumer is; a failed attempt
          // leaves stream_ empty and is retried after backoff, unless the
          // producer refused to continue the session (fatal_).
          Status opened = OpenStream(ResumeHello(), Deadline::AfterMillis(std::max<int64_t>(backoff_ms, 500)));
          if (!opened.ok() && (opened.code() == StatusCode::kDataLoss || opened.code() == StatusCode::kAborted ||
                               opened.code() == StatusCode::kFailedPrecondition)) {
            lock.lock();
            if (fatal_.ok()) fatal_ = opened;
            end_ = opened;
            cv_.notify_all();
            return;
          }
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
  ConsumerSession session_;
  std::string token_;  // bearer token sent with every call ("" none)
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WireFrame> queue_;
  Status end_;    // set when the stream ended; returned once queue_ is empty
  Status fatal_;  // the session is over (Aborted, DataLoss): returned at once
  bool cancelled_ = false;
  bool closing_ = false;
  bool taking_ = false;         // Take() popped a frame the session has not counted yet
  uint64_t net_received_ = 0;  // delivery position of the next frame from the network
  uint64_t progress_acked_ = 0;
  uint64_t progress_received_ = 0;  // frames taken off the queue (flow control)
  bool progress_active_ = false;
  bool progress_dirty_ = false;
  grpc::ClientContext* ctx_ = nullptr;  // the live stream, for Cancel()
  std::unique_ptr<grpc::ClientContext> stream_ctx_;  // opened, not yet taken by Receive()
  std::unique_ptr<Stream> stream_;
  std::mutex write_mu_;          // one writer at a time on the stream
  Stream* live_stream_ = nullptr;  // the stream Receive() reads (write_mu_)
  // live_stream_ was half-closed: nothing more may be written on it
  // (the end marker arrived, which the producer sends once every batch was
  // acknowledged, or the consumer closed).
  bool writes_done_ = false;
  // Under mu_: acknowledgements below this the producer confirmed; which
  // stream Receive() reads (counts streams that ended).
  uint64_t confirmed_acked_ = 0;
  uint64_t stream_gen_ = 0;
  std::thread thread_;
  std::thread upstream_;
};

}  // namespace

Result<std::shared_ptr<grpc::Channel>> MakeChannel(const Endpoint& ep, const GrpcOptions& o) {
  DATAFEED_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds, ClientCredentials(o));
  const size_t max_frame = o.max_frame_bytes ? o.max_frame_bytes : kDefaultMaxFrame;
  return grpc::CreateCustomChannel(GrpcAddress(ep.name, ep.port), creds, ClientChannelArgs(o, max_frame));
}

Result<pb::HandshakeResponse> DoHandshake(const std::shared_ptr<grpc::Channel>& channel,
                                          const Endpoint& ep, pb::Transport preference,
                                          Deadline deadline, const std::string& token) {
  pb::DataFeed::Stub stub(channel);
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata(kAuthKey, "Bearer " + token);
  // Wait (up to the deadline) for a producer that is still starting.
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(deadline.infinite() ? std::chrono::system_clock::time_point::max()
                                       : std::chrono::system_clock::now() + deadline.remaining());
  pb::HandshakeRequest req;
  req.set_protocol_version(kProtocolVersion);
  req.set_host_digest(LocalHostDigest());
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

Result<std::unique_ptr<BatchReader>> OpenGrpcStreamReader(const Endpoint& endpoint, const ReaderOptions& options,
                                                          std::shared_ptr<grpc::Channel> channel,
                                                          Deadline deadline) {
  auto reader = std::make_unique<GrpcReader>(endpoint, options, std::move(channel));
  DATAFEED_RETURN_NOT_OK(reader->Start(deadline));
  return std::unique_ptr<BatchReader>(std::move(reader));
}

}  // namespace datafeed::internal
