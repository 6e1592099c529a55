#include "datafeed/producer/producer.h"

#include "datafeed/producer/fingerprint.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "datafeed/transport/log.h"
#include "reduced_decode_internal.h"

namespace datafeed {
namespace {

using Clock = std::chrono::steady_clock;

// What made a sample bad (ProducerStats counts each).
enum class BadReason { kRead, kDecode, kSize, kTransform };

const char* BadReasonName(BadReason r) {
  switch (r) {
    case BadReason::kRead: return "read";
    case BadReason::kDecode: return "decode";
    case BadReason::kSize: return "size";
    default: return "transform";
  }
}

// A bad sample's slot when nothing takes its place (kZero, or kFill when
// every spare was bad too): a zero image labelled kSkippedLabel.
void ZeroBadSlot(uint8_t* slot, size_t slot_bytes, int64_t* label) {
  std::memset(slot, 0, slot_bytes);
  *label = kSkippedLabel;
}

// kFill: how many spares a bad sample's slot tries before it is zeroed.
constexpr int kSpareTries = 8;

// The dataset index of spare number `attempt` for bad sample `index` of
// `epoch`: a function of those alone, so a batch made again (the delivery
// contract) holds the same spares, bit-identical. Never `index` itself.
uint64_t SpareIndex(uint64_t seed, uint64_t epoch, uint64_t index, int attempt, uint64_t size) {
  uint64_t x = seed ^ (epoch * 0x9E3779B97F4A7C15ULL) ^ (index * 0xBF58476D1CE4E5B9ULL) ^
               (static_cast<uint64_t>(attempt + 1) * 0x94D049BB133111EBULL);
  x ^= x >> 30;  // splitmix64's finalizer
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  if (size < 2) return index;
  const uint64_t spare = x % (size - 1);
  return spare >= index ? spare + 1 : spare;
}

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

const char* BadSamplesName(BadSamples b) {
  switch (b) {
    case BadSamples::kFill: return "fill";
    case BadSamples::kZero: return "zero";
    default: return "fail";
  }
}

Result<BadSamples> ParseBadSamples(const std::string& name) {
  if (name == "fill") return BadSamples::kFill;
  if (name == "zero") return BadSamples::kZero;
  if (name == "fail" || name == "strict") return BadSamples::kFail;
  return Status::InvalidArgument("bad-samples policy '" + name +
                                 "': use fill (leave the sample out, fill the batch), zero (a "
                                 "zero image labelled -100) or fail (stop the run)");
}

Result<ImageShape> SampleOutputShape(const Dataset& dataset, const Pipeline& pipeline) {
  const SampleShape in = dataset.shape();
  if (in.channels <= 0) {
    return Status::InvalidArgument("the dataset's samples have " + std::to_string(in.channels) +
                                   " channels");
  }
  DATAFEED_ASSIGN_OR_RETURN(ImageShape shape,
                            pipeline.OutputShape(in.height, in.width, in.channels));
  if (shape.height <= 0 || shape.width <= 0) {
    return Status::InvalidArgument(
        "pipeline '" + pipeline.spec() + "' makes images whose size depends on the input's, and "
        "this dataset's images differ in size, but a batch needs one size: end the pipeline's "
        "geometric steps with center_crop(S), random_resized_crop(S) or resize(H, W) (e.g. "
        "--preset imagenet-train or imagenet-eval)");
  }
  return shape;
}

Result<std::shared_ptr<const BatchLayout>> MakeBatchLayout(const Dataset& dataset,
                                                           const Pipeline& pipeline,
                                                           size_t batch_size, bool with_index) {
  DATAFEED_ASSIGN_OR_RETURN(ImageShape shape, SampleOutputShape(dataset, pipeline));
  const auto b = static_cast<int64_t>(batch_size);
  // A split pipeline sends uint8 CHW images and names the consumer's finish
  // in the header; shape.dtype says which.
  const Finish* finish = pipeline.finish();
  std::vector<TensorSpec> tensors = {{"image", shape.dtype, {b, shape.channels, shape.height, shape.width},
                                      finish ? finish->spec() : std::string()},
                                     {"label", DType::kInt64, {b}}};
  if (with_index) tensors.push_back({"index", DType::kInt64, {b}});
  DATAFEED_ASSIGN_OR_RETURN(BatchLayout layout, BatchLayout::Make(std::move(tensors)));
  return std::make_shared<const BatchLayout>(std::move(layout));
}

namespace {

// Recent bad samples, for the error that stops a run.
class RecentBad {
 public:
  void Add(std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (recent_.size() == kKeep) recent_.pop_front();
    recent_.push_back(std::move(what));
  }
  std::string Text() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string s;
    for (const std::string& r : recent_) s += (s.empty() ? "" : "; ") + r;
    return s;
  }

