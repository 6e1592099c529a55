// A real producer or consumer process for the multi-process tests.
//
//   datafeed_test_peer produce URI COUNT SLOTS [sleep|gate]   print "serving URI",
//       publish COUNT batches (ids 0..COUNT-1), print "published COUNT", then
//       close and linger (or sleep forever: "sleep"); "gate": wait for
//       SIGUSR1 before publishing
//   datafeed_test_peer consume URI [announce]            print each batch's id
//       until end of stream; exit 0 at end of stream, 3 on a bad batch, 4 on
//       error; "announce": first print "attached" once the reader is open
//   datafeed_test_peer hold URI                          take one batch, print
//       its id, then sleep forever holding it
// A URI without a scheme is a shared-memory name.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "datafeed/transport/transport.h"
#include "test_util.h"

using namespace datafeed;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s produce|consume|hold URI ...\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  std::string uri = argv[2];
  if (uri.find("://") == std::string::npos) uri = "shm://" + uri;
  Endpoint ep = ResolveEndpoint(uri).value();
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
  ReaderOptions ro;
  ro.connect_timeout_ms = 20'000;
  auto r = OpenReader(ep, ro);
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    return 4;
  }
  if (argc > 3 && std::string(argv[3]) == "announce") {
    std::printf("attached\n");
    std::fflush(stdout);
  }
  for (;;) {
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
  }
}
