// datafeed-bench shm: the shared-memory ring between two processes.
//
// Throughput: the producer (this process) memcpys a full reference batch
// (8192x1x28x28 float32 + 8192 int64 labels) into each loaned slot — every
// payload byte written — and the consumer (a forked child) checksums every
// byte and compares with the expected sum. Limit: single-thread memcpy of the
// same bytes, measured in this run. Latency: 4 KB frames stamped with
// CLOCK_MONOTONIC just before Publish, measured on arrival; once as a steady
// stream (a frame every 20 us) and once
// paced 2 ms apart (the reader is asleep in the kernel and must be woken).
// Idle: the consumer blocks in Next() with nothing coming; its CPU time over
// wall time.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "datafeed/tools/cli.h"
#include "datafeed/tools/json_line.h"
#include "datafeed/transport/transport.h"

namespace datafeed::bench {
namespace {

enum Phase : uint32_t { kThroughput = 1, kLatencyHot = 2, kLatencyCold = 3, kIdle = 4 };

struct ChildResult {
  double gbps = 0;
  uint64_t bad = 0;
  double hot_p50 = 0, hot_p99 = 0, cold_p50 = 0, cold_p99 = 0;
  double idle_cpu_pct = 0;
  int64_t batches = 0;
  char error[256] = {0};
};

void FillSource(std::vector<uint8_t>& src) {
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= src.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&src[i], &v, 8);
  }
}

