// The C ABI (datafeed_c.h) over datafeed::Consumer. Everything here is a
// thin adapter: Status -> status code + message, BatchView -> df_batch. No
// C++ exception leaves an exported function.
#include "datafeed_c.h"
#include "datafeed_c_internal.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "datafeed/consumer/consumer.h"
#include "datafeed/transport/deadline.h"
#include "datafeed/transport/delivery.h"
#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/frame.h"
#include "datafeed/transport/log.h"
#include "datafeed/transport/status.h"
#include "datafeed/transport/transport.h"

#ifndef DATAFEED_VERSION_STRING
#define DATAFEED_VERSION_STRING "unknown"
#endif

struct df_consumer {
  std::unique_ptr<datafeed::Consumer> consumer;
  std::string endpoint;
  int64_t poll_ms = 200;
};

struct df_batch {
  datafeed::BatchView view;
  // TensorView names are string_views into the frame, not NUL terminated.
  std::vector<std::string> names;
  // The same for each tensor's finish spec ("" when none).
  std::vector<std::string> finishes;
};

namespace {

using datafeed::Status;
using datafeed::StatusCode;
using datafeed::capi::Fail;
using datafeed::capi::Guard;
using datafeed::capi::ParseBool;
using datafeed::capi::ParseDouble;
using datafeed::capi::ParseInt;
using datafeed::capi::Report;

constexpr const char* kKnownOptions =
    "prefetch, connect_timeout_ms, poll_ms, spin_us, adaptive_spin, liveness_check_ms, log_every_s, log_name, "
    "grpc_prefetch, grpc_streams, reconnect, reconnect_timeout_ms, tls_ca, tls_cert, tls_key, tls_server_name, "
    "compression, auth_token_file, keepalive_ms, max_frame_bytes, restore, rank, world_size, generation, consumer_id, "
    "shm_owner_uid";

Status ApplyOption(const std::string& key, const char* value, datafeed::ConsumerOptions* co,
                   int64_t* poll_ms) {
  datafeed::ReaderOptions& ro = co->reader;
  int64_t i = 0;
  if (key == "prefetch") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &i));
    co->prefetch = static_cast<int>(std::min<int64_t>(i, 1 << 20));
  } else if (key == "connect_timeout_ms") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &ro.connect_timeout_ms));
  } else if (key == "poll_ms") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, poll_ms));
  } else if (key == "spin_us") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &ro.spin_us));
  } else if (key == "adaptive_spin") {
    int64_t on = 0;
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &on));
    if (on > 1) return Status::InvalidArgument("adaptive_spin: '" + std::string(value) + "' is not 0 or 1");
    ro.adaptive_spin = on != 0;
  } else if (key == "liveness_check_ms") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &ro.liveness_check_ms));
  } else if (key == "log_every_s") {
    DATAFEED_RETURN_NOT_OK(ParseDouble(key, value, &co->log_every_s));
  } else if (key == "log_name") {
    co->log_name = value;
  } else if (key == "grpc_prefetch") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &i));
    ro.grpc_prefetch = static_cast<int>(std::min<int64_t>(i, 1 << 20));
  } else if (key == "grpc_streams") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &i));
    if (i > datafeed::ReaderOptions::kMaxGrpcStreams) {
      return Status::InvalidArgument("grpc_streams: " + std::string(value) + " is more than " +
                                     std::to_string(datafeed::ReaderOptions::kMaxGrpcStreams));
    }
    ro.grpc_streams = static_cast<int>(i);
  } else if (key == "reconnect") {
    DATAFEED_RETURN_NOT_OK(ParseBool(key, value, &ro.reconnect));
  } else if (key == "reconnect_timeout_ms") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &ro.reconnect_timeout_ms));
  } else if (key == "tls_ca") {
    ro.grpc.tls_ca = value;
  } else if (key == "tls_cert") {
    ro.grpc.tls_cert = value;
  } else if (key == "tls_key") {
    ro.grpc.tls_key = value;
  } else if (key == "tls_server_name") {
    ro.grpc.tls_server_name = value;
  } else if (key == "compression") {
    ro.grpc.compression = value;
  } else if (key == "auth_token_file") {
    ro.grpc.auth_token_file = value;
  } else if (key == "keepalive_ms") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &ro.grpc.keepalive_ms));
  } else if (key == "max_frame_bytes") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &i));
    ro.grpc.max_frame_bytes = static_cast<size_t>(i);
  } else if (key == "restore") {
    if (value[0] != '\0') {
      DATAFEED_ASSIGN_OR_RETURN(std::vector<datafeed::ConsumerState> states,
                                datafeed::ConsumerState::ListFromJson(value));
      ro.session.restore.clear();
      for (const datafeed::ConsumerState& st : states) {
        ro.session.restore.insert(ro.session.restore.end(), st.streams.begin(), st.streams.end());
      }
    }
  } else if (key == "rank") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &i));
    ro.session.rank = static_cast<uint32_t>(std::min<int64_t>(i, UINT32_MAX));
  } else if (key == "world_size") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &i));
    ro.session.world_size = static_cast<uint32_t>(std::min<int64_t>(i, UINT32_MAX));
  } else if (key == "generation") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &i));
    ro.session.generation = static_cast<uint64_t>(i);
  } else if (key == "consumer_id") {
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(value, &end, 0);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-') {
      return Status::InvalidArgument("option consumer_id='" + std::string(value) +
                                     "': expected a 64-bit number (0x.. or decimal)");
    }
    ro.session.consumer_id = v;
  } else if (key == "shm_owner_uid") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &ro.shm_owner_uid));
  } else {
    return Status::InvalidArgument("unknown option '" + key + "'; known options: " + kKnownOptions);
  }
  return Status::OK();
}

