#include "datafeed/producer/producer.h"

#include "datafeed/producer/fingerprint.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace datafeed {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NanosSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

// A batch being filled: loaned frame memory plus the sampler's indices.
struct OpenBatch {
  IndexBatch indices;
  bool remake = false;  // made again (a lease was lost), not fresh
  WritableBatch batch;
  size_t handed_out = 0;          // samples given to workers (dispatch_mu)
  std::atomic<size_t> remaining;  // samples not yet written
  bool done = false;              // all samples written (dispatch_mu)
};

}  // namespace

struct Producer::Impl {
  std::shared_ptr<const Dataset> dataset;
  std::optional<Pipeline> pipeline;  // optional only because Pipeline has no default state
  ProducerOptions options;
  BatchWriter* writer = nullptr;
  SampleShape in_shape;
  ImageShape out_shape;
  std::unique_ptr<Sampler> sampler;

  mutable std::mutex layouts_mu;
  mutable std::map<size_t, std::shared_ptr<const BatchLayout>> layouts;

  // Guards sampler, open, sampler_done and each OpenBatch's handed_out/done.
  std::mutex dispatch_mu;
  std::condition_variable dispatch_cv;
  std::deque<std::shared_ptr<OpenBatch>> open;  // in sampler order
  bool sampler_done = false;
  bool finished = false;  // nothing more to make (every batch acknowledged, with a run)
  bool opening = false;  // a worker is loaning the next batch's memory

  // The delivery contract: the writer has a run.
  bool contract = false;
  RunInfo run;
  RunStart start;

  std::atomic<bool> stop{false};
  std::mutex error_mu;
  Status error;
  bool ran = false;

  Clock::time_point started;
  std::atomic<bool> running{false};
  std::atomic<int64_t> elapsed_ns{0};
  std::atomic<uint64_t> batches{0}, samples{0}, skipped{0}, remade{0};
  std::atomic<int64_t> read_ns{0}, transform_ns{0}, loan_ns{0}, publish_ns{0};

  void Fail(Status st) {
    {
      std::lock_guard<std::mutex> lock(error_mu);
      if (error.ok()) error = std::move(st);
    }
    stop.store(true);
    dispatch_cv.notify_all();
  }

  std::shared_ptr<const BatchLayout> Layout(size_t n) const {
    std::lock_guard<std::mutex> lock(layouts_mu);
    auto& slot = layouts[n];
    if (!slot) {
      const auto b = static_cast<int64_t>(n);
      // A split pipeline sends uint8 CHW images and names the consumer's
      // finish in the header; out_shape.dtype says which.
      const Finish* finish = pipeline->finish();
      std::vector<TensorSpec> tensors = {{"image", out_shape.dtype,
                                          {b, out_shape.channels, out_shape.height, out_shape.width},
                                          finish ? finish->spec() : std::string()},
                                         {"label", DType::kInt64, {b}}};
      if (options.with_index) tensors.push_back({"index", DType::kInt64, {b}});
      slot = std::make_shared<const BatchLayout>(BatchLayout::Make(std::move(tensors)).value());
    }
    return slot;
  }

