// The C ABI's writer (datafeed_c.h, "Writer"): datafeed::BatchWriter's
// loan -> fill -> publish for languages with a C FFI (datafeed.Writer in
// Python). A thin adapter like datafeed_c.cc: Status -> status code +
// message, no C++ exception leaves an exported function.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "datafeed/transport/deadline.h"
#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/frame.h"
#include "datafeed/transport/status.h"
#include "datafeed/transport/transport.h"
#include "datafeed_c.h"
#include "datafeed_c_internal.h"

struct df_layout {
  std::shared_ptr<const datafeed::BatchLayout> layout;
};

struct df_writer {
  std::unique_ptr<datafeed::BatchWriter> writer;
  std::string endpoint;
};

struct df_loan {
  datafeed::WritableBatch batch;
};

namespace {

using datafeed::Status;
using datafeed::capi::Fail;
using datafeed::capi::Guard;
using datafeed::capi::ParseBool;
using datafeed::capi::ParseInt;
using datafeed::capi::Report;

constexpr const char* kKnownWriterOptions =
    "slot_count, slot_bytes, linger_ms, insecure, tls_cert, tls_key, tls_ca, auth_token_file, "
    "max_streams, max_streams_per_peer, keepalive_ms, shm_name";

Status ApplyWriterOption(const std::string& key, const char* value, datafeed::WriterOptions* wo) {
  int64_t i = 0;
  if (key == "slot_count") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &i));
    wo->shm.slot_count = static_cast<size_t>(i);
  } else if (key == "slot_bytes") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &i));
    wo->shm.slot_bytes = static_cast<size_t>(i);
  } else if (key == "linger_ms") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 0, &wo->linger_ms));
  } else if (key == "insecure") {
    DATAFEED_RETURN_NOT_OK(ParseBool(key, value, &wo->grpc.insecure));
  } else if (key == "tls_cert") {
    wo->grpc.tls_cert = value;
  } else if (key == "tls_key") {
    wo->grpc.tls_key = value;
  } else if (key == "tls_ca") {
    wo->grpc.tls_ca = value;
  } else if (key == "auth_token_file") {
    wo->grpc.auth_token_file = value;
  } else if (key == "max_streams") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &i));
    wo->grpc.max_streams = static_cast<int>(std::min<int64_t>(i, 1 << 20));
  } else if (key == "max_streams_per_peer") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &i));
    wo->grpc.max_streams_per_peer = static_cast<int>(std::min<int64_t>(i, 1 << 20));
  } else if (key == "keepalive_ms") {
    DATAFEED_RETURN_NOT_OK(ParseInt(key, value, 1, &wo->grpc.keepalive_ms));
  } else if (key == "shm_name") {
    wo->shm_name = value;
  } else {
    return Status::InvalidArgument("unknown writer option '" + key + "'; known options: " + kKnownWriterOptions);
  }
  return Status::OK();
}

}  // namespace

extern "C" {

int df_layout_make(size_t num_tensors, const char* const* names, const int* dtypes, const size_t* ndims,
                   const int64_t* dims, df_layout** out, char* err, size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (out == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_layout_make: out is NULL", err, err_size);
    *out = nullptr;
    if (num_tensors > 0 && (names == nullptr || dtypes == nullptr || ndims == nullptr)) {
      return Fail(DF_INVALID_ARGUMENT, "df_layout_make: names, dtypes or ndims is NULL", err, err_size);
    }
    std::vector<datafeed::TensorSpec> specs;
    size_t at = 0;
    for (size_t i = 0; i < num_tensors; ++i) {
      if (names[i] == nullptr) {
        return Fail(DF_INVALID_ARGUMENT, "df_layout_make: name " + std::to_string(i) + " is NULL", err, err_size);
      }
      if (dtypes[i] < DF_UINT8 || dtypes[i] > DF_BOOL) {
        return Fail(DF_INVALID_ARGUMENT,
                    std::string("df_layout_make: tensor '") + names[i] + "' has unknown dtype code " +
                        std::to_string(dtypes[i]),
                    err, err_size);
      }
      if (ndims[i] > 0 && dims == nullptr) {
        return Fail(DF_INVALID_ARGUMENT, "df_layout_make: dims is NULL", err, err_size);
      }
      datafeed::TensorSpec t;
      t.name = names[i];
      t.dtype = static_cast<datafeed::DType>(dtypes[i]);
      t.shape.assign(dims + at, dims + at + ndims[i]);
      at += ndims[i];
      specs.push_back(std::move(t));
    }
    datafeed::Result<datafeed::BatchLayout> made = datafeed::BatchLayout::Make(std::move(specs));
    if (!made.ok()) return Report(made.status(), err, err_size);
    auto l = std::make_unique<df_layout>();
    l->layout = std::make_shared<const datafeed::BatchLayout>(std::move(made).value());
    *out = l.release();
    return DF_OK;
  });
}

uint64_t df_layout_frame_bytes(const df_layout* layout) {
  return layout == nullptr ? 0 : layout->layout->frame_bytes();
}

void df_layout_free(df_layout* layout) { delete layout; }

