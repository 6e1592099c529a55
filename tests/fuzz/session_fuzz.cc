// A session request as the producer gets it from the shared-memory mailbox
// or a gRPC stream's hello: arbitrary bytes parsed as a SessionHello
// (from a private copy, as shm_transport.cc does), turned into a Hello
// (FromProto) and opened on a ledger with a small run. The ledger refuses
// with a Status naming the problem, or opens a session whose position is
// within what the run could have delivered; then the session is driven a
// little (a delivery, progress, close) to reach the bookkeeping behind it.
#include <cstdint>
#include <vector>

#include "datafeed/proto/datafeed.pb.h"
#include "delivery/ledger_internal.h"
#include "delivery/wire_messages_internal.h"
#include "fuzz_util.h"

using datafeed::internal::Ledger;
using datafeed::internal::LedgerClock;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> copy(data, data + size);
  ::datafeed::v1::SessionHello msg;
  if (!msg.ParseFromArray(copy.data(), static_cast<int>(copy.size()))) return 0;
  bool relay = false;
  const datafeed::internal::Hello hello = datafeed::internal::FromProto(msg, &relay);
  if (relay) return 0;

  Ledger::Options opt;
  opt.name = "shm://fuzz";
  opt.consumer_timeout_ms = 1000;
  auto ledger = Ledger::Create(opt);
  datafeed::fuzz::Require(ledger.ok(), "Ledger::Create failed");
  datafeed::RunInfo run;
  run.fingerprint = 0x5EED;
  run.batches_per_epoch = 8;
  run.num_epochs = 3;
  auto start = (*ledger)->BeginRun(run);
  datafeed::fuzz::Require(start.ok(), "BeginRun failed");
  // A few batches published and delivered to another consumer first, so a
  // resume or restore has something to contradict.
  datafeed::internal::Hello first;
  first.consumer_id = 7;
  auto w0 = (*ledger)->Open(first, "fuzz", LedgerClock::now());
  datafeed::fuzz::Require(w0.ok(), "a plain new session refused");
  for (uint64_t i = 0; i < 4; ++i) {
    datafeed::fuzz::Require((*ledger)->Published({0, i}, true).ok(), "Published refused");
    datafeed::fuzz::Require((*ledger)->Delivered(w0->session, {0, i}).ok(), "Delivered refused");
  }
  (*ledger)->Progress(w0->session, 2, LedgerClock::now());

  auto w = (*ledger)->Open(hello, "fuzz", LedgerClock::now());
  datafeed::fuzz::CheckRefusal(w.status(), "Ledger::Open");
  if (w.ok()) {
    (void)(*ledger)->Position(w->session);
    (*ledger)->Progress(w->session, hello.acked, LedgerClock::now());
    if (auto k = (*ledger)->TakeRemake()) (void)(*ledger)->Delivered(w->session, *k);
    (void)(*ledger)->Tick(LedgerClock::now() + std::chrono::seconds(5));
    (*ledger)->Close(w->session, datafeed::internal::CloseKind::kLostConnection, LedgerClock::now());
  }
  (void)(*ledger)->stats();
  return 0;
}