  // Under dispatch_mu: opens the next batch: one to make again first, else
  // the sampler's next. False when there is none now (finished says whether
  // there will be none at all).
  bool OpenNext(std::unique_lock<std::mutex>& lock) {
    IndexBatch ib;
    bool remake = false;
    if (contract) {
      if (std::optional<BatchKey> key = writer->TakeRemake()) {
        Status st = sampler->BatchAt(key->epoch, key->index, &ib);
        if (!st.ok()) {
          writer->Unmade(*key);
          Fail(st.WithContext("making " + ToString(*key) + " again"));
          return false;
        }
        remake = true;
      }
    }
    if (!remake) {
      if (!sampler_done) {
        Status st = sampler->Next(&ib);
        if (st.IsEndOfStream()) {
          sampler_done = true;
        } else if (!st.ok()) {
          Fail(st);
          return false;
        }
      }
      if (sampler_done) {
        if (!contract) {
          finished = true;
          dispatch_cv.notify_all();
          return false;
        }
        if (!open.empty()) {
          // Batches still being filled may end in a lost lease: wait for them.
          dispatch_cv.wait_for(lock, std::chrono::milliseconds(100));
          return false;
        }
        // Everything fresh is out: wait for a batch to make again, or for the
        // consumers to acknowledge the last ones.
        opening = true;
        lock.unlock();
        const BatchWriter::Work work = writer->WaitForWork(Deadline::AfterMillis(100));
        lock.lock();
        opening = false;
        dispatch_cv.notify_all();
        if (work == BatchWriter::Work::kDone && open.empty()) {
          finished = true;
          dispatch_cv.notify_all();
        }
        return false;
      }
    }
    auto layout = Layout(ib.indices.size());
    const auto t0 = Clock::now();
    opening = true;
    // Other workers keep filling open batches meanwhile: they only need the
    // lock to take a new chunk, and there is none until this batch opens.
    Result<WritableBatch> loan = Status::Internal("unset");
    for (;;) {
      lock.unlock();
      loan = writer->Loan(layout, Deadline::AfterMillis(100));
      lock.lock();
      if (loan.ok() || stop.load() || !loan.status().IsDeadlineExceeded()) break;
    }
    opening = false;
    dispatch_cv.notify_all();
    loan_ns.fetch_add(NanosSince(t0));
    if (!loan.ok()) {
      if (remake) writer->Unmade({ib.epoch, ib.batch_in_epoch});
      if (!stop.load()) Fail(loan.status());
      return false;
    }
    auto ob = std::make_shared<OpenBatch>();
    ob->remaining.store(ib.indices.size());
    ob->remake = remake;
    ob->batch = std::move(loan).value();
    BatchMeta& meta = ob->batch.meta();
    meta.epoch = static_cast<uint32_t>(ib.epoch);
    meta.first_index = ib.first_index;
    meta.producer_id = options.producer_id;
    meta.batch_index = ib.batch_in_epoch;
    meta.fingerprint = run.fingerprint;
    meta.shard = static_cast<uint32_t>(options.sampler.shard_index);
    meta.num_shards = static_cast<uint32_t>(options.sampler.num_shards);
    meta.attempt = remake ? 1 : 0;
    ob->indices = std::move(ib);
    open.push_back(std::move(ob));
    return true;
  }

  // Under dispatch_mu: publishes what may go out now.
  void PublishReady(const std::shared_ptr<OpenBatch>& finished) {
    finished->done = true;
    auto publish = [&](std::shared_ptr<OpenBatch> ob) {
      const uint64_t n = ob->indices.indices.size();
      const bool remake = ob->remake;
      Status st = writer->Publish(std::move(ob->batch));
      if (!st.ok()) {
        Fail(st);
        return;
      }
      batches.fetch_add(1);
      samples.fetch_add(n);
      if (remake) remade.fetch_add(1);
    };
    if (options.ordered) {
      while (!open.empty() && open.front()->done) {
        auto ob = std::move(open.front());
        open.pop_front();
        publish(std::move(ob));
      }
    } else {
      open.erase(std::find(open.begin(), open.end(), finished));
      publish(finished);
    }
    dispatch_cv.notify_all();
  }

