// Factories of the built-in transports; OpenWriter/OpenReader dispatch on
// the endpoint scheme to these.
#ifndef DATAFEED_TRANSPORT_SRC_TRANSPORTS_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_TRANSPORTS_INTERNAL_H_

#include <memory>
#include <string>

#include "datafeed/transport/transport.h"

namespace datafeed::internal {

// What only transports may do with a WritableBatch.
struct LoanAccess {
  static WritableBatch Make(LoanOwner* owner, uint64_t token, uint8_t* frame,
                            std::shared_ptr<const BatchLayout> layout) {
    return WritableBatch(owner, token, frame, std::move(layout));
  }
  static uint8_t* Frame(WritableBatch& b) { return b.frame_; }
  static uint64_t Token(const WritableBatch& b) { return b.token_; }
  // Marks the loan as handed back to its transport: the batch's destructor
  // then gives nothing back.
  static void Release(WritableBatch& b) {
    b.owner_ = nullptr;
    b.frame_ = nullptr;
  }
};

Result<std::unique_ptr<BatchWriter>> OpenInProcWriter(const std::string& name,
                                                      const WriterOptions& options);
Result<std::unique_ptr<BatchReader>> OpenInProcReader(const std::string& name,
                                                      const ReaderOptions& options);
Result<std::unique_ptr<BatchWriter>> OpenShmWriter(const std::string& name,
                                                   const WriterOptions& options);
Result<std::unique_ptr<BatchReader>> OpenShmReader(const std::string& name,
                                                   const ReaderOptions& options);

// grpc:// and auto:// (the writer serves both a gRPC endpoint and a ring).
// In grpc/server.cc.
Result<std::unique_ptr<BatchWriter>> OpenGrpcWriter(const Endpoint& endpoint,
                                                    const WriterOptions& options);
// grpc:// and auto://: handshakes with the producer, then reads its ring
// when the handshake says so (auto:// on the producer's host) or its gRPC
// stream. grpc:// forces the stream; auto:// with force_shm forces the ring
// and fails when it cannot be read. In auto/auto_reader.cc.
Result<std::unique_ptr<BatchReader>> OpenAutoReader(const Endpoint& endpoint,
                                                    const ReaderOptions& options);

// What a producer's handshake says about it: a reader of several producers
// asks before it opens one. In auto/auto_reader.cc.
struct ProducerProbe {
  uint64_t producer_id = 0;
  RunInfo run;  // fingerprint 0: the producer has no run
};
Result<ProducerProbe> ProbeProducer(const Endpoint& endpoint, const ReaderOptions& options, Deadline deadline);

// Several producers at once: an endpoint listing several (endpoint.more),
// or a HOST that is a DNS name (it may resolve to several producers, and is
// resolved again every ReaderOptions::resolve_every_ms). In
// multi/multi_reader.cc.
Result<std::unique_ptr<BatchReader>> OpenMultiReader(const Endpoint& endpoint, const ReaderOptions& options);
// An IP address (v4 or v6) or "localhost": one producer, no DNS.
bool IsAddressLiteral(const std::string& host);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_TRANSPORTS_INTERNAL_H_