uint64_t MetaField(const datafeed::BatchMeta& m, int field) {
  switch (field) {
    case DF_META_SEQUENCE: return m.sequence;
    case DF_META_FIRST_INDEX: return m.first_index;
    case DF_META_PRODUCER_ID: return m.producer_id;
    case DF_META_EPOCH: return m.epoch;
    case DF_META_BATCH_INDEX: return m.batch_index;
    case DF_META_FINGERPRINT: return m.fingerprint;
    case DF_META_SHARD: return m.shard;
    case DF_META_ATTEMPT: return m.attempt;
    default: return 0;
  }
}

const datafeed::TensorView* TensorAt(const df_batch* b, size_t i) {
  if (b == nullptr || i >= b->view.frame().num_tensors()) return nullptr;
  return &b->view.frame().tensor(i);
}

}  // namespace

extern "C" {

int df_abi_version(void) { return DF_ABI_VERSION; }

const char* df_version(void) { return DATAFEED_VERSION_STRING; }

const char* df_status_name(int code) {
  switch (code) {
    case DF_OK: return "OK";
    case DF_INVALID_ARGUMENT: return "InvalidArgument";
    case DF_NOT_FOUND: return "NotFound";
    case DF_ALREADY_EXISTS: return "AlreadyExists";
    case DF_RESOURCE_EXHAUSTED: return "ResourceExhausted";
    case DF_TIMEOUT: return "DeadlineExceeded";
    case DF_UNAVAILABLE: return "Unavailable";
    case DF_DATA_LOSS: return "DataLoss";
    case DF_END_OF_STREAM: return "EndOfStream";
    case DF_CANCELLED: return "Cancelled";
    case DF_FAILED_PRECONDITION: return "FailedPrecondition";
    case DF_UNIMPLEMENTED: return "Unimplemented";
    case DF_IO_ERROR: return "IOError";
    case DF_INTERNAL: return "Internal";
    case DF_ABORTED: return "Aborted";
    default: return "Unknown";
  }
}

const char* df_dtype_name(int dtype) {
  if (dtype < DF_UINT8 || dtype > DF_BOOL) return "unknown";
  return datafeed::DTypeName(static_cast<datafeed::DType>(dtype));
}

size_t df_dtype_size(int dtype) {
  if (dtype < DF_UINT8 || dtype > DF_BOOL) return 0;
  return datafeed::DTypeSize(static_cast<datafeed::DType>(dtype));
}

int df_consumer_open(const char* endpoint, const char* transport, const char* const* option_keys,
                     const char* const* option_values, size_t num_options, df_consumer** out,
                     char* err, size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (out == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_consumer_open: out is NULL", err, err_size);
    *out = nullptr;
    if (num_options > 0 && (option_keys == nullptr || option_values == nullptr)) {
      return Fail(DF_INVALID_ARGUMENT, "df_consumer_open: options are NULL", err, err_size);
    }
    auto c = std::make_unique<df_consumer>();
    datafeed::ConsumerOptions co;
    co.log_name = "datafeed";
    for (size_t i = 0; i < num_options; ++i) {
      if (option_keys[i] == nullptr || option_values[i] == nullptr) {
        return Fail(DF_INVALID_ARGUMENT, "df_consumer_open: option " + std::to_string(i) + " is NULL",
                    err, err_size);
      }
      Status st = ApplyOption(option_keys[i], option_values[i], &co, &c->poll_ms);
      if (!st.ok()) return Report(st, err, err_size);
    }
    // Consumer::Next() waits up to options.timeout_ms; df_consumer_next's own
    // timeout is built from slices of that length (see there).
    co.timeout_ms = c->poll_ms;
    auto opened = datafeed::Consumer::Open(endpoint ? endpoint : "", co, transport ? transport : "");
    if (!opened.ok()) return Report(opened.status(), err, err_size);
    c->consumer = std::move(opened).value();
    c->endpoint = c->consumer->endpoint();
    *out = c.release();
    return DF_OK;
  });
}

