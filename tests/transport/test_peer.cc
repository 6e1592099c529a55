// A real producer or consumer process for the multi-process tests.
//
//   datafeed_test_peer produce URI COUNT SLOTS [sleep|gate]   print "serving URI",
//       publish COUNT batches (ids 0..COUNT-1), print "published COUNT", then
//       close and linger (or sleep forever: "sleep"); "gate": wait for
//       SIGUSR1 before publishing
//   datafeed_test_peer consume URI [announce] [gate]     print each batch's id
//       until end of stream; exit 0 at end of stream, 3 on a bad batch, 4 on
//       error; "announce": first print "attached" once the reader is open;
//       "gate": after the first batch, wait for SIGUSR1 before reading on
//   datafeed_test_peer hold URI                          take one batch, print
//       its id, then sleep forever holding it
//
// The delivery contract (run_util.h), options as KEY=VALUE:
//   datafeed_test_peer serve URI [bpe=N epochs=N state=DIR timeout=MS fp=HEX
//       shm=NAME slots=N]   serve a run of bpe batches per epoch (ServeRun):
//       print "serving URI", then "run SUMMARY", and "done" once every batch
//       was acknowledged; then close and linger. A writer that cannot open
//       prints "error CODE: MESSAGE" and exits 4.
//   datafeed_test_peer read URI [stall=N reconnect=1]     a session reader:
//       print "attached", then "EPOCH INDEX" for each batch it hands out,
//       "end" at the end of the stream or "error CODE: MESSAGE" (exit 4);
//       stall=N: after the N-th batch stop calling Next() (holding its
//       leases) and sleep forever
//   datafeed_test_peer race URI gc|nogc                  print "ready", wait for
//       SIGUSR1, then ("gc": first remove this user's stale segments, as
//       datafeed-producer does when it starts) open a producer on URI and
//       print "serving URI" and sleep forever holding it, or print
//       "refused STATUS" and exit 5
// A URI without a scheme is a shared-memory name.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "datafeed/transport/transport.h"
#include "run_util.h"
#include "test_util.h"

using namespace datafeed;

namespace {

// KEY=VALUE arguments from argv[first] on.
std::map<std::string, std::string> Options(int argc, char** argv, int first) {
  std::map<std::string, std::string> out;
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    out[a.substr(0, eq)] = eq == std::string::npos ? "1" : a.substr(eq + 1);
  }
  return out;
}

uint64_t Get(const std::map<std::string, std::string>& o, const std::string& key, uint64_t fallback) {
  auto it = o.find(key);
  return it == o.end() ? fallback : std::strtoull(it->second.c_str(), nullptr, 0);
}

int Fail(const Status& st) {
  std::printf("error %s\n", st.ToString().c_str());
  std::fflush(stdout);
  return 4;
}

int Serve(const Endpoint& ep, const std::map<std::string, std::string>& o) {
  WriterOptions wo;
  wo.shm.slot_count = Get(o, "slots", 4);
  wo.shm.slot_bytes = 1 << 20;
  wo.linger_ms = 5'000;
  wo.run = testing::TestRun(Get(o, "bpe", 10), Get(o, "epochs", 1), Get(o, "fp", testing::kTestFingerprint));
  wo.consumer_timeout_ms = static_cast<int64_t>(Get(o, "timeout", 1000));
  if (o.count("state")) wo.state_dir = o.at("state");
  if (o.count("shm")) wo.shm_name = o.at("shm");
  auto w = OpenWriter(ep, wo);
  if (!w.ok()) return Fail(w.status());
  std::printf("serving %s\n", (*w)->endpoint().c_str());
  std::printf("run %s\n", (*w)->run_start().value().summary.c_str());
  std::fflush(stdout);
  std::atomic<bool> stop{false};
  if (Status st = testing::ServeRun(**w, stop); !st.ok()) return Fail(st);
  std::printf("done\n");
  std::fflush(stdout);
  return (*w)->Close().ok() ? 0 : 4;
}

