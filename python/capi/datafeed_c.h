/* datafeed C ABI: a consumer of datafeed batches for any language with a C
 * foreign-function interface. The Python package (python/datafeed) uses it
 * through ctypes, so one built libdatafeed_c.so serves every CPython >= 3.8
 * and every PyTorch version: nothing here knows about Python or torch.
 *
 *   df_consumer* c = NULL;
 *   char err[512];
 *   const char* keys[] = {"prefetch"}, *vals[] = {"2"};
 *   if (df_consumer_open("shm://feed0", NULL, keys, vals, 1, &c, err, sizeof err) != DF_OK) {
 *     fprintf(stderr, "%s\n", err);
 *   }
 *   for (;;) {
 *     df_batch* b = NULL;
 *     int rc = df_consumer_next(c, 5000, &b, err, sizeof err);
 *     if (rc == DF_END_OF_STREAM) break;
 *     if (rc != DF_OK) { fprintf(stderr, "%s: %s\n", df_status_name(rc), err); break; }
 *     for (size_t i = 0; i < df_batch_num_tensors(b); ++i) {
 *       ... df_batch_tensor_name(b, i), df_batch_tensor_data(b, i) ...
 *     }
 *     df_batch_release(b);   // the shared-memory slot goes back to the producer
 *   }
 *   df_consumer_close(c);
 *
 * Stability. Only functions are exported (no structs cross the boundary):
 * functions are added, never changed or removed, while DF_ABI_VERSION stays
 * 1. Options are key/value strings, so new options need no new symbols.
 * Status and dtype codes are fixed numbers and are never renumbered.
 *
 * Errors. Fallible functions return a status code (DF_OK = 0) and, when
 * `err` is not NULL, write the library's message into err[0, err_size) (NUL
 * terminated, truncated if needed). No C++ exception crosses this boundary.
 *
 * Ownership. df_consumer_open() and df_consumer_next() hand out objects the
 * caller must give back with df_consumer_close() / df_batch_release().
 * A batch's memory stays valid until its df_batch_release(), even after its
 * consumer was closed.
 *
 * Thread safety. A df_consumer may be used from several threads:
 * df_consumer_next() (each batch goes to exactly one caller),
 * df_consumer_stats(), df_consumer_stop() and the accessors may run at once.
 * df_consumer_close() must not run concurrently with any other call on the
 * same consumer (call df_consumer_stop() first to wake a blocked
 * df_consumer_next(), wait for it to return, then close). A df_batch is
 * immutable: its accessors may be called from any thread, and
 * df_batch_release() may be called from any thread, once per batch.
 */
#ifndef DATAFEED_C_H_
#define DATAFEED_C_H_

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define DF_API __attribute__((visibility("default")))
#else
#define DF_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define DF_ABI_VERSION 1

typedef struct df_consumer df_consumer;
typedef struct df_batch df_batch;

/* Status codes. */
enum {
  DF_OK = 0,
  DF_INVALID_ARGUMENT = 1,     /* a bad endpoint, option or argument */
  DF_NOT_FOUND = 2,            /* no producer at the endpoint (in time) */
  DF_ALREADY_EXISTS = 3,
  DF_RESOURCE_EXHAUSTED = 4,   /* out of memory, frame too large */
  DF_TIMEOUT = 5,              /* no batch within the timeout; the stream goes on */
  DF_UNAVAILABLE = 6,          /* the producer died or cannot be reached */
  DF_DATA_LOSS = 7,            /* a malformed frame */
  DF_END_OF_STREAM = 8,        /* the producer closed the stream; all batches taken */
  DF_CANCELLED = 9,            /* df_consumer_stop() was called */
  DF_FAILED_PRECONDITION = 10,
  DF_UNIMPLEMENTED = 11,
  DF_IO_ERROR = 12,
  DF_INTERNAL = 13,            /* a bug in datafeed */
  DF_ABORTED = 14              /* the producer ended this consumer's session: it lost
                                  a lease on a batch its trainer held (restore the
                                  last checkpoint), or another session took over */
};

/* Tensor dtypes: the values of the batch frame's dtype field. */
enum {
  DF_UINT8 = 1,
  DF_INT8 = 2,
  DF_INT16 = 3,
  DF_INT32 = 4,
  DF_INT64 = 5,
  DF_FLOAT16 = 6,
  DF_BFLOAT16 = 7,
  DF_FLOAT32 = 8,
  DF_FLOAT64 = 9,
  DF_BOOL = 10
};