 private:
  static constexpr size_t kKeep = 5;
  mutable std::mutex mu_;
  std::deque<std::string> recent_;
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

  // Bad samples: counted per reason, logged at most once a second.
  std::unique_ptr<RateLimitedLog> bad_log;
  RecentBad recent_bad;
  std::atomic<uint64_t> bad{0}, bad_read{0}, bad_decode{0}, bad_size{0}, bad_transform{0};
  std::atomic<uint64_t> bad_filled{0}, bad_unfilled{0};  // kFill: slots a spare took, slots zeroed
  std::atomic<bool> seen_good{false};  // some sample has been made
  std::mutex first_bad_mu;
  Status first_bad;  // the first bad sample's error, for kAllBadProbe

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
  std::atomic<uint64_t> batches{0}, samples{0}, remade{0};
  std::atomic<int64_t> read_ns{0}, decode_ns{0}, transform_ns{0}, loan_ns{0}, publish_ns{0};

  void Fail(Status st) {
    {
      std::lock_guard<std::mutex> lock(error_mu);
      if (error.ok()) error = std::move(st);
    }
    stop.store(true);
    dispatch_cv.notify_all();
  }

  Result<std::shared_ptr<const BatchLayout>> Layout(size_t n) const {
    std::lock_guard<std::mutex> lock(layouts_mu);
    auto& slot = layouts[n];
    if (!slot) {
      DATAFEED_ASSIGN_OR_RETURN(slot, MakeBatchLayout(*dataset, *pipeline, n, options.with_index));
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
    Result<std::shared_ptr<const BatchLayout>> made = Layout(ib.indices.size());
    if (!made.ok()) {
      Fail(made.status());
      return false;
    }
    std::shared_ptr<const BatchLayout> layout = *made;
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

  // Makes sample `index` of `epoch` into `out` (one sample's slot of the
  // batch) and *label. On failure returns the error, naming the sample, and
  // why in *reason. Adds its times to the counters given.
  Status MakeSample(uint64_t index, uint64_t epoch, uint8_t* out, int64_t* label, Sample* sample,
                    BadReason* reason, int64_t* read, int64_t* decode, int64_t* transform) {
    const auto t0 = Clock::now();
    Status st = dataset->Read(index, sample);
    const auto t1 = Clock::now();
    *read += (t1 - t0).count();
    if (!st.ok()) {
      *reason = BadReason::kRead;
      return st;
    }
    const SampleRng rng(options.sampler.seed, epoch, index);
    const ImageFrame* frame = nullptr;
    ImageFrame reduced;
    if (!sample->has_pixels()) {
      // Only what the pipeline's first step reads (see DecodeForPipeline).
      st = internal::DecodeForPipeline(*pipeline, rng, in_shape.channels, options.decode, sample,
                                       &reduced);
      if (reduced.full_height > 0) frame = &reduced;
      if (!st.ok()) {
        *reason = BadReason::kDecode;
        return st.WithContext(dataset->SampleName(index));
      }
    }
    const auto t2 = Clock::now();
    *decode += (t2 - t1).count();
    const int h = frame ? frame->full_height : sample->height();
    const int w = frame ? frame->full_width : sample->width();
    if (in_shape.fixed_size() && (h != in_shape.height || w != in_shape.width)) {
      *reason = BadReason::kSize;
      return Status::InvalidArgument(
          dataset->SampleName(index) + ": the image is " + std::to_string(h) + "x" +
          std::to_string(w) + " (HxW) but the dataset requires " + std::to_string(in_shape.height) +
          "x" + std::to_string(in_shape.width) +
          "; drop the fixed size (--height/--width) and resize in the pipeline");
    }
    if (!in_shape.fixed_size()) {
      // Images of their own size: the output must still be the batch's.
      Result<ImageShape> shape = pipeline->OutputShape(h, w, sample->channels());
      if (!shape.ok() || *shape != out_shape) {
        *reason = BadReason::kTransform;
        return (shape.ok() ? Status::Internal("the pipeline makes " + ToString(*shape) +
                                              " of this image, not the batch's " +
                                              ToString(out_shape))
                           : shape.status())
            .WithContext(dataset->SampleName(index) + " (" + std::to_string(h) + "x" +
                         std::to_string(w) + ")");
      }
    }
    PipelineInput input{sample->pixels(), sample->height(), sample->width(), sample->channels(),
                        frame};
    st = pipeline->Run(input, out, rng);
    *transform += (Clock::now() - t2).count();
    if (!st.ok()) {
      *reason = BadReason::kTransform;
      return st.WithContext(dataset->SampleName(index));
    }
    *label = sample->label();
    return Status::OK();
  }

  // Counts, logs and decides about a bad sample; fills its slot unless the
  // run must stop. False when the run stops (Fail has been called).
  bool OnBadSample(uint64_t index, BadReason reason, const Status& st, uint8_t* slot,
                   size_t slot_bytes, int64_t* label) {
    const uint64_t n = bad.fetch_add(1) + 1;
    switch (reason) {
      case BadReason::kRead: bad_read.fetch_add(1); break;
      case BadReason::kDecode: bad_decode.fetch_add(1); break;
      case BadReason::kSize: bad_size.fetch_add(1); break;
      default: bad_transform.fetch_add(1); break;
    }
    if (options.bad_samples == BadSamples::kFail) {
      Fail(st.WithContext(std::string("bad sample ") + std::to_string(index) +
                          " (--bad-samples fail)"));
      return false;
    }
    recent_bad.Add(st.message());
    {
      std::lock_guard<std::mutex> lock(first_bad_mu);
      if (first_bad.ok()) first_bad = st;
    }
    bad_log->Log([&] {
      return std::string("datafeed: bad sample ") + std::to_string(index) + " (" +
             BadReasonName(reason) + "): " + st.message() + " [" + std::to_string(n) +
             " bad so far; " + BadSamplesName(options.bad_samples) + "]";
    });
    if (!seen_good.load(std::memory_order_relaxed) && n >= kAllBadProbe) {
      std::lock_guard<std::mutex> lock(first_bad_mu);
      Fail(Status(first_bad.code(),
                  "the first " + std::to_string(n) + " samples all failed, so this looks like a "
                  "configuration error rather than bad data (the wrong folder, files that are "
                  "not images, a fixed size no image has, a pipeline the images do not fit); "
                  "the first: " + first_bad.message()));
      return false;
    }
    // The budget: max_bad_fraction of the samples so far, but of at least
    // one epoch's worth, so a few bad files early in a run do not stop it.
    const double seen = static_cast<double>(
        std::max<uint64_t>(samples.load() + n, sampler->samples_per_epoch()));
    if (static_cast<double>(n) > options.max_bad_fraction * seen) {
      char frac[64];
      std::snprintf(frac, sizeof frac, "%.4g", options.max_bad_fraction);
      // One snapshot of the counts, so the total and its parts agree even
      // while other workers are still counting bad samples of their own.
      const uint64_t nr = bad_read.load(), nd = bad_decode.load(), ns = bad_size.load(),
                     nt = bad_transform.load();
      Fail(Status::DataLoss(
          std::to_string(std::max<uint64_t>(n, nr + nd + ns + nt)) + " bad samples (" +
          std::to_string(nr) + " unreadable, " + std::to_string(nd) + " undecodable, " +
          std::to_string(ns) + " of the wrong size, " + std::to_string(nt) +
          " refused by the pipeline) of " + std::to_string(static_cast<uint64_t>(seen)) +
          " samples is more than max_bad_fraction " + frac +
          " (--max-bad-fraction) allows; fix or remove the files, or raise the fraction. Last "
          "ones: " + recent_bad.Text()));
      return false;
    }
    ZeroBadSlot(slot, slot_bytes, label);
    return true;
  }

  // kFill: a spare sample takes the bad one's slot (SpareIndex, up to
  // kSpareTries; a spare that is bad too is passed over, not counted: it is
  // counted when its own turn comes). None good: the slot stays zeroed and
  // that is logged. Returns the index the slot now holds.
  uint64_t FillWithSpare(uint64_t index, uint64_t epoch, uint8_t* slot, size_t slot_bytes,
                         int64_t* label, Sample* sample, int64_t* read, int64_t* decode,
                         int64_t* transform) {
    for (int attempt = 0; attempt < kSpareTries; ++attempt) {
      const uint64_t spare = SpareIndex(options.sampler.seed, epoch, index, attempt, dataset->size());
      if (spare == index) break;
      BadReason reason = BadReason::kRead;
      if (MakeSample(spare, epoch, slot, label, sample, &reason, read, decode, transform).ok()) {
        bad_filled.fetch_add(1);
        return spare;
      }
    }
    ZeroBadSlot(slot, slot_bytes, label);  // a failed spare may have written part of it
    const uint64_t n = bad_unfilled.fetch_add(1) + 1;
    bad_log->Log([&] {
      return "datafeed: bad sample " + std::to_string(index) + ": none of its " + std::to_string(kSpareTries) +
             " spare samples could be made either; its slot is a zero image labelled " +
             std::to_string(kSkippedLabel) + " [" + std::to_string(n) + " so far]";
    });
    return index;
  }

  void Worker() {
    Sample sample;  // this thread's, buffers reused sample after sample
    const size_t sample_bytes = out_shape.nbytes();
    bool made_one = false;
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
      int64_t read = 0, decode = 0, transform = 0;
      for (size_t i = begin; i < end; ++i) {
        const uint64_t index = ob->indices.indices[i];
        uint8_t* out = images + i * sample_bytes;
        if (sample_index != nullptr) sample_index[i] = static_cast<int64_t>(index);
        BadReason reason = BadReason::kRead;
        Status st = MakeSample(index, ob->indices.epoch, out, &labels[i], &sample, &reason, &read,
                               &decode, &transform);
        if (!st.ok()) {
          if (!OnBadSample(index, reason, st, out, sample_bytes, &labels[i])) return;
          if (options.bad_samples == BadSamples::kFill) {
            const uint64_t held = FillWithSpare(index, ob->indices.epoch, out, sample_bytes, &labels[i],
                                                &sample, &read, &decode, &transform);
            if (sample_index != nullptr) sample_index[i] = static_cast<int64_t>(held);
          }
        } else if (!made_one) {
          made_one = true;
          seen_good.store(true, std::memory_order_relaxed);
        }
        if (stop.load(std::memory_order_relaxed)) return;
      }
      read_ns.fetch_add(read);
      decode_ns.fetch_add(decode);
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
  if (!(options.max_bad_fraction >= 0.0 && options.max_bad_fraction <= 1.0)) {
    return Status::InvalidArgument("Producer: max_bad_fraction must be in [0, 1] (--max-bad-fraction)");
  }
  auto impl = std::make_unique<Impl>();
  impl->in_shape = dataset->shape();
  DATAFEED_ASSIGN_OR_RETURN(impl->out_shape, SampleOutputShape(*dataset, pipeline));
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
  impl->bad_log = std::make_unique<RateLimitedLog>(options.log);
  // The layouts of a full batch and of an epoch's short last one, made now
  // so that a layout that cannot be made fails here, not in a worker.
  const size_t batch = options.sampler.batch_size;
  DATAFEED_RETURN_NOT_OK(impl->Layout(batch).status());
  if (const size_t last = impl->sampler->samples_per_epoch() % batch; last != 0) {
    DATAFEED_RETURN_NOT_OK(impl->Layout(last).status());
  }
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
  m.bad_log->Flush();
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
  s.bad_samples = m.bad.load();
  s.bad_read = m.bad_read.load();
  s.bad_decode = m.bad_decode.load();
  s.bad_size = m.bad_size.load();
  s.bad_transform = m.bad_transform.load();
  s.bad_filled = m.bad_filled.load();
  s.bad_unfilled = m.bad_unfilled.load();
  s.elapsed_s = (m.running.load() ? NanosSince(m.started) : m.elapsed_ns.load()) / 1e9;
  s.read_s = m.read_ns.load() / 1e9;
  s.decode_s = m.decode_ns.load() / 1e9;
  s.transform_s = m.transform_ns.load() / 1e9;
  s.loan_blocked_s = m.loan_ns.load() / 1e9;
  s.publish_s = m.publish_ns.load() / 1e9;
  s.remade = m.remade.load();
  s.epochs = m.run.num_epochs == RunInfo::kEndless ? 0 : m.run.num_epochs;
  s.batches_per_epoch = m.run.batches_per_epoch;
  // Made before this process (the journal's position), then by it: remade
  // batches replace ones counted already.
  const uint64_t before =
      m.start.next.epoch >= m.run.first_epoch
          ? (m.start.next.epoch - m.run.first_epoch) * m.run.batches_per_epoch + m.start.next.index
          : 0;
  s.run_batches_done = before + (s.batches >= s.remade ? s.batches - s.remade : 0);
  return s;
}

std::string ProducerStats::Progress() const {
  if (batches_per_epoch == 0) return "";
  const uint64_t epoch = run_batches_done / batches_per_epoch;  // 0-based, the one being made
  char buf[160];
  if (epochs == 0) {
    std::snprintf(buf, sizeof buf, "epoch %llu of an endless run", static_cast<unsigned long long>(epoch + 1));
    return buf;
  }
  const uint64_t total = epochs * batches_per_epoch;
  const uint64_t done = std::min(run_batches_done, total);
  const double pct = 100.0 * static_cast<double>(done) / static_cast<double>(total);
  // The rate of this process's batches; nothing to go on before the first.
  std::string eta = "ETA unknown";
  const uint64_t made_here = batches >= remade ? batches - remade : 0;
  if (done >= total) {
    eta = "done";
  } else if (made_here > 0 && elapsed_s > 0) {
    const double left_s = static_cast<double>(total - done) * elapsed_s / static_cast<double>(made_here);
    const long long t = std::llround(left_s);
    char e[64];
    if (left_s < 1.0) {
      std::snprintf(e, sizeof e, "ETA <1s");
    } else if (t >= 3600) {
      std::snprintf(e, sizeof e, "ETA %lldh%02lldm", t / 3600, t % 3600 / 60);
    } else if (t >= 60) {
      std::snprintf(e, sizeof e, "ETA %lldm%02llds", t / 60, t % 60);
    } else {
      std::snprintf(e, sizeof e, "ETA %llds", t);
    }
    eta = e;
  }
  std::snprintf(buf, sizeof buf, "epoch %llu/%llu, %.1f%%, %s",
                static_cast<unsigned long long>(std::min(epoch + 1, epochs)), static_cast<unsigned long long>(epochs),
                pct, eta.c_str());
  return buf;
}

const RunStart& Producer::run_start() const { return impl_->start; }

const ImageShape& Producer::sample_shape() const { return impl_->out_shape; }

Result<std::shared_ptr<const BatchLayout>> Producer::BatchLayoutFor(size_t batch_size) const {
  return impl_->Layout(batch_size);
}

std::string ProducerStats::ToString() const {
  char bad_text[240] = "";
  if (bad_samples > 0) {
    char filled[80] = "";
    if (bad_filled + bad_unfilled > 0) {
      std::snprintf(filled, sizeof filled, "; %llu filled with spares, %llu zeroed",
                    static_cast<unsigned long long>(bad_filled), static_cast<unsigned long long>(bad_unfilled));
    }
    std::snprintf(bad_text, sizeof bad_text, " (%llu bad: %llu read, %llu decode, %llu size, %llu transform)%s",
                  static_cast<unsigned long long>(bad_samples), static_cast<unsigned long long>(bad_read),
                  static_cast<unsigned long long>(bad_decode), static_cast<unsigned long long>(bad_size),
                  static_cast<unsigned long long>(bad_transform), filled);
  }
  char buf[640];
  std::snprintf(buf, sizeof buf,
                "%llu batches (%llu made again), %llu samples%s in %.1f s: %.1f batches/s, %.0f "
                "samples/s; thread time: read %.2f s, decode %.2f s, transform %.2f s, blocked on "
                "full transport %.2f s, publish %.2f s",
                static_cast<unsigned long long>(batches), static_cast<unsigned long long>(remade),
                static_cast<unsigned long long>(samples), bad_text, elapsed_s, batches_per_s(),
                samples_per_s(), read_s, decode_s, transform_s, loan_blocked_s, publish_s);
  return buf;
}

}  // namespace datafeed
