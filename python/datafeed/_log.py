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
from typing import Any, Optional

from . import _capi

logger = logging.getLogger("datafeed")

# DF_LOG_* (datafeed_c.h) -> logging levels.
_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}

_lock = threading.Lock()
_handle: Any = None  # the library the callback is installed in
_callback: Optional[Any] = None  # kept alive as long as the library may call it
_installed = False


def _on_line(level: int, line: Optional[bytes], _user: Any) -> None:
    text = line.decode("utf-8", "replace") if line else ""
    try:
        if logger.hasHandlers():
            logger.log(_LEVELS.get(level, logging.ERROR), text)
        else:
            sys.stderr.write(text + "\n")
    except Exception:  # never raise into C++
        pass


def _attach(handle: Any) -> None:
    global _handle, _callback
    with _lock:
        if _handle is handle:
            return
        _callback = _capi.LOG_FN(_on_line)
        handle.df_set_log_callback(_callback, None)
        _handle = handle


def _detach() -> None:
    # At exit: C++ threads may still log while the interpreter goes away.
    with _lock:
        if _handle is not None:
            _handle.df_set_log_callback(ctypes.cast(0, _capi.LOG_FN), None)


def install() -> None:
    """Routes the library's lines to the ``datafeed`` logger from the moment
    the library is loaded (it is loaded on first use). Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    _capi.ON_LOAD.append(_attach)
    atexit.register(_detach)
    # A library loaded already (an import after first use) gets it now.
    if _capi._lib is not None:
        _attach(_capi._lib)
