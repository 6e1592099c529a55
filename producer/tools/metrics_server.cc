#include "metrics_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <thread>
#include <utility>

namespace datafeed {

struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string address;
  int port = 0;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address, int port,
                                                            std::function<std::string()> render) {
  if (port < 0 || port > 65535) {
    return Status::InvalidArgument("--metrics-port " + std::to_string(port) + " is not a port (0..65535)");
  }
  auto impl = std::make_unique<Impl>();
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which lets a
  // second producer bind the same port and take half the scrapes.
  impl->server.set_socket_options([](auto sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Scrapes are rare and cheap: two threads answer them.
  impl->server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  impl->server.Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  impl->server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("datafeed-producer: metrics are at /metrics\n", "text/plain");
  });
  if (port == 0) {
    impl->port = impl->server.bind_to_any_port(address);
    if (impl->port < 0) {
      return Status::Unavailable("cannot listen for metrics on " + address +
                                 " (--metrics-address): not an address of this host");
    }
  } else {
    if (!impl->server.bind_to_port(address, port)) {
      return Status::Unavailable("cannot listen for metrics on " + address + ":" + std::to_string(port) +
                                 ": the port is taken or the address is not this host's (--metrics-port, "
                                 "--metrics-address; 0 picks a free port)");
    }
    impl->port = port;
  }
  impl->address = address;
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->server.listen_after_bind(); });
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

int MetricsServer::port() const { return impl_->port; }

std::string MetricsServer::url() const {
  const bool v6 = impl_->address.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + impl_->address + "]" : impl_->address) + ":" + std::to_string(impl_->port) +
         "/metrics";
}

}  // namespace datafeed