// The consumer process. Writes one ChildResult to `fd`.
void RunConsumer(const Endpoint& ep, bool generate, int64_t warmup, int64_t spin_us, bool adaptive,
                 double idle_seconds, size_t image_bytes, size_t label_bytes, int fd) {
  ChildResult res;
  auto finish = [&](const std::string& err) {
    std::snprintf(res.error, sizeof res.error, "%s", err.c_str());
    (void)!write(fd, &res, sizeof res);
    _exit(err.empty() ? 0 : 1);
  };
  // The expected checksums, from the same deterministic source.
  std::vector<uint8_t> src(image_bytes + label_bytes);
  FillSource(src);
  const uint64_t want_image = Checksum(src.data(), image_bytes);
  const uint64_t want_label = Checksum(src.data() + image_bytes, label_bytes);
  src = {};

  ReaderOptions ro;
  ro.connect_timeout_ms = 10'000;
  ro.spin_us = spin_us;
  ro.adaptive_spin = adaptive;
  auto reader = OpenReader(ep, ro);
  if (!reader.ok()) finish(reader.status().ToString());

  int64_t seen = 0, t0 = 0, t1 = 0, bytes = 0;
  std::vector<double> hot, cold;
  for (;;) {
    auto v = (*reader)->Next(Deadline::AfterMillis(30'000));
    const int64_t now = NowNs();
    if (!v.ok()) finish(v.status().ToString());
    const uint32_t phase = v->meta().flags;
    if (phase == kThroughput) {
      const TensorView* img = v->Find("image");
      const TensorView* lab = v->Find("label");
      if (!img || !lab) finish("throughput batch without image/label");
      const uint64_t base = v->meta().first_index;
      const uint64_t wi = generate ? GeneratedSum(img->nbytes, base) : want_image;
      const uint64_t wl = generate ? GeneratedSum(lab->nbytes, ~base) : want_label;
      if (Checksum(img->data, img->nbytes) != wi || Checksum(lab->data, lab->nbytes) != wl) {
        ++res.bad;
      }
      ++seen;
      if (seen == warmup) t0 = NowNs();
      if (seen > warmup) {
        bytes += static_cast<int64_t>(v->frame().size());
        t1 = NowNs();
        ++res.batches;
      }
    } else if (phase == kLatencyHot || phase == kLatencyCold) {
      int64_t stamp;
      std::memcpy(&stamp, v->Find("stamp")->data, sizeof stamp);
      (phase == kLatencyHot ? hot : cold).push_back(static_cast<double>(now - stamp) / 1000.0);
    } else if (phase == kIdle) {
      v = Status::Cancelled("release");
      const int64_t cpu0 = ProcessCpuNs();
      const int64_t w0 = NowNs();
      auto none = (*reader)->Next(Deadline::After(std::chrono::nanoseconds(
          static_cast<int64_t>(idle_seconds * 1e9))));
      const double cpu = static_cast<double>(ProcessCpuNs() - cpu0) / 1e9;
      const double wall = static_cast<double>(NowNs() - w0) / 1e9;
      if (!none.status().IsDeadlineExceeded()) finish("idle phase: " + none.status().ToString());
      res.idle_cpu_pct = 100.0 * cpu / wall;
      break;
    }
  }
  res.gbps = t1 > t0 ? static_cast<double>(bytes) / static_cast<double>(t1 - t0) : 0;
  res.hot_p50 = Percentile(hot, 50);
  res.hot_p99 = Percentile(hot, 99);
  res.cold_p50 = Percentile(cold, 50);
  res.cold_p99 = Percentile(cold, 99);
  finish("");
}

// The hardware's limit for this workload without any transport: a writer
// process computing `slots` rotating frames of `bytes` while a reader process
// checksums other frames of the same shared memory, both at once for
// `seconds`. Returns the slower side's GB/s.
double ConcurrentLimitGbps(size_t bytes, int slots, double seconds) {
  const size_t total = bytes * static_cast<size_t>(slots) * 2;
  void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) return 0;
  auto* base = static_cast<uint8_t*>(mem);
  for (size_t i = 0; i < total; i += 4096) base[i] = 1;
  int fds[2];
  if (pipe(fds) != 0) return 0;
  const int64_t until = NowNs() + static_cast<int64_t>(seconds * 1e9);
  pid_t child = fork();
  if (child == 0) {
    uint64_t sink = 0, n = 0;
    const int64_t t0 = NowNs();
    while (NowNs() < until) {
      sink += Checksum(base + total / 2 + (n % static_cast<uint64_t>(slots)) * bytes, bytes);
      ++n;
    }
    double gbps = static_cast<double>(n * bytes) / static_cast<double>(NowNs() - t0) + (sink == 1 ? 1e-12 : 0);
    (void)!write(fds[1], &gbps, sizeof gbps);
    _exit(0);
  }
  uint64_t n = 0;
  const int64_t t0 = NowNs();
  while (NowNs() < until) {
    Generate(base + (n % static_cast<uint64_t>(slots)) * bytes, bytes, n);
    ++n;
  }
  const double writer = static_cast<double>(n * bytes) / static_cast<double>(NowNs() - t0);
  double reader = 0;
  (void)!read(fds[0], &reader, sizeof reader);
  waitpid(child, nullptr, 0);
  close(fds[0]);
  close(fds[1]);
  munmap(mem, total);
  return std::min(writer, reader);
}

void SpinUntil(int64_t t) {
  while (NowNs() < t) {
  }
}

// One throughput pass on a fresh ring, with the delivery contract (a run:
// leases, acknowledgements, a journal in `state_dir`) or without.
struct Pass {
  double gbps = 0;
  DeliveryStats delivery;
  int64_t batches = 0;
};

Result<Pass> ThroughputPass(const std::shared_ptr<const BatchLayout>& layout,
                            const std::shared_ptr<const BatchLayout>& small, bool contract, int64_t slots,
                            int64_t warmup, int64_t batches, bool generate, const std::string& state_dir,
                            int round) {
  const size_t image_bytes = layout->nbytes(0), label_bytes = layout->nbytes(1);
  const std::string name = "bench-" + std::to_string(getpid()) + (contract ? "-c" : "-p") + std::to_string(round);
  Endpoint ep = ParseEndpoint("shm://" + name).value();
  WriterOptions wo;
  wo.shm.slot_count = static_cast<size_t>(slots);
  wo.shm.slot_bytes = layout->frame_bytes();
  wo.linger_ms = 5000;
  RunInfo run;
  run.fingerprint = 0xBE4C4A11ull + static_cast<uint64_t>(round);
  run.batches_per_epoch = static_cast<uint64_t>(warmup + batches + 1);
  if (contract) {
    wo.run = run;
    wo.state_dir = state_dir + "/" + name;
  }
  DATAFEED_ASSIGN_OR_RETURN(auto writer, OpenWriter(ep, wo));
  int fds[2];
  if (pipe(fds) != 0) return Status::FromErrno(errno, "pipe");
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    writer.release();  // the child must not own (or unlink) the producer's segment
    RunConsumer(ep, generate, warmup, 0, ReaderOptions{}.adaptive_spin, 0.001, image_bytes, label_bytes, fds[1]);
  }
  close(fds[1]);
  auto stamp = [&](BatchMeta& m, int64_t i) {
    if (!contract) return;
    m.fingerprint = run.fingerprint;
    m.epoch = 0;
    m.batch_index = static_cast<uint64_t>(i);
  };
  Status st;
  for (int64_t i = 0; i < warmup + batches && st.ok(); ++i) {
    auto b = writer->Loan(layout, Deadline::AfterMillis(30'000));
    if (!b.ok()) {
      st = b.status();
      break;
    }
    Generate(b->data(0), image_bytes, static_cast<uint64_t>(i * 8192));
    Generate(b->data(1), label_bytes, ~static_cast<uint64_t>(i * 8192));
    b->meta().flags = kThroughput;
    b->meta().first_index = static_cast<uint64_t>(i * 8192);
    stamp(b->meta(), i);
    st = writer->Publish(std::move(*b));
  }
  if (st.ok()) {
    auto b = writer->Loan(small, Deadline::AfterMillis(30'000));
    if (b.ok()) {
      b->meta().flags = kIdle;
      stamp(b->meta(), warmup + batches);
      st = writer->Publish(std::move(*b));
    } else {
      st = b.status();
    }
  }
  ChildResult res;
  const ssize_t got = st.ok() ? read(fds[0], &res, sizeof res) : 0;
  if (!st.ok()) kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  close(fds[0]);
  DATAFEED_RETURN_NOT_OK(st);
  if (got != static_cast<ssize_t>(sizeof res) || res.error[0] || res.bad != 0) {
    return Status::Internal(std::string("consumer failed: ") +
                            (got == static_cast<ssize_t>(sizeof res) ? res.error : "no result"));
  }
  Pass pass;
  pass.gbps = res.gbps;
  pass.batches = res.batches;
  pass.delivery = writer->delivery_stats();
  return pass;
}

struct ShmOptions {
  bool json = false;
  int64_t batches = 300, warmup = 20, batch = 8192, slots = 4, lat_frames = 20000;
  int64_t spin_us = ReaderOptions{}.spin_us;
  bool sleep_at_once = false;  // ReaderOptions::adaptive_spin off
  double idle_seconds = 2.0;
  std::string fill = "generate";
  int64_t contract_rounds = 3;
};

int RunShm(const ShmOptions& o) {
  const bool json = o.json;
  const int64_t batches = o.batches, warmup = o.warmup, batch = o.batch, slots = o.slots;
  const int64_t lat_frames = o.lat_frames, spin_us = o.spin_us, contract_rounds = o.contract_rounds;
  const double idle_seconds = o.idle_seconds;
  const std::string wait_mode = spin_us > 0 ? "spin " + std::to_string(spin_us) + " us"
                                : o.sleep_at_once ? std::string("sleep at once")
                                                  : std::string("adaptive");
  const std::string fill = o.fill;
  const bool generate = fill == "generate";

  auto layout = std::make_shared<const BatchLayout>(
      BatchLayout::Make({{"image", DType::kFloat32, {batch, 1, 28, 28}},
                         {"label", DType::kInt64, {batch}}}).value());
  // A 4 KB frame: header + one 8-byte-aligned payload filling the rest.
  std::shared_ptr<const BatchLayout> small;
  for (int64_t payload = 4096; payload > 0 && !small; payload -= 64) {
    auto l = BatchLayout::Make({{"stamp", DType::kUInt8, {payload}}});
    if (l.ok() && l->frame_bytes() <= 4096) small = std::make_shared<const BatchLayout>(std::move(l).value());
  }
  const size_t image_bytes = layout->nbytes(0), label_bytes = layout->nbytes(1);

  const double memcpy_gbps = MemcpyGbps(image_bytes + label_bytes, 30);
  const double concurrent_gbps =
      ConcurrentLimitGbps(layout->frame_bytes(), static_cast<int>(slots), 1.5);

  const std::string name = "bench-" + std::to_string(getpid());
  Endpoint ep = ParseEndpoint("shm://" + name).value();
  WriterOptions wo;
  wo.shm.slot_count = static_cast<size_t>(slots);
  wo.shm.slot_bytes = layout->frame_bytes();
  wo.linger_ms = 5000;
  auto writer = OpenWriter(ep, wo);
  if (!writer.ok()) {
    std::fprintf(stderr, "datafeed-bench shm: %s\n", writer.status().ToString().c_str());
    return 1;
  }
  int fds[2];
  if (pipe(fds) != 0) return 1;
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    writer->release();  // the child must not own (or unlink) the producer's segment
    RunConsumer(ep, generate, warmup, spin_us, !o.sleep_at_once, idle_seconds, image_bytes, label_bytes, fds[1]);
  }
  close(fds[1]);

  std::vector<uint8_t> src(image_bytes + label_bytes);
  FillSource(src);
  auto fail = [&](const Status& st) {
    std::fprintf(stderr, "datafeed-bench shm: %s\n", st.ToString().c_str());
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return 1;
  };
  const int64_t p0 = NowNs();
  for (int64_t i = 0; i < warmup + batches; ++i) {
    auto b = (*writer)->Loan(layout, Deadline::AfterMillis(30'000));
    if (!b.ok()) return fail(b.status());
    if (generate) {
      Generate(b->data(0), image_bytes, static_cast<uint64_t>(i * batch));
      Generate(b->data(1), label_bytes, ~static_cast<uint64_t>(i * batch));
    } else {
      std::memcpy(b->data(0), src.data(), image_bytes);
      std::memcpy(b->data(1), src.data() + image_bytes, label_bytes);
    }
    b->meta().flags = kThroughput;
    b->meta().first_index = static_cast<uint64_t>(i * batch);
    if (Status st = (*writer)->Publish(std::move(*b)); !st.ok()) return fail(st);
  }
  const int64_t p1 = NowNs();
  auto send_stamped = [&](Phase phase, int64_t count, int64_t gap_ns) -> Status {
    int64_t next = NowNs() + gap_ns;
    for (int64_t i = 0; i < count; ++i) {
      SpinUntil(next);
      next += gap_ns;
      auto b = (*writer)->Loan(small, Deadline::AfterMillis(30'000));
      if (!b.ok()) return b.status();
      b->meta().flags = phase;
      int64_t stamp = NowNs();
      std::memcpy(b->data(0), &stamp, sizeof stamp);
      DATAFEED_RETURN_NOT_OK((*writer)->Publish(std::move(*b)));
    }
    return Status::OK();
  };
  if (Status st = send_stamped(kLatencyHot, lat_frames, 20'000); !st.ok()) return fail(st);
  if (Status st = send_stamped(kLatencyCold, std::max<int64_t>(50, lat_frames / 40), 2'000'000); !st.ok()) {
    return fail(st);
  }
  // Let the reader fall asleep before the idle phase starts.
  if (Status st = send_stamped(kIdle, 1, 1'000'000); !st.ok()) return fail(st);

  ChildResult res;
  const ssize_t got = read(fds[0], &res, sizeof res);
  int status = 0;
  waitpid(child, &status, 0);
  if (got != static_cast<ssize_t>(sizeof res) || res.error[0]) {
    std::fprintf(stderr, "datafeed-bench shm: consumer failed: %s\n",
                 got == static_cast<ssize_t>(sizeof res) ? res.error : "no result");
    return 1;
  }
  if (res.bad != 0) {
    std::fprintf(stderr, "datafeed-bench shm: %llu batches had a wrong checksum\n",
                 static_cast<unsigned long long>(res.bad));
    return 1;
  }
  // The delivery contract's cost: the same throughput pass with leases,
  // acknowledgements and a journal, and without, alternated.
  std::vector<double> plain_gbps, contract_gbps;
  DeliveryStats journal;
  int64_t journal_batches = 0;
  char tmpl[] = "/tmp/datafeed-bench-state-XXXXXX";
  const std::string state_dir = mkdtemp(tmpl) ? tmpl : "/tmp";
  for (int64_t r = 0; r < contract_rounds; ++r) {
    for (bool contract : {false, true}) {
      Result<Pass> p = ThroughputPass(layout, small, contract, slots, warmup, batches / 2, generate, state_dir,
                                      static_cast<int>(r));
      if (!p.ok()) {
        std::fprintf(stderr, "datafeed-bench shm: contract pass: %s\n", p.status().ToString().c_str());
        return 1;
      }
      (contract ? contract_gbps : plain_gbps).push_back(p->gbps);
      if (contract) {
        journal.journal_records += p->delivery.journal_records;
        journal.journal_write_s += p->delivery.journal_write_s;
        journal.delivered += p->delivery.delivered;
        journal_batches += p->batches + warmup;
      }
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(state_dir, ec);
  const double plain_med = Median(plain_gbps), contract_med = Median(contract_gbps);
  const double contract_ratio = plain_med > 0 ? contract_med / plain_med : 0;
  const double journal_us = journal_batches > 0 ? journal.journal_write_s * 1e6 / static_cast<double>(journal_batches) : 0;
  const double journal_records = journal_batches > 0 ? static_cast<double>(journal.journal_records) /
                                                           static_cast<double>(journal_batches)
                                                     : 0;

  const double producer_gbps =
      static_cast<double>((warmup + batches) * static_cast<int64_t>(layout->frame_bytes())) /
      static_cast<double>(p1 - p0);
  const double ratio = res.gbps / memcpy_gbps;
  if (json) {
    tools::JsonObject j;
    j["bench"] = "shm";
    j["frame_bytes"] = layout->frame_bytes();
    j["batches"] = res.batches;
    j["slots"] = slots;
    j["fill"] = fill;
    j["gbps"] = tools::Round(res.gbps, 3);
    j["memcpy_gbps"] = tools::Round(memcpy_gbps, 3);
    j["ratio"] = tools::Round(ratio, 3);
    j["producer_gbps"] = tools::Round(producer_gbps, 3);
    j["concurrent_limit_gbps"] = tools::Round(concurrent_gbps, 3);
    j["concurrent_ratio"] = tools::Round(res.gbps / concurrent_gbps, 3);
    j["lat_p50_us"] = tools::Round(res.hot_p50, 2);
    j["lat_p99_us"] = tools::Round(res.hot_p99, 2);
    j["lat_sleeping_p50_us"] = tools::Round(res.cold_p50, 2);
    j["lat_sleeping_p99_us"] = tools::Round(res.cold_p99, 2);
    j["spin_us"] = spin_us;
    j["reader_wait"] = wait_mode;
    j["idle_reader_cpu_pct"] = tools::Round(res.idle_cpu_pct, 4);
    j["plain_gbps"] = tools::Round(plain_med, 3);
    j["contract_gbps"] = tools::Round(contract_med, 3);
    j["contract_ratio"] = tools::Round(contract_ratio, 3);
    j["journal_us_per_batch"] = tools::Round(journal_us, 2);
    j["journal_records_per_batch"] = tools::Round(journal_records, 2);
    std::printf("%s\n", tools::JsonLine(j).c_str());
  } else {
    std::printf("shm ring, %lld x %.1f MB frames, %lld slots, producer and consumer processes\n",
                static_cast<long long>(res.batches), static_cast<double>(layout->frame_bytes()) / 1e6,
                static_cast<long long>(slots));
    std::printf("  delivered      %7.2f GB/s (producer %s every payload byte in the slot, consumer checksums every byte)\n",
                res.gbps, generate ? "computes" : "memcpys");
    std::printf("  memcpy         %7.2f GB/s (one thread, same bytes, this run)\n", memcpy_gbps);
    std::printf("  ratio          %7.3f\n", ratio);
    std::printf("  concurrent     %7.2f GB/s (no transport: one process writing, one reading the same\n"
                "                              amount at once; the hardware's limit here), ratio %.3f\n",
                concurrent_gbps, res.gbps / concurrent_gbps);
    std::printf("  4 KB handoff   p50 %.2f us, p99 %.2f us (a frame every 20 us; reader waits: %s)\n",
                res.hot_p50, res.hot_p99, wait_mode.c_str());
    std::printf("                 p50 %.2f us, p99 %.2f us (reader asleep, 2 ms apart)\n",
                res.cold_p50, res.cold_p99);
    std::printf("  idle reader    %.4f%% of a core\n", res.idle_cpu_pct);
    std::printf("  contract       %7.2f GB/s with leases, acks and a journal vs %.2f GB/s without (medians of %lld\n"
                "                 alternated passes): ratio %.3f; journal %.2f us and %.1f records (32 B) per batch\n",
                contract_med, plain_med, static_cast<long long>(contract_rounds), contract_ratio, journal_us,
                journal_records);
  }
  return 0;
}

}  // namespace

Subcommand AddShm(CLI::App& bench) {
  auto o = std::make_shared<ShmOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "shm",
      "producer and consumer processes over the shared-memory ring: GB/s vs memcpy, 4 KB handoff latency, "
      "idle reader CPU, the delivery contract's cost");
  cmd->footer("Example:\n  datafeed-bench shm --batch 1024 --slots 8 --json");
  cmd->add_flag("--json", o->json, "print the results as one JSON line");
  cmd->add_option("--batches", o->batches, "counted throughput batches")->check(tools::WholeNumber(1));
  cmd->add_option("--warmup", o->warmup, "batches before the count starts")->check(tools::WholeNumber(1));
  cmd->add_option("--batch", o->batch, "samples per batch (1x28x28 float32 + int64 label each)")
      ->check(tools::WholeNumber(1, 1 << 20));
  cmd->add_option("--slots", o->slots, "ring slots")->check(tools::WholeNumber(1, 1024));
  cmd->add_option("--lat-frames", o->lat_frames, "4 KB frames for the handoff latency")
      ->check(tools::WholeNumber(1));
  cmd->add_option("--spin-us", o->spin_us, "the reader polls this long before it sleeps, every time (0: adaptive)")
      ->check(tools::WholeNumber(0));
  cmd->add_flag("--sleep-at-once", o->sleep_at_once,
                "the reader sleeps on the futex at once (ReaderOptions::adaptive_spin off)");
  cmd->add_option("--idle-seconds", o->idle_seconds, "how long the idle reader is watched")
      ->check(tools::PositiveNumber());
  cmd->add_option("--fill", o->fill, "generate (computed, written once) or copy (memcpy from a source)")
      ->check(tools::OneOf({"generate", "copy"}));
  cmd->add_option("--contract-rounds", o->contract_rounds,
                  "alternated passes with and without the delivery contract")
      ->check(tools::WholeNumber(1));
  return {cmd, [o] { return RunShm(*o); }};
}

}  // namespace datafeed::bench