int Read(const Endpoint& ep, const std::map<std::string, std::string>& o) {
  ReaderOptions ro;
  ro.connect_timeout_ms = 20'000;
  ro.reconnect = Get(o, "reconnect", 0) != 0;
  ro.reconnect_timeout_ms = 20'000;
  const uint64_t stall = Get(o, "stall", 0);
  auto r = OpenReader(ep, ro);
  if (!r.ok()) return Fail(r.status());
  std::printf("attached\n");
  std::fflush(stdout);
  for (uint64_t n = 1;; ++n) {
    auto v = (*r)->Next(Deadline::AfterMillis(20'000));
    if (v.status().IsEndOfStream()) {
      std::printf("end\n");
      std::fflush(stdout);
      return 0;
    }
    if (!v.ok()) return Fail(v.status());
    std::printf("%u %llu\n", v->meta().epoch, static_cast<unsigned long long>(v->meta().batch_index));
    std::fflush(stdout);
    if (n == stall) for (;;) pause();
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s produce|consume|hold|serve|read URI ...\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  std::string uri = argv[2];
  if (uri.find("://") == std::string::npos) uri = "shm://" + uri;
  Endpoint ep = ResolveEndpoint(uri).value();
  if (mode == "serve") return Serve(ep, Options(argc, argv, 3));
  if (mode == "read") return Read(ep, Options(argc, argv, 3));
  if (mode == "race") {
    const bool gc = argc > 3 && std::string(argv[3]) == "gc";
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, nullptr);
    std::printf("ready\n");
    std::fflush(stdout);
    int sig = 0;
    sigwait(&usr1, &sig);
    if (gc) (void)RemoveStaleShmSegments();
    WriterOptions o;
    o.shm.slot_count = 1;
    o.shm.slot_bytes = 4096;
    auto w = OpenWriter(ep, o);
    if (!w.ok()) {
      std::printf("refused %s\n", w.status().ToString().c_str());
      return 5;
    }
    std::printf("serving %s\n", (*w)->endpoint().c_str());
    std::fflush(stdout);
    for (;;) pause();
  }
  if (mode == "produce") {
    const uint64_t count = std::strtoull(argv[3], nullptr, 10);
    WriterOptions o;
    o.shm.slot_count = std::strtoull(argv[4], nullptr, 10);
    o.shm.slot_bytes = 1 << 20;
    o.linger_ms = 20'000;
    const bool sleep_after = argc > 5 && std::string(argv[5]) == "sleep";
    const bool gate = argc > 5 && std::string(argv[5]) == "gate";
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (gate) sigprocmask(SIG_BLOCK, &usr1, nullptr);  // before anyone can send it
    auto w = OpenWriter(ep, o);
    if (!w.ok()) {
      std::fprintf(stderr, "%s\n", w.status().ToString().c_str());
      return 4;
    }
    std::printf("serving %s\n", (*w)->endpoint().c_str());
    std::fflush(stdout);
    if (gate) {
      int sig = 0;
      sigwait(&usr1, &sig);
    }
    auto layout = testing::TestLayout(8, 512);
    for (uint64_t id = 0; id < count; ++id) {
      auto b = (*w)->Loan(layout, Deadline::Infinite());
      if (!b.ok()) return 4;
      testing::FillBatch(*b, id);
      if (!(*w)->Publish(std::move(*b)).ok()) return 4;
    }
    std::printf("published %llu\n", static_cast<unsigned long long>(count));
    std::fflush(stdout);
    if (sleep_after) for (;;) pause();
    return (*w)->Close().ok() ? 0 : 4;
  }
  bool announce = false, gate = false;
  for (int i = 3; i < argc; ++i) {
    announce = announce || std::string(argv[i]) == "announce";
    gate = gate || std::string(argv[i]) == "gate";
  }
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  if (gate) sigprocmask(SIG_BLOCK, &usr1, nullptr);  // before anyone can send it
  ReaderOptions ro;
  ro.connect_timeout_ms = 20'000;
  auto r = OpenReader(ep, ro);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    return 4;
  }
  if (announce) {
    std::printf("attached\n");
    std::fflush(stdout);
  }
  for (bool first = true;; first = false) {
    auto v = (*r)->Next(Deadline::AfterMillis(20'000));
    if (v.status().IsEndOfStream()) return 0;
    if (!v.ok()) {
      std::fprintf(stderr, "%s\n", v.status().ToString().c_str());
      return 4;
    }
    std::string bad = testing::CheckBatch(*v);
    if (!bad.empty()) {
      std::fprintf(stderr, "bad batch: %s\n", bad.c_str());
      return 3;
    }
    std::printf("%llu\n", static_cast<unsigned long long>(v->meta().first_index));
    std::fflush(stdout);
    if (mode == "hold") for (;;) pause();
    if (gate && first) {
      int sig = 0;
      sigwait(&usr1, &sig);
    }
  }
}
