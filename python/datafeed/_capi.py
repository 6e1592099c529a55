"""ctypes bindings of libdatafeed_c.so (python/capi/datafeed_c.h).

The library is loaded on first use, not at import, so ``import datafeed``
works (and serve() can start a producer) even where the library cannot be
loaded; the error then says which file failed and why.
"""

import ctypes
import os
import threading
from typing import Any, Callable, List, NoReturn, Optional

from . import errors

ABI_VERSION = 1

# Status codes (datafeed_c.h); never renumbered.
OK = 0
TIMEOUT = 5
END_OF_STREAM = 8
CANCELLED = 9

# Statistics, in df_consumer_stats order.
STAT_NAMES = (
    "batches",
    "samples",
    "bytes",
    "elapsed_s",
    "wait_s",
    "samples_per_s",
    "batches_per_s",
    "wait_fraction",
    "dropped",
)

META_NAMES = (
    "sequence",
    "first_index",
    "producer_id",
    "epoch",
    "batch_index",
    "fingerprint",
    "shard",
    "attempt",
)

ERR_SIZE = 2048

_lock = threading.Lock()
_lib: Any = None
# Called with the library once it is loaded (under _lock): _log installs
# its callback there.
ON_LOAD: List[Callable[[Any], None]] = []
# df_set_log_callback's callback type: (level, line, user).
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_c_int64_p = ctypes.POINTER(ctypes.c_int64)
_c_char_p_p = ctypes.POINTER(ctypes.c_char_p)

# name: (restype, argtypes)
# df_consumer_open and df_writer_open: (endpoint, transport, option keys,
# option values, option count, out handle, err, err size) -> status.
_OPEN = (
    ctypes.c_int,
    [
        ctypes.c_char_p,
        ctypes.c_char_p,
        _c_char_p_p,
        _c_char_p_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_char_p,
        ctypes.c_size_t,
    ],
)

_PROTOTYPES = {
    "df_abi_version": (ctypes.c_int, []),
    "df_version": (ctypes.c_char_p, []),
    "df_status_name": (ctypes.c_char_p, [ctypes.c_int]),
    "df_dtype_name": (ctypes.c_char_p, [ctypes.c_int]),
    "df_dtype_size": (ctypes.c_size_t, [ctypes.c_int]),
    "df_consumer_open": _OPEN,
    "df_consumer_next": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "df_consumer_stop": (None, [ctypes.c_void_p]),
    "df_consumer_close": (None, [ctypes.c_void_p]),
    "df_consumer_stats": (
        ctypes.c_size_t,
        [ctypes.c_void_p, ctypes.POINTER(ctypes.c_double), ctypes.c_size_t],
    ),
    "df_consumer_endpoint": (ctypes.c_char_p, [ctypes.c_void_p]),
    "df_consumer_transport": (ctypes.c_char_p, [ctypes.c_void_p]),
    "df_batch_num_tensors": (ctypes.c_size_t, [ctypes.c_void_p]),
    "df_batch_tensor_name": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_batch_tensor_dtype": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_batch_tensor_ndim": (ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_batch_tensor_shape": (_c_int64_p, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_batch_tensor_data": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_batch_tensor_nbytes": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_batch_meta": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_int]),
    "df_batch_release": (None, [ctypes.c_void_p]),
    "df_consumer_state": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "df_consumer_peek": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_uint64),
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "df_batch_tensor_finish": (ctypes.c_char_p, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_finish_apply": (
        ctypes.c_int,
        [
            ctypes.c_char_p,
            ctypes.c_void_p,
            _c_int64_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "df_finish_tables": (
        ctypes.c_int,
        [
            ctypes.c_char_p,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "df_consumer_batches_per_epoch": (ctypes.c_uint64, [ctypes.c_void_p]),
    # The writer (datafeed_c_writer.cc).
    "df_layout_make": (
        ctypes.c_int,
        [
            ctypes.c_size_t,
            _c_char_p_p,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_size_t),
            _c_int64_p,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "df_layout_frame_bytes": (ctypes.c_uint64, [ctypes.c_void_p]),
    "df_layout_free": (None, [ctypes.c_void_p]),
    "df_writer_open": _OPEN,
    "df_writer_loan": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "df_loan_data": (ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_loan_nbytes": (ctypes.c_uint64, [ctypes.c_void_p, ctypes.c_size_t]),
    "df_loan_set_meta": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "df_loan_abandon": (None, [ctypes.c_void_p]),
    "df_writer_publish": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t],
    ),
    "df_writer_close": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]),
    "df_writer_endpoint": (ctypes.c_char_p, [ctypes.c_void_p]),
    "df_writer_free": (None, [ctypes.c_void_p]),
    "df_set_log_callback": (None, [LOG_FN, ctypes.c_void_p]),
    "df_set_log_level": (None, [ctypes.c_int]),
}


def library_path() -> str:
    """The libdatafeed_c.so this package loads: $DATAFEED_LIBRARY, else the
    one next to this file."""
    override = os.environ.get("DATAFEED_LIBRARY")
    if override:
        return override
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "libdatafeed_c.so")


def lib() -> Any:
    """The loaded library, with prototypes set. Raises datafeed.LibraryError."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = library_path()
        if not os.path.exists(path):
            raise errors.LibraryError(
                "datafeed: %s is missing; build it (cmake --build build --target "
                "datafeed_python) and put build/python on PYTHONPATH, or pip install "
                "build/python" % path
            )
        try:
            handle = ctypes.CDLL(path)
        except OSError as e:
            raise errors.LibraryError(
                "datafeed: cannot load %s: %s (a shared library it needs is missing; "
                "`ldd %s` lists them)" % (path, e, path)
            ) from e
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                fn = getattr(handle, name)
            except AttributeError as e:
                raise errors.LibraryError(
                    "datafeed: %s lacks %s; it is older than this package" % (path, name)
                ) from e
            fn.restype = restype
            fn.argtypes = argtypes
        abi = handle.df_abi_version()
        if abi != ABI_VERSION:
            raise errors.LibraryError(
                "datafeed: %s has C ABI version %d, this package needs %d"
                % (path, abi, ABI_VERSION)
            )
        for hook in ON_LOAD:
            hook(handle)
        _lib = handle
        return _lib


def status_name(code: int) -> str:
    return str(lib().df_status_name(code).decode())


def raise_for(code: int, err: Any, context: Optional[str] = None) -> NoReturn:
    """Raises the datafeed.Error subclass for a status code with the
    library's message in `err` (a ctypes string buffer)."""
    message = err.value.decode("utf-8", "replace") if err is not None else ""
    if not message:
        message = status_name(code)
    if context:
        message = "%s: %s" % (context, message)
    raise errors.from_code(code, message)
