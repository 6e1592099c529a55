// Peer: a real producer or consumer process (datafeed_test_peer) for the
// multi-process tests, with its stdout captured line by line.
#ifndef DATAFEED_TESTS_TRANSPORT_PEER_UTIL_H_
#define DATAFEED_TESTS_TRANSPORT_PEER_UTIL_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace datafeed::testing {

// A child process running datafeed_test_peer; its stdout is captured.
class Peer {
 public:
  explicit Peer(std::vector<std::string> args) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      static std::string peer = DATAFEED_TEST_PEER;
      argv.push_back(peer.data());
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(peer.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fdopen(fds[0], "r");
  }
  ~Peer() {
    if (pid_ > 0) Kill();
    if (out_) fclose(out_);
  }
  // For a producer: the "serving URI" line; returns URI.
  std::string Serving() {
    std::string line = ReadLine();
    EXPECT_EQ(line.rfind("serving ", 0), 0u) << line;
    return line.substr(line.find(' ') + 1);
  }
  // Next line of the peer's stdout (whatever its length), or "" at EOF.
  std::string ReadLine() {
    std::string s;
    char buf[256];
    while (fgets(buf, sizeof buf, out_)) {
      s += buf;
      if (s.back() == '\n') {
        s.pop_back();
        break;
      }
    }
    return s;
  }
  std::vector<std::string> ReadAll() {
    std::vector<std::string> lines;
    for (std::string l = ReadLine(); !l.empty(); l = ReadLine()) lines.push_back(l);
    return lines;
  }
  void Signal(int sig) { kill(pid_, sig); }
  void Kill() {
    kill(pid_, SIGKILL);
    Wait();
  }
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

}  // namespace datafeed::testing

#endif  // DATAFEED_TESTS_TRANSPORT_PEER_UTIL_H_