/* Batch metadata fields (df_batch_meta). */
enum {
  DF_META_SEQUENCE = 0,    /* 0-based per producer */
  DF_META_FIRST_INDEX = 1, /* dataset index of the first sample */
  DF_META_PRODUCER_ID = 2,
  DF_META_EPOCH = 3,
  DF_META_BATCH_INDEX = 4, /* the batch's index in its epoch (its identity, with the next two) */
  DF_META_FINGERPRINT = 5, /* the run */
  DF_META_SHARD = 6,
  DF_META_ATTEMPT = 7,     /* 0 the first time; > 0 when made again (a lease was lost) */
  DF_META_COUNT = 8
};

/* Statistics, in the order df_consumer_stats() writes them. */
enum {
  DF_STAT_BATCHES = 0,
  DF_STAT_SAMPLES = 1,        /* sum of dimension 0 of each batch's first tensor */
  DF_STAT_BYTES = 2,          /* frame bytes */
  DF_STAT_ELAPSED_S = 3,      /* since the first df_consumer_next() */
  DF_STAT_WAIT_S = 4,         /* time spent inside df_consumer_next() */
  DF_STAT_SAMPLES_PER_S = 5,
  DF_STAT_BATCHES_PER_S = 6,
  DF_STAT_WAIT_FRACTION = 7,  /* wait_s / elapsed_s */
  DF_STAT_DROPPED = 8,        /* read-ahead batches whose lease the producer took back */
  DF_STAT_COUNT = 9
};

/* DF_ABI_VERSION of the library. */
DF_API int df_abi_version(void);
/* The datafeed version, e.g. "0.1.0". Static storage. */
DF_API const char* df_version(void);
/* "OK", "InvalidArgument", "DeadlineExceeded", "EndOfStream", ... for a
 * status code; "Unknown" otherwise. Static storage. */
DF_API const char* df_status_name(int code);
/* "float32", "int64", ... for a dtype code; "unknown" otherwise. */
DF_API const char* df_dtype_name(int dtype);
/* Bytes per element of a dtype code; 0 for an unknown code. */
DF_API size_t df_dtype_size(int dtype);

/* Opens a consumer of `endpoint` ("shm://NAME", "grpc://HOST:PORT",
 * "auto://HOST:PORT"; NULL or "" means $DATAFEED_ENDPOINT). `transport`
 * ("shm", "grpc", "auto"; NULL or "" means $DATAFEED_TRANSPORT) overrides
 * the endpoint's scheme. Options are num_options key/value strings:
 *
 *   prefetch              batches read ahead on a background thread (1; 0: none)
 *   connect_timeout_ms    wait this long for the producer to appear (0)
 *   poll_ms               granularity of df_consumer_next's timeout (200);
 *                         keep it above liveness_check_ms (see below)
 *   spin_us               shm: always poll this long before sleeping (0: see
 *                         adaptive_spin)
 *   adaptive_spin         shm: "1" (default): poll up to 50 us while batches
 *                         arrive close together and a CPU is free; "0": sleep
 *                         at once
 *   liveness_check_ms     how often a blocked reader checks the producer (100)
 *   log_every_s, log_name a stats line on stderr every so often (0: never)
 *   grpc_prefetch         gRPC frames received ahead (1)
 *   grpc_streams          gRPC streams (TCP connections, delivery sessions)
 *                         to each producer (1; up to 64); for a link one TCP
 *                         stream cannot fill. Ignored where auto:// picks
 *                         shared memory
 *   reconnect             "1": reconnect to a restarted gRPC producer (0)
 *   reconnect_timeout_ms  for how long (30000)
 *   tls_ca, tls_cert, tls_key, tls_server_name   gRPC TLS (PEM file paths)
 *   compression           gRPC: "gzip" or "" (none)
 *   auth_token_file       gRPC: send the bearer token in this file
 *   keepalive_ms          gRPC keepalive ping interval (1000)
 *   max_frame_bytes       gRPC: largest frame accepted (0: 1 GiB)
 *   restore               a checkpoint to restore: df_consumer_state()'s JSON,
 *                         or a JSON list of every rank's state (a group restore)
 *   rank, world_size      group restore: this consumer's place in the new group
 *   generation            group restore: which restart of the checkpoint (0)
 *   consumer_id           continue this consumer id (hex "0x.." or decimal)
 *   shm_owner_uid         shared memory: the uid that must own the segment
 *
 * An unknown key or a bad value is DF_INVALID_ARGUMENT naming it. On
 * success *out owns the consumer (df_consumer_close). Blocks up to
 * connect_timeout_ms. */
