"""The library's log lines, into Python's ``logging``.

libdatafeed_c.so writes its lines (warnings about producers, the consumer's
stats line, ...) through one callback (df_set_log_callback). Once the
library is loaded they go to the ``datafeed`` logger at the matching level;
while neither that logger nor the root logger has a handler (logging never
configured), they go to stderr as before, so nothing is lost either way.
"""

import atexit
import ctypes
import logging
import sys
import threading

from . import _capi, errors

logger = logging.getLogger("datafeed")

# DF_LOG_* (datafeed_c.h) -> logging levels.
_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}

_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
# The C ABI's log functions, bound with the rest when the library loads.
_capi._PROTOTYPES.setdefault("df_set_log_callback", (None, [_LOG_FN, ctypes.c_void_p]))
_capi._PROTOTYPES.setdefault("df_set_log_level", (None, [ctypes.c_int]))
_lock = threading.Lock()
_handle = None  # the library the callback is installed in
_callback = None  # kept alive as long as the library may call it


def _on_line(level, line, _user):
    text = line.decode("utf-8", "replace") if line else ""
    try:
        if logger.hasHandlers():
            logger.log(_LEVELS.get(level, logging.ERROR), text)
        else:
            sys.stderr.write(text + "\n")
    except Exception:  # never raise into C++
        pass


def _attach(handle):
    global _handle, _callback
    with _lock:
        if _handle is handle:
            return
        _callback = _LOG_FN(_on_line)
        handle.df_set_log_callback(_callback, None)
        _handle = handle


def _detach():
    # At exit: C++ threads may still log while the interpreter goes away.
    with _lock:
        if _handle is not None:
            _handle.df_set_log_callback(_LOG_FN(), None)


def install():
    """Routes the library's lines to the ``datafeed`` logger from the moment
    the library is loaded (it is loaded on first use). Idempotent."""
    orig = _capi.lib
    if getattr(orig, "_datafeed_log", False):
        return

    def lib():
        handle = orig()
        if _handle is not handle:
            _attach(handle)
        return handle

    lib._datafeed_log = True
    lib.__doc__ = orig.__doc__
    _capi.lib = lib
    atexit.register(_detach)
    # A library loaded already (an import after first use) gets it now.
    if _capi._lib is not None:
        try:
            lib()
        except errors.LibraryError:
            pass
