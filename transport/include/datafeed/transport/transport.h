// The transport interface: how a batch frame moves from a producer to a
// consumer. One interface, several implementations chosen by endpoint scheme
// (shared-memory ring, in-process queue; gRPC later).
//
// Producer side, loan -> fill -> publish:
//
//   auto writer = OpenWriter(endpoint, {}).value();
//   auto layout = BatchLayout::Make({{"image", DType::kFloat32, {B,1,28,28}},
//                                    {"label", DType::kInt64, {B}}}).value();
//   WritableBatch batch = writer->Loan(layout, Deadline::Infinite()).value();
//   float* img = batch.data<float>(0);   // write straight into transport memory
//   ...
//   writer->Publish(std::move(batch));
//
// Consumer side:
//
//   auto reader = OpenReader(endpoint, {}).value();
//   for (;;) {
//     Result<BatchView> b = reader->Next(Deadline::AfterMillis(1000));
//     if (b.status().IsEndOfStream()) break;
//     ... b->frame().Find("image") ...   // memory stays valid while *b lives
//   }
#ifndef DATAFEED_TRANSPORT_TRANSPORT_H_
#define DATAFEED_TRANSPORT_TRANSPORT_H_

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "datafeed/transport/deadline.h"
#include "datafeed/transport/delivery.h"
#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/frame.h"
#include "datafeed/transport/status.h"

namespace datafeed {

namespace internal {
// Transports' access to a loan's internals (transports_internal.h).
struct LoanAccess;
}  // namespace internal

// Implemented by transports: takes back memory a WritableBatch was loaned.
class LoanOwner {
 public:
  virtual ~LoanOwner() = default;
  // The loan `token` was dropped without being published. Thread-safe.
  virtual void Abandon(uint64_t token) = 0;
};

// Frame memory loaned by a BatchWriter: fill the tensors in place, then hand
// it to BatchWriter::Publish(). Move-only. Dropping it unpublished gives the
// memory back to the transport. Not thread-safe; distinct batches may be
// filled on distinct threads. Only a transport can make one (Loan) or take
// it back (Publish); what they use is private (internal::LoanAccess), as
// iceoryx2's samples keep theirs.
class WritableBatch {
 public:
  WritableBatch() = default;
  WritableBatch(WritableBatch&& other) noexcept;
  WritableBatch& operator=(WritableBatch&& other) noexcept;
  WritableBatch(const WritableBatch&) = delete;
  WritableBatch& operator=(const WritableBatch&) = delete;
  ~WritableBatch();

  bool valid() const { return frame_ != nullptr; }
  const BatchLayout& layout() const { return *layout_; }
  // Payload of tensor i (layout order), layout().nbytes(i) bytes.
  uint8_t* data(size_t i) { return frame_ + layout_->offset(i); }
  template <typename T>
  T* data(size_t i) { return reinterpret_cast<T*>(data(i)); }
  // Metadata written into the header at Publish (sequence is stamped by the
  // transport and ignored here).
  BatchMeta& meta() { return meta_; }
  const BatchMeta& meta() const { return meta_; }
  size_t frame_bytes() const { return layout_->frame_bytes(); }

 private:
  friend struct internal::LoanAccess;
  WritableBatch(LoanOwner* owner, uint64_t token, uint8_t* frame, std::shared_ptr<const BatchLayout> layout);

  LoanOwner* owner_ = nullptr;
  uint64_t token_ = 0;
  uint8_t* frame_ = nullptr;
  std::shared_ptr<const BatchLayout> layout_;
  BatchMeta meta_;
};

// A received, verified batch. Copies share the same memory; the transport
// gets the memory back (the shared-memory slot is released) when the last
// copy and the last holder of keepalive() are gone. Safe to pass between
// threads; the frame is read-only.
class BatchView {
 public:
  // Where a reader delivered a view (delivery.h): its consumer's delivery
  // position and the reader's session generation then. For readers.
  struct Delivery {
    const void* reader = nullptr;  // the reader that delivered it
    uint64_t position = ~uint64_t{0};
    uint64_t generation = 0;
    void* lease = nullptr;          // the reader's own per-batch state (owned by keepalive)
  };

