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

Result<std::unique_ptr<BatchReader>> OpenGrpcStreamReader(const Endpoint& endpoint, const ReaderOptions& options,
                                                          std::shared_ptr<grpc::Channel> channel,
                                                          Deadline deadline) {
  auto reader = std::make_unique<GrpcReader>(endpoint, options, std::move(channel));
  DATAFEED_RETURN_NOT_OK(reader->Start(deadline));
  return std::unique_ptr<BatchReader>(std::move(reader));
}

}  // namespace datafeed::internal
