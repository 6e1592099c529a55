// A producer's counters in Prometheus' text exposition format (version
// 0.0.4), for datafeed-producer --metrics-port. Names follow Prometheus'
// conventions: the datafeed_producer_ prefix, base units (_seconds),
// counters end in _total, one # HELP and one # TYPE line per metric.
#ifndef DATAFEED_PRODUCER_METRICS_H_
#define DATAFEED_PRODUCER_METRICS_H_

#include <string>

#include "datafeed/producer/producer.h"
#include "datafeed/transport/delivery.h"
#include "datafeed/transport/transport.h"

namespace datafeed {

// A pure function of its snapshots: every metric is present (zero where a
// writer has no ring or no delivery contract), so a dashboard's queries do
// not change with the transport.
std::string PrometheusText(const ProducerStats& producer, const DeliveryStats& delivery,
                           const WriterGauges& gauges);

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_METRICS_H_
