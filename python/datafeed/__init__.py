"""datafeed for PyTorch: training batches from datafeed producers as
zero-copy tensors.

    import datafeed
    loader = datafeed.Loader()               # $DATAFEED_ENDPOINT, e.g. shm://feed0
    for image, label in loader:              # float32 [B,1,28,28], int64 [B]
        ...
    loader.stats()                           # samples/s, data-wait fraction

    with datafeed.serve(dataset="data/mnist", threads=4) as producer:
        for image, label in datafeed.Loader(producer.endpoint):
            ...

The package is pure Python over a small C library (libdatafeed_c.so, next to
this file) loaded with ctypes; tensors are made with torch.frombuffer. It
imports without torch, which is needed only once a batch becomes tensors
(and for datafeed.IterableDataset).
"""

from typing import Any, List

from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    EndOfStream,
    Error,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    IoError,
    LibraryError,
    NotFound,
    ResourceExhausted,
    Timeout,
    Unavailable,
    Unimplemented,
)
from .finishing import finish
from .loader import Batch, Loader
from .serving import DEFAULT_PIPELINE, Producer, ProducerError, producer_path, serve
from .writer import Writer
from . import _log, metrics  # metrics: prometheus_client only when a collector is made

_log.install()  # the library's log lines go to the "datafeed" logger

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Batch",
    "Cancelled",
    "DEFAULT_PIPELINE",
    "DataLoss",
    "DeadlineExceeded",
    "EndOfStream",
    "Error",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "IoError",
    "IterableDataset",
    "LibraryError",
    "Loader",
    "NotFound",
    "Producer",
    "ProducerError",
    "ResourceExhausted",
    "Timeout",
    "Unavailable",
    "Unimplemented",
    "Writer",
    "finish",
    "library_version",
    "producer_path",
    "serve",
]


def library_version() -> str:
    """The version of the loaded libdatafeed_c.so (loads it)."""
    from . import _capi

    return str(_capi.lib().df_version().decode())


def __getattr__(name: str) -> Any:
    # IterableDataset subclasses a torch class: import torch only when it is
    # asked for (PEP 562), so `import datafeed` works without torch.
    if name == "IterableDataset":
        from .dataset import IterableDataset

        globals()["IterableDataset"] = IterableDataset
        return IterableDataset
    raise AttributeError("module 'datafeed' has no attribute %r" % name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | {"IterableDataset"})
