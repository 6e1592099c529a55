// The shared-memory writer and readers, as other transports in this library
// use them: the gRPC server is a ring writer plus relay readers of it.
#ifndef DATAFEED_TRANSPORT_SRC_SHM_SHM_TRANSPORT_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_SHM_SHM_TRANSPORT_INTERNAL_H_

#include <functional>
#include <memory>
#include <string>

#include "datafeed/transport/transport.h"
#include "delivery/ledger_internal.h"

namespace datafeed::internal {

// A ring writer with its delivery ledger.
class ShmRingWriter : public BatchWriter {
 public:
  // The ledger (null for a writer without a run). Lives as long as the writer.
  virtual Ledger* ledger() = 0;
  // The segment's random producer id (a new one every start): what tells
  // two producers apart when several addresses reach the same one.
  virtual uint64_t producer_id() const = 0;
  // Revocations of sessions the ring does not own (gRPC streams) go here.
  // Called from the ring's service thread.
  virtual void SetRevocationSink(std::function<void(const Revocation&)> sink) = 0;
  // Waits (up to WriterOptions::linger_ms) until readers have claimed every
  // published batch. The destructor does it too.
  virtual void Linger() = 0;
};

Result<std::unique_ptr<ShmRingWriter>> OpenShmRingWriter(const std::string& name, const WriterOptions& options);

// A reader of the ring whose claims the ring does not record: the producer's
// own gRPC server, which records each delivery itself (to the stream it
// sends the batch on). Its Take() is what it uses; Hand/Ack do nothing.
Result<std::unique_ptr<BatchReader>> OpenShmRelayReader(const std::string& name);

// Where a reader finds its ring again after the producer was restarted:
// shm:// looks up the same name; auto:// asks the producer's handshake.
using ShmLocator = std::function<Result<std::string>(Deadline deadline)>;

// A consumer of ring NAME with its session (ReaderOptions::session).
// `locate` (may be empty: the same name) is used to reconnect when
// options.reconnect is set. `answered` (may be null) is set when the ring
// was mapped and its producer answered the session request: a failure is
// then the producer's refusal of the session (its checkpoint, its run),
// not a ring this consumer could not use.
Result<std::unique_ptr<BatchReader>> OpenShmSessionReader(const std::string& name, const ReaderOptions& options,
                                                          ShmLocator locate, bool* answered = nullptr);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_SHM_SHM_TRANSPORT_INTERNAL_H_