DF_API int df_consumer_open(const char* endpoint, const char* transport,
                            const char* const* option_keys,
                            const char* const* option_values, size_t num_options,
                            df_consumer** out, char* err, size_t err_size);

/* The next batch. Waits up to timeout_ms (< 0: forever; honoured to within
 * the poll_ms option). DF_OK: *out is a batch the caller owns
 * (df_batch_release). DF_TIMEOUT: no batch in time, the stream goes on.
 * DF_END_OF_STREAM: the producer closed the stream and every batch was
 * taken. DF_CANCELLED after df_consumer_stop(). Any other code ends the
 * stream (DF_UNAVAILABLE: the producer died), and every later call returns
 * it again. *out is NULL unless DF_OK. */
DF_API int df_consumer_next(df_consumer* consumer, int64_t timeout_ms, df_batch** out,
                            char* err, size_t err_size);

/* Wakes every df_consumer_next() with DF_CANCELLED and gives back
 * prefetched batches. Idempotent; safe from any thread at any time before
 * df_consumer_close(). */
DF_API void df_consumer_stop(df_consumer* consumer);

/* Stops and destroys the consumer. NULL is ignored. Batches already
 * returned stay valid until released. See "Thread safety" above. */
DF_API void df_consumer_close(df_consumer* consumer);

/* Writes min(n, DF_STAT_COUNT) statistics (DF_STAT_* order) into out and
 * returns how many it wrote. */
DF_API size_t df_consumer_stats(const df_consumer* consumer, double* out, size_t n);

/* The endpoint URI the consumer opened. Valid until df_consumer_close. */
DF_API const char* df_consumer_endpoint(const df_consumer* consumer);
/* The transport batches arrive on: "shm" or "grpc" (for auto://, what the
 * handshake chose). Static storage. */
DF_API const char* df_consumer_transport(const df_consumer* consumer);

/* The delivery contract (transport/include/datafeed/transport/delivery.h):
 * the consumer's checkpointable position as JSON (NUL-terminated) in
 * buf[0, size). *needed (when not NULL) gets the bytes required, NUL
 * included; DF_RESOURCE_EXHAUSTED when size is smaller. The JSON is empty
 * ('{"version":1,"streams":[]}') for a producer without a run. Restore it
 * with the "restore" option of df_consumer_open. */
DF_API int df_consumer_state(const df_consumer* consumer, char* buf, size_t size, size_t* needed,
                             char* err, size_t err_size);

/* The metadata (DF_META_COUNT values, DF_META_* order) of the batch the
 * next df_consumer_next() will return, waiting up to timeout_ms like it,
 * without handing it out (it stays leased to this consumer, not held by
 * the trainer). Acknowledges what was handed out before. Same codes as
 * df_consumer_next. Needs prefetch > 0. */
DF_API int df_consumer_peek(df_consumer* consumer, int64_t timeout_ms, uint64_t* meta, size_t n,
                            char* err, size_t err_size);

/* Tensors of a batch, in frame order. Every accessor is valid for
 * i < df_batch_num_tensors(); pointers stay valid until df_batch_release. */
DF_API size_t df_batch_num_tensors(const df_batch* batch);
/* NUL-terminated name. */
DF_API const char* df_batch_tensor_name(const df_batch* batch, size_t i);
/* A DF_UINT8 ... DF_BOOL code. */
DF_API int df_batch_tensor_dtype(const df_batch* batch, size_t i);
DF_API size_t df_batch_tensor_ndim(const df_batch* batch, size_t i);
/* ndim dimensions (NULL when ndim is 0). */
DF_API const int64_t* df_batch_tensor_shape(const df_batch* batch, size_t i);
/* The payload: contiguous, row-major, 64-byte aligned, nbytes long. The
 * memory belongs to this consumer alone until released, so writing to it
 * is allowed (no other process reads it). */
