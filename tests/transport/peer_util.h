// Peer: a real producer or consumer process (datafeed_test_peer) for the
// multi-process tests, with its stdout captured line by line.
#ifndef DATAFEED_TESTS_TRANSPORT_PEER_UTIL_H_
#define DATAFEED_TESTS_TRANSPORT_PEER_UTIL_H_

#include <gtest/gtest.h>
#include <grp.h>
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
  // Another user for the child: it drops every group and becomes uid:gid
  // before it starts (the parent must be root).
  struct AsUser {
    uid_t uid;
    gid_t gid;
  };

  explicit Peer(std::vector<std::string> args) { Start(std::move(args), nullptr); }
  Peer(std::vector<std::string> args, AsUser user) { Start(std::move(args), &user); }
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
  void Start(std::vector<std::string> args, const AsUser* user) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      if (user != nullptr && (setgroups(0, nullptr) != 0 || setresgid(user->gid, user->gid, user->gid) != 0 ||
                              setresuid(user->uid, user->uid, user->uid) != 0)) {
        _exit(126);
      }
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

  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

}  // namespace datafeed::testing

#endif  // DATAFEED_TESTS_TRANSPORT_PEER_UTIL_H_