  BatchView() = default;
  BatchView(FrameView frame, std::shared_ptr<void> keepalive)
      : frame_(std::move(frame)), keepalive_(std::move(keepalive)) {}
  BatchView(FrameView frame, std::shared_ptr<void> keepalive, Delivery delivery)
      : frame_(std::move(frame)), keepalive_(std::move(keepalive)), delivery_(delivery) {}

  const FrameView& frame() const { return frame_; }
  const BatchMeta& meta() const { return frame_.meta(); }
  const TensorView* Find(std::string_view name) const { return frame_.Find(name); }
  // Holding this keeps the frame's memory valid (e.g. in a tensor deleter).
  const std::shared_ptr<void>& keepalive() const { return keepalive_; }
  const Delivery& delivery() const { return delivery_; }

 private:
  FrameView frame_;
  std::shared_ptr<void> keepalive_;
  Delivery delivery_;
};

// What a writer holds now (BatchWriter::gauges()), for metrics.
struct WriterGauges {
  uint64_t slots = 0;           // shared-memory ring slots (0: no ring)
  uint64_t slots_in_use = 0;    // of those, loaned, waiting for a reader or being read
  uint64_t shm_consumers = 0;   // readers attached to the ring (the gRPC server's relay not counted)
  uint64_t grpc_consumers = 0;  // gRPC batch streams open
};

// Producer side of a transport. Loan and Publish may be called from several
// threads at once; batches are delivered in the order Publish is called.
class BatchWriter {
 public:
  virtual ~BatchWriter() = default;
  // Loans memory for one frame of `layout`. Blocks while the transport is
  // full (backpressure) until `deadline` (DeadlineExceeded). Fails with
  // ResourceExhausted if a frame of this layout can never fit.
  virtual Result<WritableBatch> Loan(std::shared_ptr<const BatchLayout> layout,
                                     Deadline deadline) = 0;
  // Stamps the sequence number, writes the header and makes the batch
  // visible to exactly one reader.
  virtual Status Publish(WritableBatch batch) = 0;
  // Ends the stream: readers get the batches already published, then
  // EndOfStream. Later Loan/Publish fail with FailedPrecondition. Idempotent.
  virtual Status Close() = 0;
  // The endpoint readers should open.
  virtual std::string endpoint() const = 0;