int df_writer_open(const char* endpoint, const char* transport, const char* const* option_keys,
                   const char* const* option_values, size_t num_options, df_writer** out, char* err,
                   size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (out == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_writer_open: out is NULL", err, err_size);
    *out = nullptr;
    if (num_options > 0 && (option_keys == nullptr || option_values == nullptr)) {
      return Fail(DF_INVALID_ARGUMENT, "df_writer_open: options are NULL", err, err_size);
    }
    datafeed::WriterOptions wo;
    for (size_t i = 0; i < num_options; ++i) {
      if (option_keys[i] == nullptr || option_values[i] == nullptr) {
        return Fail(DF_INVALID_ARGUMENT, "df_writer_open: option " + std::to_string(i) + " is NULL", err,
                    err_size);
      }
      Status st = ApplyWriterOption(option_keys[i], option_values[i], &wo);
      if (!st.ok()) return Report(st, err, err_size);
    }
    // $DATAFEED_TRANSPORT is the consumers' override: a writer serves where
    // it is told (as datafeed.serve() keeps it from the producer).
    std::string uri = endpoint != nullptr ? endpoint : "";
    if (uri.empty()) {
      const char* env = std::getenv("DATAFEED_ENDPOINT");
      uri = env != nullptr ? env : "";
    }
    if (uri.empty()) {
      return Fail(DF_INVALID_ARGUMENT,
                  "df_writer_open: no endpoint: pass one (shm://NAME, grpc://HOST:PORT, auto://HOST:PORT) or "
                  "set $DATAFEED_ENDPOINT",
                  err, err_size);
    }
    datafeed::Result<datafeed::Endpoint> ep = (transport != nullptr && transport[0] != '\0')
                                                  ? datafeed::ResolveEndpoint(uri, transport)
                                                  : datafeed::ParseEndpoint(uri);
    if (!ep.ok()) return Report(ep.status(), err, err_size);
    datafeed::Result<std::unique_ptr<datafeed::BatchWriter>> opened = datafeed::OpenWriter(*ep, wo);
    if (!opened.ok()) return Report(opened.status(), err, err_size);
    auto w = std::make_unique<df_writer>();
    w->writer = std::move(opened).value();
    w->endpoint = w->writer->endpoint();
    *out = w.release();
    return DF_OK;
  });
}

int df_writer_loan(df_writer* writer, const df_layout* layout, int64_t timeout_ms, df_loan** out, char* err,
                   size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (out == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_writer_loan: out is NULL", err, err_size);
    *out = nullptr;
    if (writer == nullptr || layout == nullptr) {
      return Fail(DF_INVALID_ARGUMENT, "df_writer_loan: writer or layout is NULL", err, err_size);
    }
    const datafeed::Deadline deadline =
        timeout_ms < 0 ? datafeed::Deadline::Infinite() : datafeed::Deadline::AfterMillis(timeout_ms);
    datafeed::Result<datafeed::WritableBatch> loaned = writer->writer->Loan(layout->layout, deadline);
    if (!loaned.ok()) return Report(loaned.status(), err, err_size);
    auto l = std::make_unique<df_loan>();
    l->batch = std::move(loaned).value();
    *out = l.release();
    return DF_OK;
  });
}

void* df_loan_data(df_loan* loan, size_t i) {
  if (loan == nullptr || !loan->batch.valid() || i >= loan->batch.layout().num_tensors()) return nullptr;
  return loan->batch.data(i);
}

uint64_t df_loan_nbytes(const df_loan* loan, size_t i) {
  if (loan == nullptr || !loan->batch.valid() || i >= loan->batch.layout().num_tensors()) return 0;
  return loan->batch.layout().nbytes(i);
}

int df_loan_set_meta(df_loan* loan, int field, uint64_t value, char* err, size_t err_size) {
  if (loan == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_loan_set_meta: loan is NULL", err, err_size);
  datafeed::BatchMeta& m = loan->batch.meta();
  switch (field) {
    case DF_META_FIRST_INDEX: m.first_index = value; return DF_OK;
    case DF_META_BATCH_INDEX: m.batch_index = value; return DF_OK;
    case DF_META_EPOCH:
      if (value > std::numeric_limits<uint32_t>::max()) {
        return Fail(DF_INVALID_ARGUMENT, "df_loan_set_meta: epoch " + std::to_string(value) + " is past 2^32 - 1",
                    err, err_size);
      }
      m.epoch = static_cast<uint32_t>(value);
      return DF_OK;
    default:
      return Fail(DF_INVALID_ARGUMENT,
                  "df_loan_set_meta: field " + std::to_string(field) +
                      " is not one a writer sets (DF_META_FIRST_INDEX, DF_META_EPOCH, DF_META_BATCH_INDEX)",
                  err, err_size);
  }
}

void df_loan_abandon(df_loan* loan) { delete loan; }

int df_writer_publish(df_writer* writer, df_loan* loan, char* err, size_t err_size) {
  std::unique_ptr<df_loan> owned(loan);
  return Guard(err, err_size, [&]() -> int {
    if (writer == nullptr || owned == nullptr) {
      return Fail(DF_INVALID_ARGUMENT, "df_writer_publish: writer or loan is NULL", err, err_size);
    }
    Status st = writer->writer->Publish(std::move(owned->batch));
    if (!st.ok()) return Report(st, err, err_size);
    return DF_OK;
  });
}

int df_writer_close(df_writer* writer, char* err, size_t err_size) {
  return Guard(err, err_size, [&]() -> int {
    if (writer == nullptr) return Fail(DF_INVALID_ARGUMENT, "df_writer_close: writer is NULL", err, err_size);
    Status st = writer->writer->Close();
    if (!st.ok()) return Report(st, err, err_size);
    return DF_OK;
  });
}

const char* df_writer_endpoint(const df_writer* writer) {
  return writer == nullptr ? "" : writer->endpoint.c_str();
}

void df_writer_free(df_writer* writer) {
  try {
    delete writer;
  } catch (...) {
  }
}

}  // extern "C"
