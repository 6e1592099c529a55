#include "datafeed/transport/transport.h"

#include <utility>

#include "transports_internal.h"

namespace datafeed {

WritableBatch::WritableBatch(LoanOwner* owner, uint64_t token, uint8_t* frame,
                             std::shared_ptr<const BatchLayout> layout)
    : owner_(owner), token_(token), frame_(frame), layout_(std::move(layout)) {}

WritableBatch::WritableBatch(WritableBatch&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)),
      token_(other.token_),
      frame_(std::exchange(other.frame_, nullptr)),
      layout_(std::move(other.layout_)),
      meta_(other.meta_) {}

WritableBatch& WritableBatch::operator=(WritableBatch&& other) noexcept {
  if (this != &other) {
    if (owner_ != nullptr && frame_ != nullptr) owner_->Abandon(token_);
    owner_ = std::exchange(other.owner_, nullptr);
    token_ = other.token_;
    frame_ = std::exchange(other.frame_, nullptr);
    layout_ = std::move(other.layout_);
    meta_ = other.meta_;
  }
  return *this;
}

WritableBatch::~WritableBatch() {
  if (owner_ != nullptr && frame_ != nullptr) owner_->Abandon(token_);
}

Result<RunStart> BatchWriter::run_start() const {
  return Status::FailedPrecondition(endpoint() + ": the writer was opened without a run (WriterOptions::run)");
}
std::optional<BatchKey> BatchWriter::TakeRemake() { return std::nullopt; }
void BatchWriter::Unmade(const BatchKey&) {}
BatchWriter::Work BatchWriter::WaitForWork(Deadline) { return Work::kDone; }

Result<BatchView> BatchReader::Next(Deadline deadline) {
  DATAFEED_RETURN_NOT_OK(Ack());
  for (;;) {
    DATAFEED_ASSIGN_OR_RETURN(BatchView view, Take(deadline));
    DATAFEED_ASSIGN_OR_RETURN(bool handed, Hand(view));
    if (handed) return view;
  }
}

Result<std::unique_ptr<BatchWriter>> OpenWriter(const Endpoint& endpoint,
                                                const WriterOptions& options) {
  switch (endpoint.scheme) {
    case Scheme::kShm: return internal::OpenShmWriter(endpoint.name, options);
    case Scheme::kInProc: return internal::OpenInProcWriter(endpoint.name, options);
    case Scheme::kGrpc:
    case Scheme::kAuto:
      if (!endpoint.more.empty()) {
        return Status::InvalidArgument(endpoint.ToString() + ": a producer serves one address; the list of "
                                       "several producers is for consumers");
      }
      return internal::OpenGrpcWriter(endpoint, options);
  }
  return Status::Internal("unknown scheme");
}

Result<std::unique_ptr<BatchReader>> OpenReader(const Endpoint& endpoint,
                                                const ReaderOptions& options) {
  switch (endpoint.scheme) {
    case Scheme::kShm: return internal::OpenShmReader(endpoint.name, options);
    case Scheme::kInProc: return internal::OpenInProcReader(endpoint.name, options);
    case Scheme::kGrpc:
    case Scheme::kAuto:
      if (options.grpc_streams < 1 || options.grpc_streams > ReaderOptions::kMaxGrpcStreams) {
        return Status::InvalidArgument(endpoint.ToString() + ": grpc_streams " + std::to_string(options.grpc_streams) +
                                       " is not between 1 and " + std::to_string(ReaderOptions::kMaxGrpcStreams));
      }
      if (!endpoint.more.empty() || !internal::IsAddressLiteral(endpoint.name) || options.grpc_streams > 1) {
        return internal::OpenMultiReader(endpoint, options);
      }
      return internal::OpenAutoReader(endpoint, options);
  }
  return Status::Internal("unknown scheme");
}

}  // namespace datafeed
