// datafeed-gc: removes the shared-memory segments (/dev/shm/datafeed.*) of
// this user's producers that died without removing them (killed with -9,
// say). Segments of live producers are never touched; consumers still
// attached to a removed one keep reading it. datafeed-producer does the
// same when it starts.
#include <cstdio>

#include "datafeed/tools/cli.h"
#include "datafeed/transport/transport.h"

using namespace datafeed;

int main(int argc, char** argv) {
  bool dry_run = false;
  CLI::App app{"Removes this user's shared-memory segments (/dev/shm/datafeed.*) whose producer is dead\n"
               "and says which; segments of live producers are left alone.",
               "datafeed-gc"};
  tools::Configure(app, {"datafeed-gc", "datafeed-gc --dry-run"});
  app.add_flag("--dry-run", dry_run, "only list what would be removed");
  if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;
  Result<std::vector<std::string>> names = dry_run ? ListStaleShmSegments() : RemoveStaleShmSegments();
  if (!names.ok()) {
    std::fprintf(stderr, "datafeed-gc: %s\n", names.status().ToString().c_str());
    return 1;
  }
  for (const std::string& n : *names) std::printf("%s /dev/shm/%s\n", dry_run ? "stale" : "removed", n.c_str());
  std::fprintf(stderr, "datafeed-gc: %zu stale segment%s %s\n", names->size(), names->size() == 1 ? "" : "s",
               dry_run ? "found" : "removed");
  return 0;
}