  void Worker() {
    std::vector<uint8_t> scratch(in_shape.bytes());
    const size_t sample_bytes = out_shape.nbytes();
    const bool split = pipeline->split();
    const int h = in_shape.height, w = in_shape.width, c = in_shape.channels;
    const uint64_t seed = options.sampler.seed;
    for (;;) {
      std::shared_ptr<OpenBatch> ob;
      size_t begin = 0, end = 0;
      {
        std::unique_lock<std::mutex> lock(dispatch_mu);
        for (;;) {
          if (stop.load() || finished) return;
          if (!open.empty() && open.back()->handed_out < open.back()->indices.indices.size()) {
            ob = open.back();
            break;
          }
          if (opening || open.size() >= static_cast<size_t>(options.max_in_flight)) {
            dispatch_cv.wait(lock);
            continue;
          }
          if (!OpenNext(lock) && (finished || stop.load())) return;
        }
        begin = ob->handed_out;
        end = std::min(begin + static_cast<size_t>(options.chunk), ob->indices.indices.size());
        ob->handed_out = end;
      }
      // float32, or uint8 for a split pipeline.
      uint8_t* images = ob->batch.data<uint8_t>(0);
      int64_t* labels = ob->batch.data<int64_t>(1);
      int64_t* sample_index = options.with_index ? ob->batch.data<int64_t>(2) : nullptr;
      int64_t read = 0, transform = 0;
      for (size_t i = begin; i < end; ++i) {
        const uint64_t index = ob->indices.indices[i];
        uint8_t* out = images + i * sample_bytes;
        if (sample_index != nullptr) sample_index[i] = static_cast<int64_t>(index);
        auto t0 = Clock::now();
        Status st = dataset->Get(index, scratch.data(), &labels[i]);
        auto t1 = Clock::now();
        read += (t1 - t0).count();
        if (!st.ok()) {
          if (options.fail_on_bad_sample) return Fail(st.WithContext("sample " + std::to_string(index)));
          std::memset(out, 0, sample_bytes);
          labels[i] = kSkippedLabel;
          skipped.fetch_add(1);
          continue;
        }
        const SampleRng rng(seed, ob->indices.epoch, index);
        st = split ? pipeline->Run(scratch.data(), h, w, c, out, rng)
                   : pipeline->Run(scratch.data(), h, w, c, reinterpret_cast<float*>(out), rng);
        transform += (Clock::now() - t1).count();
        if (!st.ok()) return Fail(st.WithContext("pipeline on sample " + std::to_string(index)));
        if (stop.load(std::memory_order_relaxed)) return;
      }
      read_ns.fetch_add(read);
      transform_ns.fetch_add(transform);
      const size_t n = end - begin;
      if (ob->remaining.fetch_sub(n) == n) {
        const auto t0 = Clock::now();
        std::lock_guard<std::mutex> lock(dispatch_mu);
        PublishReady(ob);
        publish_ns.fetch_add(NanosSince(t0));
      }
    }
  }
};

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Producer::~Producer() { Stop(); }

Result<RunInfo> Producer::DescribeRun(const Dataset& dataset, const Pipeline& pipeline,
                                      const ProducerOptions& options) {
  SamplerOptions so = options.sampler;
  so.dataset_size = dataset.size();
  so.first_batch = 0;
  DATAFEED_ASSIGN_OR_RETURN(Sampler sampler, Sampler::Make(so));
  Fingerprinter fp;
  fp.Add("datafeed-run-1").Add(dataset.Fingerprint()).Add(static_cast<uint64_t>(dataset.size()));
  fp.Add(pipeline.Describe()).Add(so.seed).Add(static_cast<uint64_t>(so.batch_size));
  fp.Add(uint64_t{so.shuffle}).Add(uint64_t{so.drop_last});
  fp.Add(static_cast<uint64_t>(so.shard_index)).Add(static_cast<uint64_t>(so.num_shards));
  fp.Add(uint64_t{options.with_index});
  RunInfo run;
  run.fingerprint = fp.value();
  run.shard = static_cast<uint32_t>(so.shard_index);
  run.num_shards = static_cast<uint32_t>(so.num_shards);
  run.batches_per_epoch = sampler.batches_per_epoch();
  run.first_epoch = so.first_epoch;
  run.num_epochs = so.num_epochs == SamplerOptions::kEndless ? RunInfo::kEndless : so.num_epochs;
  return run;
}

