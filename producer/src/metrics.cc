#include "datafeed/producer/metrics.h"

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <utility>

namespace datafeed {
namespace {

class Text {
 public:
  // One metric: HELP, TYPE, then one sample per (labels, value).
  void Metric(const char* name, const char* type, const char* help,
              std::initializer_list<std::pair<const char*, double>> samples) {
    out_ += std::string("# HELP ") + name + " " + help + "\n";
    out_ += std::string("# TYPE ") + name + " " + type + "\n";
    for (const auto& [labels, value] : samples) {
      char v[64];
      std::snprintf(v, sizeof v, "%.17g", value);
      out_ += name;
      if (labels != nullptr && *labels != '\0') out_ += std::string("{") + labels + "}";
      out_ += std::string(" ") + v + "\n";
    }
  }
  void One(const char* name, const char* type, const char* help, double value) {
    Metric(name, type, help, {{nullptr, value}});
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

double D(uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::string PrometheusText(const ProducerStats& p, const DeliveryStats& d, const WriterGauges& g) {
  Text t;
  t.One("datafeed_producer_samples_total", "counter", "Samples in published batches, bad ones included.",
        D(p.samples));
  t.One("datafeed_producer_batches_total", "counter", "Batches published (made again ones included).", D(p.batches));
  t.One("datafeed_producer_batches_remade_total", "counter",
        "Batches made again because a consumer lost its lease on them.", D(p.remade));
  t.Metric("datafeed_producer_stage_seconds_total", "counter",
           "Worker-thread seconds spent per pipeline stage (summed over threads).",
           {{"stage=\"read\"", p.read_s},
            {"stage=\"decode\"", p.decode_s},
            {"stage=\"transform\"", p.transform_s},
            {"stage=\"publish\"", p.publish_s}});
  t.One("datafeed_producer_blocked_seconds_total", "counter",
        "Worker-thread seconds spent waiting for a free transport slot: consumers are slower than the producer.",
        p.loan_blocked_s);
  t.Metric("datafeed_producer_bad_samples_total", "counter",
           "Samples that could not be read, decoded or transformed, by what failed.",
           {{"reason=\"read\"", D(p.bad_read)},
            {"reason=\"decode\"", D(p.bad_decode)},
            {"reason=\"size\"", D(p.bad_size)},
            {"reason=\"transform\"", D(p.bad_transform)}});
  t.One("datafeed_producer_run_seconds", "gauge", "Seconds since the producer's run started.", p.elapsed_s);
  t.One("datafeed_producer_epochs", "gauge", "Epochs in the run (0: endless).", D(p.epochs));
  t.One("datafeed_producer_run_batches_done", "gauge",
        "Batches of the run made so far, including before a restart from the journal.", D(p.run_batches_done));
  t.One("datafeed_producer_ring_slots", "gauge", "Shared-memory ring slots (0: no ring).", D(g.slots));
  t.One("datafeed_producer_ring_slots_in_use", "gauge",
        "Ring slots loaned, waiting for a consumer or being read.", D(g.slots_in_use));
  t.Metric("datafeed_producer_consumers", "gauge", "Consumers connected now, by transport.",
           {{"transport=\"shm\"", D(g.shm_consumers)}, {"transport=\"grpc\"", D(g.grpc_consumers)}});
  t.One("datafeed_producer_batches_delivered_total", "counter",
        "Deliveries recorded by the delivery ledger (a batch delivered again counts again).", D(d.delivered));
  t.One("datafeed_producer_batches_redelivered_total", "counter",
        "Batches queued to be made and delivered again (a lease lost, a checkpoint restored).", D(d.remade));
  t.One("datafeed_producer_leases_lost_total", "counter",
        "Consumers that died, stalled or lost their connection while holding leased batches.", D(d.leases_lost));
  t.One("datafeed_producer_checkpoint_restores_total", "counter", "Consumer checkpoints restored.", D(d.restores));
  t.One("datafeed_producer_journal_bytes", "gauge", "Size of the delivery journal (--state-dir).",
        D(d.journal_bytes));
  return t.Take();
}

}  // namespace datafeed
