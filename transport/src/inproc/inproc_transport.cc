// In-process transport: a bounded queue of heap frames, registered by name.
// For tests and single-process pipelines; same semantics as shared memory
// (bounded memory, exactly-once delivery, end of stream, writer loss).
#include <atomic>
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "datafeed/transport/transport.h"
#include "transports_internal.h"

namespace datafeed::internal {
namespace {

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using Memory = std::unique_ptr<uint8_t, FreeDeleter>;
// Frame memory, reused: a fresh 25 MB allocation per batch would cost a
// page fault per 4 KiB page on every batch.
struct Buffer {
  Memory mem;
  size_t capacity = 0;
  uint8_t* get() const { return mem.get(); }
};

// State shared by the writer, its readers and outstanding batches.
struct Channel {
  std::mutex mu;
  std::condition_variable data_cv;   // a batch was published, or closed/gone
  std::condition_variable space_cv;  // a buffer was returned
  std::deque<std::pair<Buffer, size_t>> ready;  // frame, size
  std::map<uint64_t, Buffer> loaned;
  std::vector<Buffer> spare;  // returned buffers, at most `capacity` of them
  uint64_t next_token = 0;
  uint64_t next_seq = 0;
  size_t in_use = 0;  // loaned + ready + held by readers
  size_t capacity = 4;
  bool closed = false;
  bool writer_gone = false;
  std::string name;
};

std::mutex& RegistryMu() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::weak_ptr<Channel>>& Registry() {
  static std::map<std::string, std::weak_ptr<Channel>> r;
  return r;
}

std::string Uri(const std::string& name) { return "inproc://" + name; }

// Under ch.mu.
void Recycle(Channel& ch, Buffer buf) {
  if (ch.spare.size() < ch.capacity) ch.spare.push_back(std::move(buf));
}

class InProcWriter final : public BatchWriter, public LoanOwner {
 public:
  explicit InProcWriter(std::shared_ptr<Channel> ch) : ch_(std::move(ch)) {}
  // Destroying the writer ends the stream like Close().
  ~InProcWriter() override {
    std::lock_guard<std::mutex> lock(ch_->mu);
    ch_->closed = true;
    ch_->writer_gone = true;
    ch_->data_cv.notify_all();
  }

  Result<WritableBatch> Loan(std::shared_ptr<const BatchLayout> layout,
                             Deadline deadline) override {
    if (!layout) return Status::InvalidArgument("Loan: null layout");
    std::unique_lock<std::mutex> lock(ch_->mu);
    for (;;) {
      if (ch_->closed) return Status::FailedPrecondition(Uri(ch_->name) + ": Loan after Close");
      if (ch_->in_use < ch_->capacity) break;
      if (deadline.infinite()) {
        ch_->space_cv.wait(lock);
      } else if (ch_->space_cv.wait_until(lock, deadline.when()) == std::cv_status::timeout &&
                 ch_->in_use >= ch_->capacity) {
        return Status::DeadlineExceeded(Uri(ch_->name) + ": every buffer is in use");
      }
    }
    const size_t bytes = layout->frame_bytes();
    Buffer buf;
    for (auto it = ch_->spare.begin(); it != ch_->spare.end(); ++it) {
      if (it->capacity >= bytes) {
        buf = std::move(*it);
        ch_->spare.erase(it);
        break;
      }
    }
    if (!buf.get()) {
      buf.capacity = (std::max(bytes, kFrameAlignment) + kFrameAlignment - 1) / kFrameAlignment * kFrameAlignment;
      buf.mem.reset(static_cast<uint8_t*>(std::aligned_alloc(kFrameAlignment, buf.capacity)));
      if (!buf.get()) return Status::ResourceExhausted(Uri(ch_->name) + ": out of memory for a frame");
    }
    uint8_t* frame = buf.get();
    layout->WriteHeader(frame, BatchMeta{});
    const uint64_t token = ch_->next_token++;
    ch_->loaned.emplace(token, std::move(buf));
    ++ch_->in_use;
    return LoanAccess::Make(this, token, frame, std::move(layout));
  }

  Status Publish(WritableBatch batch) override {
    std::lock_guard<std::mutex> lock(ch_->mu);
    auto it = ch_->loaned.find(LoanAccess::Token(batch));
    if (!batch.valid() || it == ch_->loaned.end() || it->second.get() != LoanAccess::Frame(batch)) {
      return Status::InvalidArgument("Publish: the batch was not loaned by this writer");
    }
    if (ch_->closed) return Status::FailedPrecondition(Uri(ch_->name) + ": Publish after Close");
    BatchMeta meta = batch.meta();
    meta.sequence = ch_->next_seq++;
    BatchLayout::UpdateMeta(LoanAccess::Frame(batch), meta);
    ch_->ready.emplace_back(std::move(it->second), batch.frame_bytes());
    ch_->loaned.erase(it);
    LoanAccess::Release(batch);
    ch_->data_cv.notify_one();
    return Status::OK();
  }

