// datafeed-consume: reads batches from an endpoint, checks them and prints
// throughput. The demo's consumer, and a quick way to see what a producer serves.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "datafeed/consumer/consumer.h"
#include "datafeed/tools/cli.h"
#include "datafeed/tools/json_line.h"

using namespace datafeed;
using Clock = std::chrono::steady_clock;

namespace {

// Reads every byte (as the trainer's first layer would) and returns a sum
// that the compiler cannot drop.
uint64_t TouchAll(const uint8_t* p, size_t n) {
  uint64_t a = 0, b = 0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    uint64_t w[2];
    std::memcpy(w, p + i, 16);
    a += w[0];
    b += w[1];
  }
  for (; i < n; ++i) a += p[i];
  return a ^ b;
}

// Writes `text` to `path` atomically (a temporary file renamed into place),
// so a process killed mid-write leaves the previous checkpoint whole.
Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return Status::IOError("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::FromErrno(errno, "cannot rename " + tmp);
  return Status::OK();
}

// The checkpoint file of --checkpoint: the consumer's state and how long
// the --record file was when it was taken.
struct Checkpoint {
  std::string state_json;
  uint64_t record_bytes = 0;
  uint64_t batches = 0;
};

Result<Checkpoint> ReadCheckpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("state") || !j["state"].is_object()) {
    return Status::DataLoss(path + " is not a datafeed-consume checkpoint");
  }
  Checkpoint c;
  c.state_json = j["state"].dump();
  c.record_bytes = j.value("record_bytes", uint64_t{0});
  c.batches = j.value("batches", uint64_t{0});
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  tools::EndpointFlags endpoint;
  tools::GrpcClientFlags grpc;
  int64_t max_batches = 0, connect_ms = 10'000, timeout_ms = 30'000, prefetch = 1;
  double report_s = 1.0;
  bool json = false;
  bool keep_uint8 = false;
  std::string checkpoint_path, record_path;
  int64_t checkpoint_every = 0, step_ms = 0;
  CLI::App app{"Reads batches from a producer until the stream ends, checks each one\n"
               "(frame verified; float tensors finite) and prints throughput.",
               "datafeed-consume"};
  tools::Configure(app, {
      "datafeed-consume --endpoint shm://feed0",
      "DATAFEED_ENDPOINT=auto://prep-host:5000 datafeed-consume --json",
      "datafeed-consume --endpoint grpc://prep-host:5000 --tls-ca ca.pem --reconnect",
      "datafeed-consume --endpoint shm://feed0 --checkpoint ck.json --checkpoint-every 10 --record seen.txt",
  });
  endpoint.Add(app);
  app.add_option("--batches", max_batches, "stop after this many batches (0: until the stream ends)")
      ->check(tools::WholeNumber(0));
  app.add_option("--connect-timeout-ms", connect_ms, "wait this long for the producer to appear")
      ->check(tools::WholeNumber(0));
  app.add_option("--timeout-ms", timeout_ms, "give up when no batch arrives for this long")
      ->check(tools::WholeNumber(0));
  app.add_option("--prefetch", prefetch, "batches read ahead on a background thread (0: none)")
      ->check(tools::WholeNumber(0, 1024));
  app.add_option("--step-ms", step_ms, "sleep this long per batch, as a trainer's step would")
      ->check(tools::WholeNumber(0));
  app.add_flag("--keep-uint8", keep_uint8,
               "split pipelines: do not run the consumer's finish (uint8 -> float32) on each batch");
  const char* kCheckpoints = "Checkpoints";
  app.add_option("--checkpoint", checkpoint_path,
                 "a trainer's checkpoint file: restored at start when it exists, written every "
                 "--checkpoint-every batches and at the end (the delivery contract: a restart gets exactly the "
                 "batches after it)")
      ->group(kCheckpoints);
  app.add_option("--checkpoint-every", checkpoint_every, "batches between checkpoints (0: only at the end)")
      ->check(tools::WholeNumber(0))
      ->group(kCheckpoints);
  app.add_option("--record", record_path,
                 "append one line per batch: 'epoch batch_index index...' (the batch's sample indices, from the "
                 "producer's --with-index tensor); cut back to the checkpoint's length when restoring")
      ->group(kCheckpoints);
  const char* kOutput = "Output";
  app.add_option("--report-s", report_s, "seconds between progress lines (0: none)")
      ->check(tools::Number(0))
      ->group(kOutput);
  app.add_flag("--json", json, "print the summary as one JSON line")->group(kOutput);
  grpc.Add(app);
  if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;

  ConsumerOptions co;
  co.reader.connect_timeout_ms = connect_ms;
  co.timeout_ms = timeout_ms;
  co.prefetch = static_cast<int>(prefetch);
  grpc.ApplyTo(&co.reader);
  uint64_t restored_batches = 0;
  if (!checkpoint_path.empty()) {
    Result<Checkpoint> ck = ReadCheckpoint(checkpoint_path);
    if (ck.ok()) {
      Result<ConsumerState> state = ConsumerState::FromJson(ck->state_json);
      if (!state.ok()) {
        std::fprintf(stderr, "datafeed-consume: %s: %s\n", checkpoint_path.c_str(), state.status().ToString().c_str());
        return 1;
      }
      co.reader.session.restore = state->streams;
      restored_batches = ck->batches;
      if (!record_path.empty() && ::truncate(record_path.c_str(), static_cast<off_t>(ck->record_bytes)) != 0 &&
          errno != ENOENT) {
        std::perror(("datafeed-consume: truncating " + record_path).c_str());
        return 1;
      }
    } else if (ck.status().code() != StatusCode::kNotFound) {
      std::fprintf(stderr, "datafeed-consume: %s\n", ck.status().ToString().c_str());
      return 1;
    }
  }
  std::FILE* record = nullptr;
  if (!record_path.empty()) {
    record = std::fopen(record_path.c_str(), "ab");
    if (record == nullptr) {
      std::perror(("datafeed-consume: " + record_path).c_str());
      return 1;
    }
  }
  Result<Endpoint> ep = endpoint.Resolve();
  auto consumer = ep.ok() ? Consumer::Open(*ep, co) : Result<std::unique_ptr<Consumer>>(ep.status());
  if (!consumer.ok()) {
    std::fprintf(stderr, "datafeed-consume: %s\n", consumer.status().ToString().c_str());
    return 1;
  }
  uint64_t batches = 0, samples = 0, bytes = 0, sink = 0, nonfinite = 0, finished = 0;
  std::vector<float> finish_buf;  // a split pipeline's finished tensor, reused
  Clock::time_point first{}, last{}, next_report{};
  ConsumerStats reported;  // at the last live line
  Status end;
  auto save_checkpoint = [&]() -> Status {
    if (checkpoint_path.empty()) return Status::OK();
    uint64_t record_bytes = 0;
    if (record != nullptr) {
      if (std::fflush(record) != 0) return Status::FromErrno(errno, "writing " + record_path);
      record_bytes = static_cast<uint64_t>(std::ftell(record));
    }
    nlohmann::json j = {{"state", nlohmann::json::parse((*consumer)->state().ToJson())},
                        {"record_bytes", record_bytes},
                        {"batches", restored_batches + batches}};
    return WriteFileAtomically(checkpoint_path, j.dump());
  };
  if (!checkpoint_path.empty() && co.reader.session.restore.empty()) {
    // A fresh trainer checkpoints its start: killed before its first
    // periodic checkpoint, it restarts from here, and what it was given
    // meanwhile comes again instead of being lost with it.
    if (Status st = save_checkpoint(); !st.ok()) {
      std::fprintf(stderr, "datafeed-consume: checkpoint: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  for (;;) {
    if (max_batches > 0 && batches >= static_cast<uint64_t>(max_batches)) break;
    auto v = (*consumer)->Next();
    if (!v.ok()) {
      end = v.status();
      break;
    }
    if (record != nullptr) {
      // One line per batch, written before the batch counts as consumed.
      const BatchMeta& m = v->meta();
      std::string line = std::to_string(m.epoch) + " " + std::to_string(m.batch_index);
      if (const TensorView* index = v->Find("index"); index != nullptr && index->as<int64_t>() != nullptr) {
        const int64_t* idx = index->as<int64_t>();
        for (int64_t i = 0; i < index->numel(); ++i) line += " " + std::to_string(idx[i]);
      }
      line += "\n";
      std::fwrite(line.data(), 1, line.size(), record);
    }
    if (batches == 0) reported = (*consumer)->stats();
    if (step_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    const auto now = Clock::now();
    if (batches == 0) {
      first = now;
      next_report = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(report_s));
    }
    for (const TensorView& t : v->frame().tensors()) {
      sink += TouchAll(t.data, t.nbytes);
      const float* f = t.as<float>();
      if (!t.finish.empty() && !keep_uint8) {
        // What a trainer of a split pipeline does: uint8 -> float32.
        finish_buf.resize(static_cast<size_t>(t.numel()));
        if (Status st = FinishTensor(t, finish_buf.data(), finish_buf.size()); !st.ok()) {
          std::fprintf(stderr, "datafeed-consume: %s\n", st.ToString().c_str());
          return 1;
        }
        f = finish_buf.data();
        ++finished;
      }
      if (f != nullptr && t.numel() > 0) {
        // Spot-check values: a sample of every 997th float.
        for (int64_t i = 0; i < t.numel(); i += 997) nonfinite += !std::isfinite(f[i]);
      }
    }
    ++batches;
    bytes += v->frame().size();
    if (v->frame().num_tensors() > 0 && !v->frame().tensor(0).shape.empty()) {
      samples += static_cast<uint64_t>(v->frame().tensor(0).shape[0]);
    }
    last = Clock::now();
    if (checkpoint_every > 0 && batches % static_cast<uint64_t>(checkpoint_every) == 0) {
      if (Status st = save_checkpoint(); !st.ok()) {
        std::fprintf(stderr, "datafeed-consume: checkpoint: %s\n", st.ToString().c_str());
        return 1;
      }
    }
    if (report_s > 0 && last >= next_report && !json) {
      const double s = std::chrono::duration<double>(last - first).count();
      // The share of this interval spent waiting for batches, and what
      // would help when that is most of it.
      const ConsumerStats now_stats = (*consumer)->stats();
      const double dt = now_stats.elapsed_s - reported.elapsed_s;
      const double waited = dt > 0 ? (now_stats.wait_s - reported.wait_s) / dt : 0.0;
      reported = now_stats;
      const std::string advice = InputBoundAdvice(waited);
      std::fprintf(stderr,
                   "datafeed-consume: %llu batches, %.1f batches/s, %.0f samples/s, %.2f GB/s, waiting %.0f%%%s%s\n",
                   static_cast<unsigned long long>(batches), s > 0 ? (batches - 1) / s : 0.0,
                   s > 0 ? samples / s : 0.0, s > 0 ? bytes / s / 1e9 : 0.0, 100.0 * waited,
                   advice.empty() ? "" : "; ", advice.c_str());
      next_report += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(report_s));
    }
  }
  if (end.IsEndOfStream() || end.ok()) {
    // Everything handed out was used: the last checkpoint covers it all.
    if (Status st = save_checkpoint(); !st.ok()) {
      std::fprintf(stderr, "datafeed-consume: checkpoint: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  if (record != nullptr) std::fclose(record);
  if (!end.ok() && !end.IsEndOfStream()) {
    std::fprintf(stderr, "datafeed-consume: after %llu batches: %s\n",
                 static_cast<unsigned long long>(batches), end.ToString().c_str());
    return 1;
  }
  if (nonfinite > 0) {
    std::fprintf(stderr, "datafeed-consume: %llu non-finite floats seen\n",
                 static_cast<unsigned long long>(nonfinite));
    return 1;
  }
  // Rates count the intervals between the first and the last batch.
  const double s = std::chrono::duration<double>(last - first).count();
  const double per = batches > 1 ? static_cast<double>(batches - 1) / static_cast<double>(batches) : 0.0;
  const double bps = s > 0 ? (batches - 1) / s : 0, sps = s > 0 ? samples * per / s : 0,
               gbps = s > 0 ? bytes * per / s / 1e9 : 0;
  // The share of the consumer's time spent waiting in Next() (the rest is
  // this tool reading the bytes).
  const double wait_frac = (*consumer)->stats().wait_fraction();
  if (json) {
    tools::JsonObject j;
    j["endpoint"] = (*consumer)->endpoint();
    j["transport"] = SchemeName((*consumer)->transport());
    j["batches"] = batches;
    j["samples"] = samples;
    j["seconds"] = tools::Round(s, 3);
    j["batches_per_s"] = tools::Round(bps, 2);
    j["samples_per_s"] = std::llround(sps);
    j["gbps"] = tools::Round(gbps, 3);
    j["wait_frac"] = tools::Round(wait_frac, 4);
    j["bytes_per_batch"] = batches > 0 ? bytes / batches : 0;
    j["finished_tensors"] = finished;
    j["checksum"] = sink;
    const std::vector<ProducerLink> links = (*consumer)->producers();
    if (!links.empty()) {
      tools::JsonObject producers = tools::JsonObject::array();
      for (const ProducerLink& l : links) {
        producers.push_back({{"endpoint", l.endpoint}, {"transport", SchemeName(l.transport)},
                             {"batches", l.batches}, {"state", l.state}});
      }
      j["producers"] = producers;
    }
    std::printf("%s\n", tools::JsonLine(j).c_str());
  } else {
    std::printf("consumed %llu batches (%llu samples, %.1f MB) from %s (%s) in %.2f s\n",
                static_cast<unsigned long long>(batches), static_cast<unsigned long long>(samples),
                bytes / 1e6, (*consumer)->endpoint().c_str(), SchemeName((*consumer)->transport()), s);
    std::printf("  %.2f batches/s   %.0f samples/s   %.3f GB/s   waiting %.1f%%\n", bps, sps, gbps,
                100.0 * wait_frac);
    std::printf("  %.0f bytes per batch%s\n",
                batches > 0 ? static_cast<double>(bytes) / static_cast<double>(batches) : 0.0,
                finished > 0 ? "; split pipeline: finished to float32 here" : "");
    for (const ProducerLink& l : (*consumer)->producers()) {
      std::printf("  producer %s (%s): %llu batches, %s\n", l.endpoint.c_str(), SchemeName(l.transport),
                  static_cast<unsigned long long>(l.batches), l.state.c_str());
    }
  }
  return 0;
}