DF_API void* df_batch_tensor_data(const df_batch* batch, size_t i);
DF_API uint64_t df_batch_tensor_nbytes(const df_batch* batch, size_t i);
/* A DF_META_* field; 0 for an unknown field. */
DF_API uint64_t df_batch_meta(const df_batch* batch, int field);

/* The finish of a split pipeline recorded for tensor i, NUL-terminated:
 * "" when the tensor is final as sent; otherwise the tensor is DF_UINT8
 * [..., C, H, W] and the consumer turns it into float32 of the same shape
 * with this spec, e.g. "to_tensor,normalize(0.1307,0.3081)" (see
 * df_finish_apply / df_finish_tables). Already validated by the library. */
DF_API const char* df_batch_tensor_finish(const df_batch* batch, size_t i);

/* Finishes a uint8 tensor of shape[0, ndim) ([..., C, H, W], contiguous)
 * at `in` into out_floats float32 values at `out` with finish `spec`: the
 * same table lookup the producer uses, so the values are identical to an
 * unsplit pipeline's. DF_INVALID_ARGUMENT for a bad spec, shape or size. */
DF_API int df_finish_apply(const char* spec, const uint8_t* in, const int64_t* shape, size_t ndim,
                           float* out, size_t out_floats, char* err, size_t err_size);

/* The finish `spec` as value tables, for finishing elsewhere (a GPU):
 * writes channels x 256 floats, out[c * 256 + v] = finished value of v in
 * channel c. n must be >= channels * 256. */
DF_API int df_finish_tables(const char* spec, int64_t channels, float* out, size_t n, char* err,
                            size_t err_size);

/* Gives the batch's memory back to the transport (on shared memory: its
 * ring slot, to the producer). NULL is ignored. */
DF_API void df_batch_release(df_batch* batch);

/* Batches per epoch of the producer's run, as its handshake said (its
 * shard's; the sum for an endpoint of several producers); 0 when unknown: a
 * producer without a run (e.g. a datafeed.Writer), or not yet known.
 * Consumers that share one producer's stream each get a part of it. */
DF_API uint64_t df_consumer_batches_per_epoch(const df_consumer* consumer);

/* ---- Writer: publish batches (datafeed_c_writer.cc) -----------------------
 *
 *   df_layout* l = NULL; df_writer* w = NULL; df_loan* b = NULL;
 *   const char* names[] = {"image", "label"};
 *   int dtypes[] = {DF_FLOAT32, DF_INT64};
 *   size_t ndims[] = {4, 1};
 *   int64_t dims[] = {B, 1, 28, 28,  B};          (every tensor's, in order)
 *   df_layout_make(2, names, dtypes, ndims, dims, &l, err, sizeof err);
 *   df_writer_open("auto://0.0.0.0:5000", NULL, keys, vals, n, &w, err, sizeof err);
 *   df_writer_loan(w, l, -1, &b, err, sizeof err);  (blocks while the transport is full)
 *   memcpy(df_loan_data(b, 0), images, df_loan_nbytes(b, 0)); ...
 *   df_loan_set_meta(b, DF_META_EPOCH, 0);
 *   df_writer_publish(w, b, err, sizeof err);       (consumes b, also on failure)
 *   df_writer_close(w, err, sizeof err);            (ends the stream)
 *   df_writer_free(w); df_layout_free(l);
 *
 * The writer is a plain one (no run): each batch goes to exactly one
 * consumer, at most once; it keeps no leases and makes nothing again.
 * Thread safety: a writer may loan and publish from several threads; a
 * loan is filled by one thread; a layout is immutable. */
typedef struct df_writer df_writer;
typedef struct df_layout df_layout;
typedef struct df_loan df_loan;

/* A batch layout: num_tensors tensors with unique names, DF_* dtypes and
 * shapes (ndims[i] dimensions each, concatenated in dims). *out is the
 * caller's (df_layout_free). DF_INVALID_ARGUMENT naming a bad tensor. */
DF_API int df_layout_make(size_t num_tensors, const char* const* names, const int* dtypes,
                          const size_t* ndims, const int64_t* dims, df_layout** out, char* err,
                          size_t err_size);