Result<std::unique_ptr<Producer>> Producer::Make(std::shared_ptr<const Dataset> dataset,
                                                 Pipeline pipeline, ProducerOptions options,
                                                 BatchWriter* writer) {
  if (!dataset) return Status::InvalidArgument("Producer: no dataset");
  if (!writer) return Status::InvalidArgument("Producer: no writer");
  if (options.threads < 0 || options.max_in_flight < 1 || options.chunk < 1) {
    return Status::InvalidArgument("Producer: threads must be >= 0, max_in_flight and chunk >= 1");
  }
  if (options.threads == 0) {
    options.threads = std::max(1u, std::thread::hardware_concurrency());
  }
  auto impl = std::make_unique<Impl>();
  impl->in_shape = dataset->shape();
  DATAFEED_ASSIGN_OR_RETURN(
      impl->out_shape,
      pipeline.OutputShape(impl->in_shape.height, impl->in_shape.width, impl->in_shape.channels));
  options.sampler.dataset_size = dataset->size();
  DATAFEED_ASSIGN_OR_RETURN(impl->run, DescribeRun(*dataset, pipeline, options));
  if (Result<RunStart> start = writer->run_start(); start.ok()) {
    // The delivery contract: the writer's run must be ours, and the sampler
    // goes on where its journal says.
    if (start->run.fingerprint != impl->run.fingerprint || start->run.shard != impl->run.shard ||
        start->run.num_shards != impl->run.num_shards || start->run.batches_per_epoch != impl->run.batches_per_epoch) {
      return Status::InvalidArgument("Producer: the writer " + writer->endpoint() +
                                     " was opened for another run than this producer's (set WriterOptions::run "
                                     "from Producer::DescribeRun with the same dataset, pipeline and options)");
    }
    impl->contract = true;
    impl->start = std::move(start).value();
    if (options.sampler.num_epochs != SamplerOptions::kEndless) {
      const uint64_t end = options.sampler.first_epoch + options.sampler.num_epochs;
      if (impl->start.finished || impl->start.next.epoch >= end) {
        impl->sampler_done = true;
      } else {
        options.sampler.num_epochs = end - impl->start.next.epoch;
      }
    }
    options.sampler.first_epoch = impl->start.next.epoch;
    options.sampler.first_batch = impl->start.next.index;
  }
  DATAFEED_ASSIGN_OR_RETURN(Sampler sampler, Sampler::Make(options.sampler));
  impl->sampler = std::make_unique<Sampler>(std::move(sampler));
  impl->dataset = std::move(dataset);
  impl->pipeline.emplace(std::move(pipeline));
  impl->options = options;
  impl->writer = writer;
  return std::unique_ptr<Producer>(new Producer(std::move(impl)));
}

Status Producer::Run() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.dispatch_mu);
    if (m.ran) return Status::FailedPrecondition("Producer::Run called twice");
    m.ran = true;
  }
  m.started = Clock::now();
  m.running.store(true);
  std::vector<std::thread> workers;
  for (int i = 0; i < m.options.threads; ++i) workers.emplace_back([&m] { m.Worker(); });
  for (auto& t : workers) t.join();
  m.elapsed_ns.store(NanosSince(m.started));
  m.running.store(false);
  {
    // Unpublished batches go back to the transport unsent; those that were
    // being made again stay queued for a later run.
    std::lock_guard<std::mutex> lock(m.dispatch_mu);
    for (const auto& ob : m.open) {
      if (ob->remake) m.writer->Unmade({ob->indices.epoch, ob->indices.batch_in_epoch});
    }
    m.open.clear();
  }
  std::lock_guard<std::mutex> lock(m.error_mu);
  if (!m.error.ok()) return m.error;
  if (m.stop.load()) return Status::Cancelled("producer stopped");
  return Status::OK();
}

void Producer::Stop() {
  impl_->stop.store(true);
  std::lock_guard<std::mutex> lock(impl_->dispatch_mu);
  impl_->dispatch_cv.notify_all();
}

ProducerStats Producer::stats() const {
  const Impl& m = *impl_;
  ProducerStats s;
  s.batches = m.batches.load();
  s.samples = m.samples.load();
  s.skipped_samples = m.skipped.load();
  s.elapsed_s = (m.running.load() ? NanosSince(m.started) : m.elapsed_ns.load()) / 1e9;
  s.read_s = m.read_ns.load() / 1e9;
  s.transform_s = m.transform_ns.load() / 1e9;
  s.loan_blocked_s = m.loan_ns.load() / 1e9;
  s.publish_s = m.publish_ns.load() / 1e9;
  s.remade = m.remade.load();
  return s;
}

const RunStart& Producer::run_start() const { return impl_->start; }

const ImageShape& Producer::sample_shape() const { return impl_->out_shape; }

std::shared_ptr<const BatchLayout> Producer::BatchLayoutFor(size_t batch_size) const {
  return impl_->Layout(batch_size);
}

std::string ProducerStats::ToString() const {
  char buf[400];
  std::snprintf(buf, sizeof buf,
                "%llu batches (%llu made again), %llu samples (%llu skipped) in %.1f s: %.1f batches/s, %.0f "
                "samples/s; thread time: read %.2f s, transform %.2f s, blocked on full "
                "transport %.2f s, publish %.2f s",
                static_cast<unsigned long long>(batches), static_cast<unsigned long long>(remade),
                static_cast<unsigned long long>(samples),
                static_cast<unsigned long long>(skipped_samples), elapsed_s, batches_per_s(),
                samples_per_s(), read_s, transform_s, loan_blocked_s, publish_s);
  return buf;
}

}  // namespace datafeed
