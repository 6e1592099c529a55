// What every fuzz target checks besides "no crash, leak or UB" (ASan and
// UBSan abort on those): a refusal is a Status with a message a person can
// act on. A target that sees an empty error message aborts, so libFuzzer
// reports it like a crash.
#ifndef DATAFEED_TESTS_FUZZ_FUZZ_UTIL_H_
#define DATAFEED_TESTS_FUZZ_FUZZ_UTIL_H_

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "datafeed/transport/status.h"

namespace datafeed::fuzz {

inline void CheckRefusal(const Status& st, const char* what) {
  if (!st.ok() && st.message().empty()) {
    std::fprintf(stderr, "%s: an error status without a message (code %d)\n", what, static_cast<int>(st.code()));
    std::abort();
  }
}

// Fails loudly (libFuzzer reports a crash) when `cond` is false.
inline void Require(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
  }
}

// A private folder for targets that must go through files, made once per
// process and removed at exit, under $DATAFEED_FUZZ_SCRATCH when set
// (scripts/fuzz.sh: a folder it removes, so a crash leaves nothing behind),
// else in /dev/shm when there is one: on a disk,
// the fsync()s of the code under test (the journal) and ext4's flush of a
// rewritten file make every input tens of times slower. Files written
// into it should be unlinked first, not truncated (auto_da_alloc).
inline const std::string& ScratchDir() {
  static const std::string* dir = [] {
    const char* parent = std::getenv("DATAFEED_FUZZ_SCRATCH");
    if (parent == nullptr || *parent == 0) parent = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = parent + std::string("/datafeed-fuzz-XXXXXX");
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::atexit([] { std::system(("rm -rf '" + ScratchDir() + "'").c_str()); });
    return new std::string(tmpl);  // never freed: the atexit handler uses it
  }();
  return *dir;
}

}  // namespace datafeed::fuzz

#endif  // DATAFEED_TESTS_FUZZ_FUZZ_UTIL_H_