/* Bytes of one frame of the layout (header and alignment included). */
DF_API uint64_t df_layout_frame_bytes(const df_layout* layout);
/* NULL is ignored. Loans made with it keep what they need. */
DF_API void df_layout_free(df_layout* layout);

/* Opens the producer side of `endpoint` ("shm://NAME", "grpc://HOST:PORT",
 * "auto://HOST:PORT"; NULL or "" means $DATAFEED_ENDPOINT); `transport`
 * ("shm", "grpc", "auto") overrides the scheme as for consumers, but
 * $DATAFEED_TRANSPORT is not read (it is the consumers' override).
 * Options (key/value strings):
 *
 *   slot_count, slot_bytes   the shared-memory ring (4; 25821184)
 *   linger_ms                at df_writer_free, wait this long for consumers
 *                            to take what was published (0)
 *   insecure                 "1": serve plaintext gRPC on an address other
 *                            than loopback (refused otherwise)
 *   tls_cert, tls_key, tls_ca, auth_token_file   as the producer's flags
 *   max_streams, max_streams_per_peer, keepalive_ms
 *   shm_name                 grpc/auto: the ring behind the endpoint
 *
 * An unknown key or a bad value is DF_INVALID_ARGUMENT naming it. */
DF_API int df_writer_open(const char* endpoint, const char* transport,
                          const char* const* option_keys, const char* const* option_values,
                          size_t num_options, df_writer** out, char* err, size_t err_size);
/* Loans memory for one frame of `layout`, waiting up to timeout_ms (< 0:
 * forever) while the transport is full (DF_TIMEOUT). DF_RESOURCE_EXHAUSTED
 * when a frame of this layout can never fit (a larger slot_bytes). *out is
 * the caller's: df_writer_publish it or df_loan_abandon it. */
DF_API int df_writer_loan(df_writer* writer, const df_layout* layout, int64_t timeout_ms,
                          df_loan** out, char* err, size_t err_size);
/* Payload of tensor i of the loan (df_layout order), 64-byte aligned,
 * df_loan_nbytes long; NULL / 0 for a bad i. */
DF_API void* df_loan_data(df_loan* loan, size_t i);
DF_API uint64_t df_loan_nbytes(const df_loan* loan, size_t i);
/* Sets DF_META_FIRST_INDEX, DF_META_EPOCH or DF_META_BATCH_INDEX of the
 * batch; DF_INVALID_ARGUMENT for another field (the transport stamps the
 * rest) or an epoch past 2^32 - 1. */
DF_API int df_loan_set_meta(df_loan* loan, int field, uint64_t value, char* err, size_t err_size);
/* Gives an unpublished loan back. NULL is ignored. */
DF_API void df_loan_abandon(df_loan* loan);
/* Publishes the loan to exactly one consumer and frees it (on failure too). */
DF_API int df_writer_publish(df_writer* writer, df_loan* loan, char* err, size_t err_size);
/* Ends the stream: consumers get what was published, then DF_END_OF_STREAM.
 * Idempotent. */
DF_API int df_writer_close(df_writer* writer, char* err, size_t err_size);
/* The endpoint consumers should open. Valid until df_writer_free. */
DF_API const char* df_writer_endpoint(const df_writer* writer);
/* Closes (see linger_ms) and destroys the writer. Loans must be published
 * or abandoned first. NULL is ignored. */
DF_API void df_writer_free(df_writer* writer);
/* The library's log (datafeed/transport/log.h). Levels: */
#define DF_LOG_DEBUG 0
#define DF_LOG_INFO 1
#define DF_LOG_WARNING 2
#define DF_LOG_ERROR 3
#define DF_LOG_OFF 4
/* Receives one line (NUL-terminated, no newline, valid during the call) at
 * a DF_LOG_* level, from whichever thread wrote it; never two calls at once. */
typedef void (*df_log_fn)(int level, const char* line, void* user);
/* Sends the library's log lines to fn(level, line, user) instead of stderr;
 * fn NULL restores stderr. Lines below the level (df_set_log_level,
 * default info or $DATAFEED_LOG_LEVEL) are not sent. */
DF_API void df_set_log_callback(df_log_fn fn, void* user);
/* Lines at or above `level` (DF_LOG_*) are written; out of range: ignored. */
DF_API void df_set_log_level(int level);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* DATAFEED_C_H_ */
