// Helpers shared by the C ABI's translation units (datafeed_c.cc: the
// consumer; datafeed_c_writer.cc: the writer). Not installed, not exported.
#ifndef DATAFEED_PYTHON_CAPI_DATAFEED_C_INTERNAL_H_
#define DATAFEED_PYTHON_CAPI_DATAFEED_C_INTERNAL_H_

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "datafeed/transport/status.h"
#include "datafeed_c.h"

namespace datafeed::capi {

inline int CodeOf(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return DF_OK;
    case StatusCode::kInvalidArgument: return DF_INVALID_ARGUMENT;
    case StatusCode::kNotFound: return DF_NOT_FOUND;
    case StatusCode::kAlreadyExists: return DF_ALREADY_EXISTS;
    case StatusCode::kResourceExhausted: return DF_RESOURCE_EXHAUSTED;
    case StatusCode::kDeadlineExceeded: return DF_TIMEOUT;
    case StatusCode::kUnavailable: return DF_UNAVAILABLE;
    case StatusCode::kDataLoss: return DF_DATA_LOSS;
    case StatusCode::kEndOfStream: return DF_END_OF_STREAM;
    case StatusCode::kCancelled: return DF_CANCELLED;
    case StatusCode::kFailedPrecondition: return DF_FAILED_PRECONDITION;
    case StatusCode::kUnimplemented: return DF_UNIMPLEMENTED;
    case StatusCode::kIOError: return DF_IO_ERROR;
    case StatusCode::kInternal: return DF_INTERNAL;
    case StatusCode::kAborted: return DF_ABORTED;
  }
  return DF_INTERNAL;
}

inline void WriteMessage(const std::string& msg, char* err, size_t err_size) {
  if (err == nullptr || err_size == 0) return;
  const size_t n = std::min(msg.size(), err_size - 1);
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

inline int Fail(int code, const std::string& msg, char* err, size_t err_size) {
  WriteMessage(msg, err, err_size);
  return code;
}

inline int Report(const Status& st, char* err, size_t err_size) {
  return Fail(CodeOf(st.code()), st.message(), err, err_size);
}

// The boundary: any exception becomes a status code and a message.
template <typename F>
inline int Guard(char* err, size_t err_size, F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(DF_RESOURCE_EXHAUSTED, "out of memory", err, err_size);
  } catch (const std::exception& e) {
    return Fail(DF_INTERNAL, std::string("unexpected C++ exception: ") + e.what(), err, err_size);
  } catch (...) {
    return Fail(DF_INTERNAL, "unexpected C++ exception", err, err_size);
  }
}

inline Status ParseInt(const std::string& key, const char* value, int64_t min, int64_t* out) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < min) {
    return Status::InvalidArgument("option " + key + "='" + value + "': expected an integer >= " +
                                   std::to_string(min));
  }
  *out = v;
  return Status::OK();
}

inline Status ParseDouble(const std::string& key, const char* value, double* out) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(value, &end);
  if (errno != 0 || end == value || *end != '\0' || !(v >= 0)) {
    return Status::InvalidArgument("option " + key + "='" + value + "': expected a number >= 0");
  }
  *out = v;
  return Status::OK();
}

inline Status ParseBool(const std::string& key, const char* value, bool* out) {
  const std::string v = value;
  if (v == "1" || v == "true" || v == "True") {
    *out = true;
  } else if (v == "0" || v == "false" || v == "False" || v.empty()) {
    *out = false;
  } else {
    return Status::InvalidArgument("option " + key + "='" + v + "': expected 0/1 or true/false");
  }
  return Status::OK();
}

}  // namespace datafeed::capi

#endif  // DATAFEED_PYTHON_CAPI_DATAFEED_C_INTERNAL_H_
