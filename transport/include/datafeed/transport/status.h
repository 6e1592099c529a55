// Status and Result<T>: every fallible datafeed call returns one of these.
//
// A Status carries a code a program can branch on and a message a person can
// act on ("segment 'feed0' needs 103 MiB in /dev/shm but 12 MiB is free; free
// space or lower --slots"). No exceptions cross datafeed's public API.
//
// Thread safety: Status and Result are values; distinct objects may be used
// from distinct threads freely, as with any standard value type.
#ifndef DATAFEED_TRANSPORT_STATUS_H_
#define DATAFEED_TRANSPORT_STATUS_H_

#include <cassert>
#include <memory>
#include <string>
#include <utility>
#include <variant>

namespace datafeed {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,    // the caller passed something wrong (bad spec, bad URI)
  kNotFound,           // a named thing does not exist (file, segment, tensor)
  kAlreadyExists,      // a named thing is taken by a live owner
  kResourceExhausted,  // out of room: /dev/shm full, frame larger than a slot
  kDeadlineExceeded,   // a deadline passed before the operation completed
  kUnavailable,        // the peer is gone or not reachable (producer died)
  kDataLoss,           // bytes are corrupt: malformed frame, truncated file
  kEndOfStream,        // the producer closed the stream; no more batches
  kCancelled,          // the operation was cancelled by the caller
  kFailedPrecondition, // the object is in the wrong state (closed writer)
  kUnimplemented,      // asked for something this build does not provide
  kIOError,            // an operating-system call failed
  kInternal,           // a broken invariant: a bug in datafeed
  kAborted,            // the producer ended this consumer's session: it lost a
                       // lease on a batch its trainer held, or was superseded
};

// Returns "InvalidArgument", "EndOfStream", ...
const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message);

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
  static Status EndOfStream(std::string m) { return {StatusCode::kEndOfStream, std::move(m)}; }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
  // An IOError whose message ends with strerror(errnum).
  static Status FromErrno(int errnum, const std::string& what);

  bool ok() const { return state_ == nullptr; }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  // Empty for OK.
  const std::string& message() const;
  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

  bool IsEndOfStream() const { return code() == StatusCode::kEndOfStream; }
  bool IsDeadlineExceeded() const { return code() == StatusCode::kDeadlineExceeded; }

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status WithContext(const std::string& context) const;

 private:
  struct State {
    StatusCode code;
    std::string message;
  };
  // Null when OK, so an OK Status costs one pointer and no allocation.
  std::shared_ptr<const State> state_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result built from an OK Status");
  }

  bool ok() const { return v_.index() == 1; }
  // OK when a value is held.
  Status status() const { return ok() ? Status::OK() : std::get<0>(v_); }

  T& value() & { return std::get<1>(v_); }
  const T& value() const& { return std::get<1>(v_); }
  T&& value() && { return std::get<1>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  T ValueOr(T fallback) const& { return ok() ? value() : std::move(fallback); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace datafeed

#define DATAFEED_CONCAT_IMPL(a, b) a##b
#define DATAFEED_CONCAT(a, b) DATAFEED_CONCAT_IMPL(a, b)

// Returns the Status of `expr` from the enclosing function if it is not OK.
#define DATAFEED_RETURN_NOT_OK(expr)                 \
  do {                                               \
    ::datafeed::Status _df_status = (expr);          \
    if (!_df_status.ok()) return _df_status;         \
  } while (0)

#define DATAFEED_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                   \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()

// `lhs = value of rexpr`, or return its Status from the enclosing function.
#define DATAFEED_ASSIGN_OR_RETURN(lhs, rexpr) \
  DATAFEED_ASSIGN_OR_RETURN_IMPL(DATAFEED_CONCAT(_df_result_, __LINE__), lhs, rexpr)

#endif  // DATAFEED_TRANSPORT_STATUS_H_
