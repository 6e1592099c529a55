// Consumer: the trainer's end of a datafeed stream.
//
// A Consumer reads batches from a BatchReader (any transport), optionally
// ahead of the trainer on a background thread, and measures how long the
// trainer waited for them.
//
//   auto consumer = Consumer::Open("shm://feed0").value();   // or "" for $DATAFEED_ENDPOINT
//   for (BatchView& batch : *consumer) {
//     const TensorView* image = batch.Find("image");
//     ...                                                    // train on it
//   }
//   if (Status st = consumer->status(); !st.IsEndOfStream()) { ...st.ToString()... }
//   ConsumerStats s = consumer->stats();                     // samples/s, wait fraction
//
// Batches are the transport's zero-copy BatchViews: a batch's memory (on
// shared memory, one ring slot) is given back when the last copy of its view
// (and the last holder of its keepalive(), e.g. a tensor) is gone. Views
// stay valid after the Consumer is destroyed.
//
// Thread safety: all methods are safe to call from any thread at once.
// Next() and iteration are meant for one trainer thread; several threads
// calling Next() each get distinct batches, and the wait time in stats()
// is then summed over them. An Iterator is not thread-safe. Stop() and
// stats() may be called from any thread while another is blocked in Next()
// (e.g. from a signal-handling thread).
#ifndef DATAFEED_CONSUMER_CONSUMER_H_
#define DATAFEED_CONSUMER_CONSUMER_H_

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/status.h"
#include "datafeed/transport/transport.h"

namespace datafeed {

struct ConsumerOptions {
  // Batches read ahead of the trainer by a background thread, at most this
  // many waiting at once; 0 reads in the caller of Next(), with no thread.
  // Every prefetched batch holds its transport memory: on shared memory one
  // ring slot that the producer cannot refill until the trainer has taken
  // and dropped the batch. The ring already buffers what was published, so
  // on shared memory 1 is enough; keep
  //   prefetch + batches the trainer holds + producer in-flight batches <= slots
  // or the producer waits for slots. Over a network (gRPC) more hides latency.
  int prefetch = 1;
  // Next() fails with DeadlineExceeded when no batch arrives for this long
  // (-1: wait forever). The stream goes on: a later Next() may succeed.
  int64_t timeout_ms = -1;
  // Every this many seconds a stats line goes to stderr (0: never). It is
  // written by Next() when a batch arrives, so a trainer that stopped
  // calling Next() prints nothing.
  double log_every_s = 0;
  // Prefix of the stats line.
  std::string log_name = "datafeed-consumer";
  // Used when the Consumer opens the endpoint itself (Open).
  ReaderOptions reader;
};

// Cumulative counters since the first Next() call. A snapshot; take two and
// subtract to measure an interval.
struct ConsumerStats {
  uint64_t batches = 0;   // returned by Next()
  uint64_t samples = 0;   // sum of dimension 0 of each batch's first tensor
  uint64_t bytes = 0;     // frame bytes of those batches
  double elapsed_s = 0;   // wall time since the first Next() call began (until the end of the stream)
  double wait_s = 0;      // time spent inside Next() and Peek(): the trainer waiting for data (not
                          // the wait for the end of the stream)
  uint64_t dropped = 0;   // read-ahead batches whose lease the producer took back

  double samples_per_s() const { return elapsed_s > 0 ? samples / elapsed_s : 0; }
  double batches_per_s() const { return elapsed_s > 0 ? batches / elapsed_s : 0; }
  // wait_s / elapsed_s: 0 when data is always ready, near 1 when the trainer
  // mostly waits.
  double wait_fraction() const { return elapsed_s > 0 ? wait_s / elapsed_s : 0; }
  // "120 batches, 983040 samples, 8123 samples/s, 1.2 GB/s, waiting 3.1% of 121.0 s"
  std::string ToString() const;
};

// What a live line says when the trainer waits for data: "" when it waited
// less than kInputBoundFraction of an interval, else "input-bound: the
// trainer waited 38% of the time for batches; more producer threads
// (datafeed-producer --threads) or more producers (--num-shards) would help".
inline constexpr double kInputBoundFraction = 0.10;
std::string InputBoundAdvice(double wait_fraction);

class Consumer {
 public:
  class Iterator;
  struct End {};

  // Opens `uri` with ResolveEndpoint rules: an empty uri means
  // $DATAFEED_ENDPOINT, and $DATAFEED_TRANSPORT (or `transport` when given:
  // "shm", "grpc", "auto") overrides the scheme. Errors from resolving or
  // opening the endpoint (NotFound: no producer there within
  // options.reader.connect_timeout_ms) are returned as they are. Caller owns
  // the result.
  static Result<std::unique_ptr<Consumer>> Open(std::string_view uri,
                                                const ConsumerOptions& options = {},
                                                std::string_view transport = {});
  // Opens `endpoint` as given (no environment variables consulted).
  static Result<std::unique_ptr<Consumer>> Open(const Endpoint& endpoint,
                                                const ConsumerOptions& options = {});
  // Wraps a reader the caller already opened; the Consumer takes ownership.
  // InvalidArgument for a null reader or a negative prefetch.
  static Result<std::unique_ptr<Consumer>> Make(std::unique_ptr<BatchReader> reader,
                                                const ConsumerOptions& options = {});

