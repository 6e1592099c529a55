// A producer restarted on a journal someone else wrote (or a damaged one):
// the input is a list of records (type, then three 64-bit words; 25 bytes
// each) sealed with their checksums after the run's header, so replay gets
// past the checksum and into the bookkeeping; input whose first byte is odd
// is written raw instead (torn and unsealed records). BeginRun replays it
// and either refuses with a Status naming the journal or resumes a run
// whose next batch and remakes lie within the run.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "delivery/ledger_internal.h"
#include "fuzz_util.h"

using datafeed::internal::JournalRecord;
using datafeed::internal::Ledger;

namespace {

uint64_t Word(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  datafeed::RunInfo run;
  run.fingerprint = 0xF00D;
  run.batches_per_epoch = 8;
  run.first_epoch = 0;
  run.num_epochs = 4;
  std::vector<uint8_t> journal;
  const bool raw = data[0] & 1;
  ++data;
  --size;
  if (raw) {
    journal.assign(data, data + size);
  } else {
    auto put = [&](uint8_t type, uint64_t a, uint64_t b, uint64_t c) {
      const auto rec = JournalRecord(type, a, b, c);
      journal.insert(journal.end(), rec.begin(), rec.end());
    };
    put(1, run.fingerprint, run.batches_per_epoch, (uint64_t{run.shard} << 32) | run.num_shards);
    put(1, 1, 0, 0);
    for (size_t off = 0; off + 25 <= size; off += 25) {
      put(data[off], Word(data + off + 1), Word(data + off + 9), Word(data + off + 17));
    }
  }
  const std::string path = datafeed::fuzz::ScratchDir() + "/journal-shard0-of-1.dfj";
  ::unlink(path.c_str());  // a new file: ext4 flushes one truncated and rewritten (auto_da_alloc)
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (!journal.empty() && std::fwrite(journal.data(), 1, journal.size(), f) != journal.size()) std::abort();
  std::fclose(f);

  Ledger::Options opt;
  opt.name = "shm://fuzz";
  opt.state_dir = datafeed::fuzz::ScratchDir();
  opt.consumer_timeout_ms = 1;  // leases of the dead producer's consumers expire at once
  auto ledger = Ledger::Create(opt);
  datafeed::fuzz::Require(ledger.ok(), "Ledger::Create failed");
  auto start = (*ledger)->BeginRun(run);
  datafeed::fuzz::CheckRefusal(start.status(), "BeginRun (journal replay)");
  if (!start.ok()) return 0;
  // A journal may name epochs past this run's end (a run restarted with
  // fewer epochs), but never leave more to make again than replay allows.
  datafeed::fuzz::Require(start->remakes <= (uint64_t{1} << 22), "more than 4M batches to make again");
  // Make again what the journal says was lost, as the producer would.
  for (int i = 0; i < 64; ++i) {
    auto k = (*ledger)->TakeRemake();
    if (!k) break;
    datafeed::fuzz::Require(k->index < run.batches_per_epoch, "a batch to make again outside the epoch");
    (void)(*ledger)->Published(*k, false);
  }
  (void)(*ledger)->stats();
  return 0;
}