  // The delivery contract (delivery.h), for a writer opened with
  // WriterOptions::run; a writer without a run has no identities and no
  // leases (at most once, as a plain ring).
  //
  // Where the run goes on (journal replayed). FailedPrecondition for a
  // writer opened without a run.
  virtual Result<RunStart> run_start() const;
  // The oldest batch to make again (a lease was lost, a checkpoint was
  // restored); publish it with BatchMeta::attempt > 0. nullopt: none now.
  virtual std::optional<BatchKey> TakeRemake();
  // A batch from TakeRemake that will not be published after all.
  virtual void Unmade(const BatchKey& key);
  // The delivery contract's counters (zero for a writer without a run).
  virtual DeliveryStats delivery_stats() const { return {}; }
  // A snapshot of the ring and the consumers connected. Thread-safe.
  virtual WriterGauges gauges() const { return {}; }
  enum class Work { kRemake, kDone, kWait };
  // For a producer that made every fresh batch: waits until a batch must be
  // made again (kRemake), or every batch was made and acknowledged by its
  // consumer (kDone: Close() now loses nothing), or the deadline (kWait).
  // A writer without a run answers kDone.
  virtual Work WaitForWork(Deadline deadline);
};

// Consumer side. Next() may be called from several threads; each batch is
// returned to exactly one caller across all readers of the endpoint.
//
// Delivery contract (delivery.h): a batch is leased to this reader until it
// is acknowledged. Next() acknowledges every batch it handed out before,
// then takes and hands out the next one. A reader that reads ahead uses the
// two steps itself: Take() claims a batch (leased, not yet the trainer's),
// Hand() gives it to the trainer, Ack() acknowledges what was handed out.
// One producer a reader reads (BatchReader::links()).
struct ProducerLink {
  std::string endpoint;    // where it was reached, e.g. "auto://10.0.0.3:5000"
  Scheme transport = Scheme::kGrpc;  // kShm or kGrpc: what the handshake chose
  uint64_t batches = 0;    // batches taken from it
  std::string state;       // "reading", "ended", or "lost: <why>"
};

class BatchReader {
 public:
  virtual ~BatchReader() = default;
  // Acknowledges what was handed out, then takes and hands out the next
  // batch, in publication order. DeadlineExceeded if none arrives in time;
  // EndOfStream once the writer closed and every batch was taken;
  // Unavailable if the producer died; DataLoss for a malformed frame or a
  // broken contract (a batch twice, another run); Aborted when this consumer
  // lost batches it had handed out (its lease expired).
  Result<BatchView> Next(Deadline deadline);
  // Claims the next batch without handing it out. Same errors as Next().
  virtual Result<BatchView> Take(Deadline deadline) = 0;
  // Hands a batch from Take() (in Take order) to the trainer: true. False
  // when its lease was taken back while it waited (drop it and Take again).
  // Aborted (see Next) ends the session.
  virtual Result<bool> Hand(const BatchView& batch) = 0;
  // Acknowledges every batch handed out so far, and tells the producer the
  // trainer is asking for more (it is not stalled).
  virtual Status Ack() = 0;
  // This consumer's checkpointable position (delivery.h). Empty `streams`
  // when the producer has no run (a plain writer).
  virtual ConsumerState state() const = 0;
  // Wakes every thread blocked in Next() with Cancelled; later calls fail
  // the same way. Thread-safe, idempotent.
  virtual void Cancel() = 0;
  // The consumer is leaving (Consumer::Stop, the destructor): every batch
  // handed to the trainer counts as consumed (as a checkpoint counts it),
  // and what was only read ahead goes back to the producer for other
  // consumers at once, not after its consumer timeout. A gRPC stream says
  // so and waits (at most about a second) for the producer to end it.
  // Call it before Cancel(), which would cut the stream first. Thread-safe;
  // the default does nothing.
  virtual void Leave() {}
  // The transport batches actually arrive on: kShm or kGrpc for an auto://
  // endpoint, after its handshake chose; kAuto for a reader of several
  // producers that arrive on both (see links()).
  virtual Scheme transport() const = 0;
  // The producers this reader reads, one entry each (several for an
  // endpoint listing several producers or a name that resolves to several).
  // Empty for a reader of one.
  virtual std::vector<ProducerLink> links() const { return {}; }
  // Batches in one epoch of the run this reader reads, as the producer's
  // handshake said (its shard's; the sum over producers for a reader of
  // several). 0 when unknown: a producer without a run, or before the
  // handshake. Readers that compete for one stream each get a share.
  virtual uint64_t batches_per_epoch() const { return 0; }
};

// Shared-memory ring sizing. Defaults fit one batch of 8192 float32 28x28
// images plus int64 labels (25.8 MB) per slot.
struct ShmOptions {
  size_t slot_count = 4;
  size_t slot_bytes = 25'821'184;  // 8192*784*4 + 8192*8 + header room, 4 KiB multiple
};

// The gRPC transport (grpc:// and auto:// endpoints).
struct GrpcOptions {
  // TLS, PEM files. Producer: tls_cert + tls_key serve TLS; adding tls_ca
  // requires consumers to present a certificate signed by it (mTLS).
  // Consumer: tls_ca verifies the producer (enables TLS); tls_cert +
  // tls_key present a client certificate.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  // Consumer: the name expected in the producer's certificate, when it is
  // not the endpoint's HOST.
  std::string tls_server_name;
  // Consumer: "gzip" asks the producer to compress frames ("" = none).
  std::string compression;
  // HTTP/2 keepalive ping interval; a peer that does not answer a ping
  // within twice this is dropped. A killed peer is noticed at once (its
  // sockets close); this is for silent ones (a partition). Not shorter:
  // a ping queues behind up to a 64 MB window of frames when the consumer
  // pauses, and a 1 s timeout dropped healthy streams.
  int64_t keepalive_ms = 10'000;
  // Largest frame a consumer accepts (0: 1 GiB). Larger frames are refused
  // with an error naming the endpoint and this limit.
  size_t max_frame_bytes = 0;

