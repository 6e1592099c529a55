// The HTTP endpoint of datafeed-producer --metrics-port: GET /metrics
// answers Prometheus text (datafeed/producer/metrics.h). It only reads
// counters; nothing it receives changes the producer.
#ifndef DATAFEED_PRODUCER_TOOLS_METRICS_SERVER_H_
#define DATAFEED_PRODUCER_TOOLS_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "datafeed/transport/status.h"

namespace datafeed {

class MetricsServer {
 public:
  // Listens on address:port (port 0: one the kernel picks) and serves
  // `render()` on GET /metrics from its own threads, so `render` must be
  // thread-safe. InvalidArgument/Unavailable when it cannot listen, naming
  // the address and the flag to change.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& address, int port,
                                                      std::function<std::string()> render);
  ~MetricsServer();  // stops listening and joins its threads
  int port() const;
  std::string url() const;  // http://ADDRESS:PORT/metrics

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_TOOLS_METRICS_SERVER_H_