int df_consumer_next(df_consumer* consumer, int64_t timeout_ms, df_batch** out, char* err,
                     size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (out == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_consumer_next: out is NULL", err, err_size);
    *out = nullptr;
    if (consumer == nullptr) {
      return Fail(DF_INVALID_ARGUMENT, "df_consumer_next: consumer is NULL", err, err_size);
    }
    // Consumer has one timeout, fixed at Open (poll_ms). A per-call timeout
    // is a sequence of those slices: each DeadlineExceeded leaves the stream
    // as it was. Slices stay longer than the shared-memory reader's liveness
    // check, so a dead producer is still noticed with prefetch 0.
    const datafeed::Deadline deadline = timeout_ms < 0 ? datafeed::Deadline::Infinite()
                                                       : datafeed::Deadline::AfterMillis(timeout_ms);
    for (;;) {
      datafeed::Result<datafeed::BatchView> r = consumer->consumer->Next();
      if (r.ok()) {
        auto b = std::make_unique<df_batch>();
        b->view = std::move(r).value();
        const datafeed::FrameView& frame = b->view.frame();
        b->names.reserve(frame.num_tensors());
        b->finishes.reserve(frame.num_tensors());
        for (const datafeed::TensorView& t : frame.tensors()) {
          b->names.emplace_back(t.name);
          b->finishes.emplace_back(t.finish);
        }
        *out = b.release();
        return DF_OK;
      }
      if (!r.status().IsDeadlineExceeded()) return Report(r.status(), err, err_size);
      if (deadline.expired()) {
        return Fail(DF_TIMEOUT,
                    "no batch from " + consumer->endpoint + " within " + std::to_string(timeout_ms) +
                        " ms; is the producer running?",
                    err, err_size);
      }
    }
  });
}

void df_consumer_stop(df_consumer* consumer) {
  if (consumer == nullptr) return;
  try {
    consumer->consumer->Stop();
  } catch (...) {
    // Stop() does not throw; nothing may cross the ABI if it ever did.
  }
}

