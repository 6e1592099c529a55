// The transports the consumer suites run over; another transport is one
// more Kind and one entry in TransportKinds.
#ifndef DATAFEED_TESTS_CONSUMER_TRANSPORT_KINDS_H_
#define DATAFEED_TESTS_CONSUMER_TRANSPORT_KINDS_H_

#include <gtest/gtest.h>

#include <string>

#include "test_util.h"  // tests/transport: UniqueName, TestLayout, FillBatch, CheckBatch

namespace datafeed::testing {

// WriterUri: what a writer is opened on (a fresh name each call; port 0 lets
// the kernel choose). Readers open the writer's endpoint() as it reports it.
// kViewsPinProducerMemory: whether a batch a reader holds keeps the
// producer's memory (a ring slot) busy, so the writer's Loan blocks.
struct ShmKind {
  static std::string WriterUri(const std::string& prefix) { return "shm://" + UniqueName(prefix); }
  static constexpr bool kViewsPinProducerMemory = true;
};
struct InProcKind {
  static std::string WriterUri(const std::string& prefix) { return "inproc://" + UniqueName(prefix); }
  static constexpr bool kViewsPinProducerMemory = true;
};
// A gRPC stream over loopback: frames are received into reader memory.
struct GrpcKind {
  static std::string WriterUri(const std::string&) { return "grpc://127.0.0.1:0"; }
  static constexpr bool kViewsPinProducerMemory = false;
};

using TransportKinds = ::testing::Types<ShmKind, InProcKind, GrpcKind>;

}  // namespace datafeed::testing

#endif  // DATAFEED_TESTS_CONSUMER_TRANSPORT_KINDS_H_
