// TcpProxy: a TCP relay on 127.0.0.1 in front of a local port, that can cut
// every connection through it at once (a network failure between a gRPC
// consumer and its producer). Loopback only.
#ifndef DATAFEED_TESTS_TRANSPORT_PROXY_UTIL_H_
#define DATAFEED_TESTS_TRANSPORT_PROXY_UTIL_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace datafeed::testing {

class TcpProxy {
 public:
  explicit TcpProxy(uint16_t target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback(0);
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      return;
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~TcpProxy() {
    stop_.store(true);
    if (acceptor_.joinable()) acceptor_.join();
    Cut();
    std::vector<std::thread> pumps;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pumps.swap(pumps_);
    }
    for (auto& t : pumps) t.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  // 0 when the proxy could not listen.
  uint16_t port() const { return port_; }
  // Connections accepted so far (a consumer that reconnected made several).
  int accepted() const { return accepted_.load(); }

  // Shuts down both sockets of every live connection: each side sees its
  // peer go away. New connections are still accepted.
  void Cut() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : live_) {
      ::shutdown(c.first, SHUT_RDWR);
      ::shutdown(c.second, SHUT_RDWR);
    }
    live_.clear();
  }

 private:
  static sockaddr_in Loopback(uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  }

  void AcceptLoop() {
    while (!stop_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback(target_port_);
      if (upstream < 0 || ::connect(upstream, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(client);
        if (upstream >= 0) ::close(upstream);
        continue;
      }
      accepted_.fetch_add(1);
      std::lock_guard<std::mutex> lock(mu_);
      live_.push_back({client, upstream});
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  // Copies bytes both ways until either side ends (or a Cut); then closes both.
  void Pump(int a, int b) {
    char buf[1 << 16];
    for (bool open = true; open && !stop_.load();) {
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 100) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if (p[i].revents == 0) continue;
        const int from = i == 0 ? a : b, to = i == 0 ? b : a;
        const ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t done = 0; done < n;) {
          const ssize_t w = ::send(to, buf + done, static_cast<size_t>(n - done), MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          done += w;
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = live_.begin(); it != live_.end(); ++it) {
        if (it->first == a) {
          live_.erase(it);
          break;
        }
      }
    }
    ::close(a);
    ::close(b);
  }

  const uint16_t target_port_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::pair<int, int>> live_;
  std::vector<std::thread> pumps_;
  std::thread acceptor_;
};

}  // namespace datafeed::testing

#endif  // DATAFEED_TESTS_TRANSPORT_PROXY_UTIL_H_