void df_consumer_close(df_consumer* consumer) {
  if (consumer == nullptr) return;
  try {
    delete consumer;
  } catch (...) {
  }
}

size_t df_consumer_stats(const df_consumer* consumer, double* out, size_t n) {
  if (consumer == nullptr || out == nullptr) return 0;
  try {
    const datafeed::ConsumerStats s = consumer->consumer->stats();
    const double all[DF_STAT_COUNT] = {
        static_cast<double>(s.batches), static_cast<double>(s.samples),
        static_cast<double>(s.bytes),   s.elapsed_s,
        s.wait_s,                       s.samples_per_s(),
        s.batches_per_s(),              s.wait_fraction(),
        static_cast<double>(s.dropped),
    };
    const size_t k = std::min<size_t>(n, DF_STAT_COUNT);
    std::copy(all, all + k, out);
    return k;
  } catch (...) {
    return 0;
  }
}

const char* df_consumer_endpoint(const df_consumer* consumer) {
  return consumer == nullptr ? "" : consumer->endpoint.c_str();
}

const char* df_consumer_transport(const df_consumer* consumer) {
  if (consumer == nullptr) return "";
  try {
    return datafeed::SchemeName(consumer->consumer->transport());
  } catch (...) {
    return "";
  }
}

uint64_t df_consumer_batches_per_epoch(const df_consumer* consumer) {
  if (consumer == nullptr) return 0;
  try {
    return consumer->consumer->batches_per_epoch();
  } catch (...) {
    return 0;
  }
}

size_t df_batch_num_tensors(const df_batch* batch) {
  return batch == nullptr ? 0 : batch->view.frame().num_tensors();
}

const char* df_batch_tensor_name(const df_batch* batch, size_t i) {
  return TensorAt(batch, i) ? batch->names[i].c_str() : nullptr;
}

int df_batch_tensor_dtype(const df_batch* batch, size_t i) {
  const datafeed::TensorView* t = TensorAt(batch, i);
  return t ? static_cast<int>(t->dtype) : 0;
}

size_t df_batch_tensor_ndim(const df_batch* batch, size_t i) {
  const datafeed::TensorView* t = TensorAt(batch, i);
  return t ? t->shape.size() : 0;
}

const int64_t* df_batch_tensor_shape(const df_batch* batch, size_t i) {
  const datafeed::TensorView* t = TensorAt(batch, i);
  return t && !t->shape.empty() ? t->shape.data() : nullptr;
}

void* df_batch_tensor_data(const df_batch* batch, size_t i) {
  const datafeed::TensorView* t = TensorAt(batch, i);
  // The frame is mapped writable and claimed by this consumer alone (see
  // datafeed/torch/tensors.h); the const in TensorView is the transport's
  // promise not to change it, not a protection.
  return t ? const_cast<uint8_t*>(t->data) : nullptr;
}

uint64_t df_batch_tensor_nbytes(const df_batch* batch, size_t i) {
  const datafeed::TensorView* t = TensorAt(batch, i);
  return t ? static_cast<uint64_t>(t->nbytes) : 0;
}

uint64_t df_batch_meta(const df_batch* batch, int field) {
  if (batch == nullptr) return 0;
  return MetaField(batch->view.meta(), field);
}

int df_consumer_state(const df_consumer* consumer, char* buf, size_t size, size_t* needed, char* err,
                      size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (consumer == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_consumer_state: consumer is NULL", err, err_size);
    const std::string json = consumer->consumer->state().ToJson();
    if (needed != nullptr) *needed = json.size() + 1;
    if (buf == nullptr || size < json.size() + 1) {
      return Fail(DF_RESOURCE_EXHAUSTED,
                  "df_consumer_state: the state needs " + std::to_string(json.size() + 1) + " bytes", err,
                  err_size);
    }
    std::memcpy(buf, json.c_str(), json.size() + 1);
    return DF_OK;
  });
}