  // Who may connect (docs/DESIGN.md, "Who may connect").
  // A bearer token, in a file (its first line; whitespace around it is
  // dropped). Producer: every call must carry it (compared in constant
  // time), else UNAUTHENTICATED and nothing else is said. Consumer: sent
  // with every call. Over a network use it with TLS: a token sent in the
  // clear can be read off the wire.
  std::string auth_token_file;
  // Producer: serve plaintext (no TLS) on an address other than loopback.
  // Off, such a producer refuses to start: anyone who can reach the port
  // would read the stream.
  bool insecure = false;
  // Producer: the most batch streams at once, in all and from one peer
  // address; more are refused with RESOURCE_EXHAUSTED. Streams that stop
  // reading lose their leases after WriterOptions::consumer_timeout_ms and
  // are cut off once a send has waited that long, so they cannot hold the
  // ring's slots for good.
  int max_streams = 64;
  int max_streams_per_peer = 16;
  // Producer: also serve gRPC server reflection and channelz
  // (--grpc-introspection), for grpcurl, grpc_cli and channelz viewers.
  // Behind the bearer token like every service; refused on an address
  // other than loopback unless auth_token_file or tls_ca says who may call.
  bool introspection = false;
};

struct WriterOptions {
  ShmOptions shm;
  GrpcOptions grpc;
  // The delivery contract (delivery.h). With `run` set (a Producer sets
  // it), every batch published must carry that run's identity, and the
  // writer keeps leases: shm, grpc and auto writers. Unset: a plain ring.
  std::optional<RunInfo> run;
  // Journal directory for the run's positions ("" = in memory only: a
  // restarted producer starts the run again).
  std::string state_dir;
  // A consumer holding leases that does not call Next() for this long loses
  // them; also how long a consumer that lost its connection keeps them
  // while it reconnects.
  int64_t consumer_timeout_ms = 30'000;
  // Once every batch of the run was acknowledged, WaitForWork() reports
  // kDone only after this long without a batch to make again: a trainer that
  // died at the very end and restores a checkpoint still gets its batches.
  int64_t finish_grace_ms = 0;
  // grpc/auto: the name of the shared-memory ring behind the gRPC endpoint
  // (default: "datafeed-grpc-PORT").
  std::string shm_name;
  // When the writer is destroyed, wait up to this long for consumers to
  // take the batches already published (shm: the segment's name is removed
  // at destruction, so a consumer that has not attached by then cannot).
  // With a run (`run` set), the wait ends as soon as no consumer session
  // is open: nobody is left to take them (a producer stopped by SIGTERM
  // with no consumer exits at once).
  int64_t linger_ms = 0;
  // Set it (from any thread, e.g. a signal handler's thread) to stop that
  // wait at once: a second Ctrl-C. What consumers had not taken is not
  // delivered by this writer (with --state-dir, a restarted producer makes
  // it again). Must outlive the writer.
  const std::atomic<bool>* stop_lingering = nullptr;
  // inproc: how many published-but-unread batches may wait.
  size_t inproc_capacity = 4;
};

struct ReaderOptions {
  // How long OpenReader waits for a producer to create the endpoint.
  int64_t connect_timeout_ms = 0;
  // The session: a consumer id to continue, a checkpoint to restore (delivery.h).
  SessionOptions session;
  // shm: the uid that must own the segment (-1: this process's uid).
  int64_t shm_owner_uid = -1;
  // shm: how a Next() that finds no batch waits. With adaptive_spin (the
  // default) it polls for up to kAdaptiveSpinUs first, but only while
  // batches have been arriving close together (a moving average of the
  // gaps between this reader's last arrivals under kAdaptiveCloseGapUs)
  // and this process may run on more than one CPU; otherwise, and once the
  // poll runs out, it sleeps on a futex. A reader waiting out a pause or an
  // idle stream therefore sleeps at once and uses no CPU, while a busy
  // stream is handed over in a few microseconds instead of a futex wake-up
  // (tens of microseconds on a loaded VM). adaptive_spin = false: always
  // sleep at once. spin_us > 0: always poll for that long first, whatever
  // the pattern (overrides adaptive_spin).
  bool adaptive_spin = true;
  static constexpr int64_t kAdaptiveSpinUs = 50;
  static constexpr int64_t kAdaptiveCloseGapUs = 250;
  int64_t spin_us = 0;
  // Producer liveness is checked this often while blocked (bounds how soon
  // a dead producer is reported).
  int64_t liveness_check_ms = 100;
  GrpcOptions grpc;
  // gRPC: frames received ahead of Next() (each holds one frame of
  // memory). The producer may send grpc_prefetch + 2 frames beyond what
  // Next() took (at most 64), all leased to this consumer.
  int grpc_prefetch = 1;
  // gRPC: streams to each producer, each on its own TCP connection and its
  // own delivery session (consumer id), merged as a list of producers is
  // (the producer's ledger splits its batches between the sessions, each
  // batch to one of them). For links one TCP stream cannot fill. A
  // checkpoint then holds one position per stream; restoring it with N > 1
  // streams is a group restore of its positions (this consumer's rank r of
  // a group of W becomes ranks r*N .. r*N+N-1 of W*N), so it may be taken
  // with another N. A producer that the handshake sends to shared memory
  // (auto:// on its host) is read by one reader whatever N is. 1 .. 64;
  // the producer allows --max-streams-per-peer (16) streams per consumer
  // host.
  int grpc_streams = 1;
  static constexpr int kMaxGrpcStreams = 64;
  // When the producer goes away (killed and restarted, a broken stream),
  // reconnect (with backoff: 50 ms doubling to 2 s) for up to
  // reconnect_timeout_ms instead of failing, and resume the session: shm,
  // grpc and auto, whichever transport the handshake picks again.
  bool reconnect = false;
  int64_t reconnect_timeout_ms = 30'000;
  // Several producers (an endpoint listing several, or a DNS name): how
  // often the names are resolved again, so producers that appear are read
  // too (0: never).
  int64_t resolve_every_ms = 30'000;
  // Several producers: batches of a later epoch wait until every producer
  // still sending has sent this consumer a batch of that epoch too (so an
  // epoch ends when every producer has ended it), but never longer than
  // this without hearing from the laggard (a producer that died or stopped
  // sending is not waited for).
  int64_t epoch_barrier_ms = 5'000;
};

// Shared-memory segments (/dev/shm/datafeed.*) of this user whose producer
// is dead (its liveness lock is free): what a producer killed with -9 leaves
// behind. Remove...() unlinks them (a consumer still attached keeps its
// mapping) and returns the names it removed; a starting producer and the
// datafeed-gc tool run it. A segment being created, or served, is never
// touched.
Result<std::vector<std::string>> ListStaleShmSegments();
Result<std::vector<std::string>> RemoveStaleShmSegments();

// Opens the producer side of `endpoint`. Caller owns the writer.
Result<std::unique_ptr<BatchWriter>> OpenWriter(const Endpoint& endpoint,
                                                const WriterOptions& options);
// Opens a consumer of `endpoint`. Caller owns the reader.
Result<std::unique_ptr<BatchReader>> OpenReader(const Endpoint& endpoint,
                                                const ReaderOptions& options);

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_TRANSPORT_H_
