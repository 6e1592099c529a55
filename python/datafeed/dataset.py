"""datafeed.IterableDataset: a datafeed stream as a torch IterableDataset.

Imported on first access of ``datafeed.IterableDataset`` (it subclasses a
torch class, and ``import datafeed`` must not need torch).
"""

import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional

from . import _torch
from .loader import Loader

if TYPE_CHECKING:  # torch's types are not needed to check datafeed's
    _IterableDatasetBase = object
else:
    _IterableDatasetBase = _torch.torch().utils.data.IterableDataset


class IterableDataset(_IterableDatasetBase):
    """Batches from a datafeed producer, for ``torch.utils.data.DataLoader``::

        ds = datafeed.IterableDataset("shm://feed0")
        loader = torch.utils.data.DataLoader(ds, batch_size=None)   # num_workers=0
        for epoch in range(epochs):
            for image, label in loader:
                ...

    Each item is already a whole batch (a datafeed Batch: unpacks as
    ``(image, label)``, indexes as ``batch["image"]``), hence
    ``batch_size=None``. Each pass over the DataLoader is one epoch of the
    producer (see Loader's split_epochs). ``pin_memory=True`` works (it
    copies each batch into pinned memory for faster GPU transfers).

    Use ``num_workers=0``. The work DataLoader workers exist for --
    decoding and augmenting samples -- already happened in the producer's
    C++ threads; what is left per batch is a few library calls and no
    copy, and the library reads ahead on its own thread without the GIL.
    Worker processes would only add a fork and a copy of every batch
    through a pipe. (They still work: each worker opens its own consumer,
    and the producer gives every batch to exactly one of them.)

    Arguments are Loader's. The Loader is opened on the first iteration (in
    the process that iterates) and kept for the next epochs; ``stats()``
    and ``close()`` reach it.
    """

    def __init__(
        self, endpoint: Optional[str] = None, transport: Optional[str] = None, prefetch: int = 2, **loader_kwargs: Any
    ) -> None:
        super().__init__()
        self._args = dict(endpoint=endpoint, transport=transport, prefetch=prefetch, **loader_kwargs)
        self._loader: Optional[Loader] = None

    @property
    def loader(self) -> Loader:
        """The Loader, opened on first use."""
        # A DataLoader worker forked after this process iterated holds the
        # parent's Loader: it opens its own (the parent's connection is not
        # usable there).
        if self._loader is None or self._loader._pid != os.getpid():
            self._loader = Loader(**self._args)
        return self._loader

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)

    def __len__(self) -> int:
        """len(Loader): the batches of one epoch (opens the Loader), so
        len(DataLoader(ds, batch_size=None)) works too."""
        return len(self.loader)

    def __bool__(self) -> bool:
        return True

    def stats(self) -> Dict[str, Any]:
        return self._loader.stats() if self._loader is not None else {}

    def close(self) -> None:
        if self._loader is not None:
            self._loader.close()

    def __getstate__(self) -> Dict[str, Any]:
        # Worker processes open their own consumer.
        state = self.__dict__.copy()
        state["_loader"] = None
        return state

    def __enter__(self) -> "IterableDataset":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