int df_consumer_peek(df_consumer* consumer, int64_t timeout_ms, uint64_t* meta, size_t n, char* err,
                     size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (consumer == nullptr || (meta == nullptr && n > 0)) {
      return Fail(DF_INVALID_ARGUMENT, "df_consumer_peek: consumer or meta is NULL", err, err_size);
    }
    const datafeed::Deadline deadline = timeout_ms < 0 ? datafeed::Deadline::Infinite()
                                                       : datafeed::Deadline::AfterMillis(timeout_ms);
    for (;;) {
      datafeed::Result<datafeed::BatchMeta> r = consumer->consumer->Peek();
      if (r.ok()) {
        for (size_t i = 0; i < n && i < DF_META_COUNT; ++i) meta[i] = MetaField(*r, static_cast<int>(i));
        return DF_OK;
      }
      if (!r.status().IsDeadlineExceeded()) return Report(r.status(), err, err_size);
      if (deadline.expired()) {
        return Fail(DF_TIMEOUT,
                    "no batch from " + consumer->endpoint + " within " + std::to_string(timeout_ms) +
                        " ms; is the producer running?",
                    err, err_size);
      }
    }
  });
}

const char* df_batch_tensor_finish(const df_batch* batch, size_t i) {
  return TensorAt(batch, i) ? batch->finishes[i].c_str() : nullptr;
}

int df_finish_apply(const char* spec, const uint8_t* in, const int64_t* shape, size_t ndim,
                    float* out, size_t out_floats, char* err, size_t err_size) {
  return Guard(err, err_size, [&] {
    if (spec == nullptr || (ndim > 0 && shape == nullptr)) {
      return Report(datafeed::Status::InvalidArgument("df_finish_apply: null spec or shape"), err, err_size);
    }
    datafeed::Result<datafeed::Finish> finish = datafeed::Finish::Parse(spec);
    if (!finish.ok()) return Report(finish.status(), err, err_size);
    const std::vector<int64_t> dims(shape, shape + ndim);
    for (int64_t d : dims) {
      if (d < 0) return Report(datafeed::Status::InvalidArgument("df_finish_apply: negative dimension"), err, err_size);
    }
    return Report(finish->Apply(in, dims, out, out_floats), err, err_size);
  });
}

int df_finish_tables(const char* spec, int64_t channels, float* out, size_t n, char* err,
                     size_t err_size) {
  return Guard(err, err_size, [&] {
    if (spec == nullptr || out == nullptr) {
      return Report(datafeed::Status::InvalidArgument("df_finish_tables: null spec or output"), err, err_size);
    }
    datafeed::Result<datafeed::Finish> finish = datafeed::Finish::Parse(spec);
    if (!finish.ok()) return Report(finish.status(), err, err_size);
    if (channels <= 0 || n / 256 < static_cast<uint64_t>(channels)) {
      return Report(datafeed::Status::InvalidArgument("df_finish_tables: " + std::to_string(channels) +
                                                      " channels need " + std::to_string(channels * 256) +
                                                      " floats, got room for " + std::to_string(n)),
                    err, err_size);
    }
    return Report(finish->FillTables(channels, out), err, err_size);
  });
}

void df_batch_release(df_batch* batch) {
  try {
    delete batch;
  } catch (...) {
  }
}

void df_set_log_callback(df_log_fn fn, void* user) {
  try {
    if (fn == nullptr) {
      datafeed::SetLogSink(nullptr);
      return;
    }
    datafeed::SetLogSink([fn, user](datafeed::LogLevel level, const std::string& line) {
      fn(static_cast<int>(level), line.c_str(), user);
    });
  } catch (...) {
  }
}

void df_set_log_level(int level) {
  if (level < DF_LOG_DEBUG || level > DF_LOG_OFF) return;
  try {
    datafeed::SetLogLevel(static_cast<datafeed::LogLevel>(level));
  } catch (...) {
  }
}

}  // extern "C"