  Status Close() override {
    std::lock_guard<std::mutex> lock(ch_->mu);
    ch_->closed = true;
    ch_->data_cv.notify_all();
    ch_->space_cv.notify_all();
    return Status::OK();
  }

  std::string endpoint() const override { return Uri(ch_->name); }

  void Abandon(uint64_t token) override {
    std::lock_guard<std::mutex> lock(ch_->mu);
    auto it = ch_->loaned.find(token);
    if (it != ch_->loaned.end()) {
      Recycle(*ch_, std::move(it->second));
      ch_->loaned.erase(it);
      --ch_->in_use;
      ch_->space_cv.notify_all();
    }
  }

 private:
  std::shared_ptr<Channel> ch_;
};

struct HeldFrame {
  HeldFrame(std::shared_ptr<Channel> c, Buffer b) : ch(std::move(c)), buf(std::move(b)) {}
  HeldFrame(const HeldFrame&) = delete;
  HeldFrame& operator=(const HeldFrame&) = delete;
  std::shared_ptr<Channel> ch;
  Buffer buf;
  ~HeldFrame() {
    std::lock_guard<std::mutex> lock(ch->mu);
    Recycle(*ch, std::move(buf));
    --ch->in_use;
    ch->space_cv.notify_all();
  }
};

class InProcReader final : public BatchReader {
 public:
  explicit InProcReader(std::shared_ptr<Channel> ch) : ch_(std::move(ch)) {}

  // In one process nothing dies apart: there are no leases to keep, and
  // every batch taken is handed out.
  Result<BatchView> Take(Deadline deadline) override {
    std::unique_lock<std::mutex> lock(ch_->mu);
    for (;;) {
      if (cancelled_) return Status::Cancelled(Uri(ch_->name) + ": reader cancelled");
      if (!ch_->ready.empty()) break;
      if (ch_->closed) return Status::EndOfStream(Uri(ch_->name) + ": the writer closed the stream");
      if (ch_->writer_gone) {
        return Status::Unavailable(Uri(ch_->name) + ": the writer went away without closing");
      }
      if (deadline.infinite()) {
        ch_->data_cv.wait(lock);
      } else if (ch_->data_cv.wait_until(lock, deadline.when()) == std::cv_status::timeout &&
                 ch_->ready.empty() && !cancelled_) {
        return Status::DeadlineExceeded(Uri(ch_->name) + ": no batch before the deadline");
      }
    }
    auto [buf, size] = std::move(ch_->ready.front());
    ch_->ready.pop_front();
    lock.unlock();
    const uint8_t* data = buf.get();
    auto held = std::make_shared<HeldFrame>(ch_, std::move(buf));
    Result<FrameView> frame = ParseFrame(data, size);
    if (!frame.ok()) return frame.status().WithContext(Uri(ch_->name));
    BatchView::Delivery d;
    d.reader = this;
    d.position = taken_++;
    return BatchView(std::move(frame).value(), std::move(held), d);
  }
  Result<bool> Hand(const BatchView&) override { return true; }
  Status Ack() override { return Status::OK(); }
  ConsumerState state() const override { return ConsumerState{}; }

  void Cancel() override {
    std::lock_guard<std::mutex> lock(ch_->mu);
    cancelled_ = true;
    ch_->data_cv.notify_all();
  }

  Scheme transport() const override { return Scheme::kInProc; }

 private:
  std::shared_ptr<Channel> ch_;
  bool cancelled_ = false;  // guarded by ch_->mu
  std::atomic<uint64_t> taken_{0};
};

}  // namespace

Result<std::unique_ptr<BatchWriter>> OpenInProcWriter(const std::string& name,
                                                      const WriterOptions& options) {
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext("inproc endpoint"));
  std::lock_guard<std::mutex> lock(RegistryMu());
  auto& slot = Registry()[name];
  if (auto old = slot.lock()) {
    std::lock_guard<std::mutex> old_lock(old->mu);
    if (!old->writer_gone) return Status::AlreadyExists(Uri(name) + " already has a writer");
  }
  auto ch = std::make_shared<Channel>();
  ch->name = name;
  ch->capacity = std::max<size_t>(1, options.inproc_capacity);
  slot = ch;
  return std::unique_ptr<BatchWriter>(new InProcWriter(std::move(ch)));
}

Result<std::unique_ptr<BatchReader>> OpenInProcReader(const std::string& name,
                                                      const ReaderOptions& options) {
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext("inproc endpoint"));
  Deadline deadline = Deadline::AfterMillis(options.connect_timeout_ms);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(RegistryMu());
      auto it = Registry().find(name);
      if (it != Registry().end()) {
        if (auto ch = it->second.lock()) return std::unique_ptr<BatchReader>(new InProcReader(ch));
      }
    }
    if (deadline.expired()) {
      return Status::NotFound("no writer at " + Uri(name) + "; open the writer first");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace datafeed::internal