  // Stop()s, then destroys the reader. Batches still prefetched are given
  // back to the transport; views already returned stay valid.
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // The next batch, in the order the transport delivers them. Blocks until
  // one is ready, options.timeout_ms passes (DeadlineExceeded; the stream
  // goes on) or the stream ends: EndOfStream once the producer closed it and
  // every batch was returned; Cancelled after Stop(); any other transport
  // error (Unavailable: the producer died; DataLoss: a malformed frame) ends
  // the stream too. Once ended, Next() returns the same status forever.
  // With prefetch, errors arrive after the batches received before them.
  Result<BatchView> Next();

  // Ends the stream: wakes a blocked Next() with Cancelled, stops the
  // prefetch thread and gives back the batches it held. Idempotent; returns
  // once the prefetch thread has exited.
  void Stop();

  // Why the stream ended, or OK while it has not: EndOfStream after a
  // normal end, Cancelled after Stop(), else the error. A DeadlineExceeded
  // from the most recent Next() is reported too (it does not end the stream,
  // but it does end a range-for loop).
  Status status() const;

  ConsumerStats stats() const;

  // The delivery contract (transport/.../delivery.h). This consumer's
  // checkpointable position: put it in the trainer's checkpoint (ToJson()),
  // and open a Consumer with ConsumerOptions::reader.session.restore set to
  // its streams to receive exactly the batches after it. Thread-safe; call
  // it between steps (it counts every batch Next() handed out).
  ConsumerState state() const;

  // Continues from a checkpoint: what state() returned then (the streams of
  // one consumer, or every rank's of a group with `session`'s rank and
  // world size). Reopens the endpoint with ReaderOptions::session.restore
  // set: the producer makes again what this consumer was given after the
  // checkpoint, and nothing before it. Call it before the first Next():
  // FailedPrecondition afterwards, and for a Consumer made from a reader
  // (Make) rather than opened. The producer's refusals (another run, a
  // producer restarted without its --state-dir: FailedPrecondition; a
  // checkpoint it cannot honour: DataLoss) are returned as they are.
  Status LoadState(const ConsumerState& state, const SessionOptions& group = {});
  Status LoadState(const std::vector<ConsumerState>& states, const SessionOptions& group = {});

  // The metadata of the batch the next Next() will hand out, waiting for it
  // like Next() (timeout_ms), without handing it out: a trainer can end its
  // epoch loop when the epoch changes and leave that batch leased to itself
  // but not held. Acknowledges what was handed out. Needs prefetch > 0.
  // (A batch whose lease is taken back before Next() is skipped, so the
  // batch Next() then returns may differ.)
  Result<BatchMeta> Peek();

  // The endpoint's URI, or "" for a Consumer made from a reader.
  const std::string& endpoint() const;
  // The transport batches arrive on: for auto:// what the handshake chose
  // (kShm or kGrpc).
  Scheme transport() const;
  // Every producer this consumer reads (an endpoint listing several, or a
  // DNS name resolving to several: one entry each), with its transport,
  // the batches taken from it and whether it is reading, ended or lost.
  // Empty when it reads one producer.
  std::vector<ProducerLink> producers() const;
  // Batches per epoch of the producer's run (BatchReader::batches_per_epoch):
  // 0 when unknown (no run, or not yet known).
  uint64_t batches_per_epoch() const;

  // Range-for over the batches: each step calls Next(); the loop ends at
  // the first status that is not OK, which status() then reports. The
  // iterator drops the previous batch before it waits for the next, so a
  // loop body that does not keep a copy holds at most one batch.
  Iterator begin();
  End end() { return End{}; }

 private:
  struct Impl;
  explicit Consumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// An input iterator over a Consumer's batches (see Consumer::begin()).
class Consumer::Iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = BatchView;
  using difference_type = std::ptrdiff_t;
  using pointer = BatchView*;
  using reference = BatchView&;

  // The current batch; may be moved from to keep it past this step.
  BatchView& operator*() { return current_; }
  BatchView* operator->() { return &current_; }
  // Drops the current batch and waits for the next one.
  Iterator& operator++();
  bool operator==(End) const { return done_; }
  bool operator!=(End) const { return !done_; }

 private:
  friend class Consumer;
  explicit Iterator(Consumer* consumer) : consumer_(consumer) { Advance(); }
  void Advance();

  Consumer* consumer_;
  BatchView current_;
  bool done_ = false;
};

// Split pipelines (a '|' in the producer's pipeline spec): the producer
// sends the image as uint8 [B, C, H, W] and names the consumer's finish in
// the tensor (TensorView::finish, e.g. "to_tensor,normalize(0.1307,0.3081)").
// FinishTensor runs it: `out` must hold tensor.numel() floats and receives
// exactly the float32 values an unsplit producer would have sent (the same
// table code, datafeed::Finish). InvalidArgument when the tensor has no
// finish or out is too small. The torch adapter and the Python package do
// this for you by default.
Status FinishTensor(const TensorView& tensor, float* out, size_t out_floats);
// The same into a new vector.
Result<std::vector<float>> FinishTensor(const TensorView& tensor);

}  // namespace datafeed

#endif  // DATAFEED_CONSUMER_CONSUMER_H_
