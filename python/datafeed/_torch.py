"""torch, imported when a tensor is first asked for (never at import time).

Tensors are made with torch.frombuffer (PyTorch >= 1.10) over a ctypes
array at the batch's memory: the Python buffer protocol is the only
interface used, so no datafeed code is compiled against a torch version.
"""

import importlib
import threading
from typing import Any, Dict, Optional

_lock = threading.Lock()
_torch: Any = None
_dtypes: Dict[int, Any] = {}

# datafeed dtype code (datafeed_c.h) -> torch attribute name.
_DTYPE_NAMES = {
    1: "uint8",
    2: "int8",
    3: "int16",
    4: "int32",
    5: "int64",
    6: "float16",
    7: "bfloat16",
    8: "float32",
    9: "float64",
    10: "bool",
}

_INSTALL_HINT = (
    "datafeed turns batches into PyTorch tensors, but PyTorch ('torch') cannot be "
    "imported in this interpreter{why}. Install it (e.g. `pip install torch`, or "
    "`apt install python3-torch` for Debian's /usr/bin/python3) or run with the "
    "Python that has it."
)


def torch() -> Any:
    """The torch module; ImportError naming torch if it is not installed."""
    global _torch, _dtypes
    if _torch is not None:
        return _torch
    with _lock:
        if _torch is not None:
            return _torch
        try:
            # import_module, not `import torch`: torch stays Any to type
            # checkers, so checking datafeed does not analyse all of torch.
            t = importlib.import_module("torch")
        except ImportError as e:
            raise ImportError(_INSTALL_HINT.format(why=" (%s)" % e), name="torch") from e
        if not hasattr(t, "frombuffer"):
            raise ImportError(
                "datafeed needs torch.frombuffer (PyTorch >= 1.10); this is torch %s"
                % getattr(t, "__version__", "?"),
                name="torch",
            )
        _dtypes = {code: getattr(t, name) for code, name in _DTYPE_NAMES.items()}
        _torch = t
        return _torch


def dtype(code: int) -> Any:
    """The torch dtype of a datafeed dtype code."""
    torch()
    try:
        return _dtypes[code]
    except KeyError:
        from . import errors

        raise errors.DataLoss("unknown dtype code %d in a batch" % code) from None


def dtype_name(code: int) -> str:
    return _DTYPE_NAMES.get(code, "unknown")
