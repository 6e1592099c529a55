"""Loader: iterate over a datafeed stream as zero-copy PyTorch tensors."""

import ctypes
import json
import os
import threading
import time
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

from . import _capi, _torch, errors, finishing

# How long one call into the library may block. Between calls Python runs
# its signal handlers, so Ctrl-C interrupts a Loader waiting for data
# within this long.
_SLICE_S = 0.2
# Opening a consumer is retried in slices of this length while no producer
# is there yet (for the same reason).
_CONNECT_SLICE_S = 0.5
# A wait this long while the trainer holds earlier batches gets a warning
# (the usual cause: a list of tensors that keeps every ring slot).
_HELD_WARNING_S = 10.0


class Batch(Tuple[Any, ...]):
    """One batch: its named tensors, in the order the producer wrote them.

    A Batch is a tuple of tensors with names, like a namedtuple, so both
    common forms work::

        for image, label in loader:          # unpacks in frame order
        for batch in loader:
            image = batch["image"]           # by name (or batch.image, batch[0])

    It also has the read-only dict interface -- ``keys()``, ``values()``,
    ``items()``, ``get()``, ``"image" in batch``, ``dict(batch)``,
    ``{**batch}`` -- but iterating it yields tensors, not names (that is
    what makes the unpacking work). ``to_dict()`` returns a plain dict.

    It is a namedtuple to PyTorch too: DataLoader's default_convert and
    pin_memory rebuild it with its names (``_fields``). ``meta`` holds the
    batch's metadata (sequence, first_index, producer_id, epoch), or None
    on a Batch rebuilt that way.

    The tensors point into transport memory (a shared-memory slot); the slot
    goes back to the producer when the last tensor of the batch (including
    views and slices of it) is freed. Keep one longer with ``.clone()``.
    """

    _fields: Tuple[str, ...] = ()
    _index: Dict[str, int] = {}
    meta: Optional[Dict[str, int]] = None
    # {name: finish spec} of tensors handed out uint8 because the Loader was
    # made with finish=False (see datafeed.finish); empty otherwise.
    finishes: Dict[str, str] = {}

    def __new__(cls, *tensors: Any) -> "Batch":
        if len(tensors) != len(cls._fields):
            raise TypeError(
                "Batch(%s) takes %d tensors, got %d"
                % (", ".join(cls._fields), len(cls._fields), len(tensors))
            )
        return tuple.__new__(cls, tensors)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._index[key])
            except KeyError:
                raise KeyError(
                    "no tensor %r in this batch; it has %s" % (key, ", ".join(self._fields))
                ) from None
        return tuple.__getitem__(self, key)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, so methods win over names.
        index = type(self)._index.get(name)
        if index is None:
            raise AttributeError("%s has no attribute or tensor %r" % (type(self).__name__, name))
        return tuple.__getitem__(self, index)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return key in self._index
        return any(t is key for t in tuple.__iter__(self))

    def keys(self) -> List[str]:
        return list(self._fields)

    def values(self) -> List[Any]:
        return list(tuple.__iter__(self))

    def items(self) -> List[Tuple[str, Any]]:
        return list(zip(self._fields, tuple.__iter__(self)))

    def get(self, key: str, default: Any = None) -> Any:
        index = self._index.get(key)
        return default if index is None else tuple.__getitem__(self, index)

    def to_dict(self) -> Dict[str, Any]:
        return dict(zip(self._fields, tuple.__iter__(self)))

    _asdict = to_dict

    def __reduce__(self) -> Tuple[Any, Tuple[Tuple[str, ...], Tuple[Any, ...]]]:
        return (_rebuild_batch, (self._fields, tuple(self)))

    def __repr__(self) -> str:
        parts = []
        for name, t in zip(self._fields, tuple.__iter__(self)):
            dtype = str(getattr(t, "dtype", type(t).__name__)).replace("torch.", "")
            shape = list(getattr(t, "shape", ()))
            parts.append("%s=%s%s" % (name, dtype, shape))
        return "Batch(%s)" % ", ".join(parts)


_batch_classes: Dict[Tuple[str, ...], Type[Batch]] = {}
_batch_classes_lock = threading.Lock()


def batch_class(names: Sequence[str]) -> Type[Batch]:
    """The Batch subclass for a tuple of tensor names (one per layout)."""
    key = tuple(names)
    cls = _batch_classes.get(key)
    if cls is None:
        with _batch_classes_lock:
            cls = _batch_classes.get(key)
            if cls is None:
                cls = type(
                    "Batch",
                    (Batch,),
                    {
                        "_fields": key,
                        "_index": {n: i for i, n in enumerate(key)},
                        "__module__": __name__,
                        "__doc__": Batch.__doc__,
                    },
                )
                _batch_classes[key] = cls
    return cls


def _rebuild_batch(names: Sequence[str], tensors: Sequence[Any]) -> Batch:
    return batch_class(names)(*tensors)


class _BatchMemory:
    """Owns one df_batch. Every tensor of the batch references it through the
    ctypes array torch.frombuffer keeps alive; when the last tensor is
    freed, this is freed and the batch's memory goes back to the transport."""

    __slots__ = ("_handle", "_release", "_held", "_pid")

    _handle: Optional[int]

    def __init__(self, handle: int, release: Callable[[int], None], held: List[int]) -> None:
        self._handle = handle
        self._release = release  # kept here: module globals may be gone at exit
        self._held = held  # [batches of this Loader still alive]
        self._pid = os.getpid()
        held[0] += 1

    def __del__(self) -> None:
        handle, self._handle = self._handle, None
        # In a forked child the batch is the parent's: releasing it here
        # would give the parent's slot back under it.
        if handle and self._pid == os.getpid():
            self._held[0] -= 1
            self._release(handle)


def _option_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return ""
    if isinstance(value, float) and key.endswith("_ms"):
        return str(int(value))
    return str(value)


class Loader:
    """Batches from a datafeed producer as zero-copy PyTorch CPU tensors.

    ::

        loader = datafeed.Loader("shm://feed0")        # or Loader() with $DATAFEED_ENDPOINT
        for epoch in range(epochs):
            for image, label in loader:                  # one pass = one epoch
                ...
        print(loader.stats())                            # samples/s, data-wait fraction
        loader.close()

    endpoint        "shm://NAME", "grpc://HOST:PORT", "auto://HOST:PORT";
                    None: $DATAFEED_ENDPOINT.
    transport       "shm", "grpc" or "auto" overrides the endpoint's scheme;
                    None: $DATAFEED_TRANSPORT.
    prefetch        batches read ahead by a background thread of the library
                    (no Python thread, no GIL). On shared memory each one
                    holds a ring slot; 1-2 is plenty there, more helps over
                    a network.
    timeout         seconds without a batch before iteration raises
                    datafeed.Timeout (the stream goes on: iterate again to
                    keep waiting). None: wait as long as it takes.
    connect_timeout seconds to wait for a producer to appear at the endpoint.
    split_epochs    True (default): one pass of ``for ... in loader`` ends
                    where the producer's epoch changes, like a DataLoader,
                    and the next pass goes on with the next epoch. False:
                    one pass runs to the end of the stream.
    consumers       how many consumers share this producer's stream (e.g.
                    the ranks of a torchrun group that all read one
                    producer): only len() uses it (default 1).
    finish          for a producer with a split pipeline (a '|' in its
                    spec, which sends uint8 images): True (default) runs the
                    consumer's finish (to_tensor, normalize) so ``image`` is
                    float32 as usual (a new tensor, not zero-copy); False
                    hands out the uint8 tensor and its spec in
                    ``batch.finishes`` for datafeed.finish() on a GPU.
    **options       library options (see python/capi/datafeed_c.h):
                    tls_ca=, tls_cert=, tls_key=, tls_server_name=,
                    auth_token_file= (the producer's --auth-token-file),
                    compression="gzip", reconnect=True, reconnect_timeout_ms=,
                    grpc_prefetch=, grpc_streams= (TCP connections to each
                    producer, for a link one stream cannot fill), keepalive_ms=,
                    max_frame_bytes=,
                    spin_us=, adaptive_spin=, liveness_check_ms=, log_every_s=, ...

    len(loader) is the number of batches in one pass (one epoch) for this
    consumer: the producer's batches per epoch (its shard's, from the
    handshake), divided by `consumers` and rounded up. What the stock MNIST
    example, tqdm and OneCycleLR(total_steps=len(loader) * epochs) need.
    Ranks compete for batches, so with consumers > 1 a rank's pass may be
    one batch shorter than len(); a pass resumed mid-epoch is shorter too.
    It raises TypeError when the producer does not say (a producer without
    a run, such as a datafeed.Writer) or with split_epochs=False (a pass is
    then the whole stream).

    Iteration ends at the end of the stream (the producer finished its
    epochs). A producer that dies raises datafeed.Unavailable; other
    library errors raise the matching datafeed.Error subclass with the
    library's message.

    Thread safety: iterate from one thread at a time. stats() and close()
    may be called from any thread; close() wakes an iteration that is
    waiting (it raises datafeed.Cancelled). Tensors already handed out stay
    valid after close().
    """

    def __init__(
        self,
        endpoint: Optional[str] = None,
        transport: Optional[str] = None,
        prefetch: int = 2,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = 30.0,
        split_epochs: bool = True,
        finish: bool = True,
        state: Any = None,
        consumers: int = 1,
        **options: Any
    ) -> None:
        self._handle: Optional[int] = None  # first, so __del__ works whatever fails below
        self._pid = os.getpid()  # the process whose connection _handle is
        self._lock = threading.Lock()
        self._busy = 0
        self._closing = False
        self._final_stats: Optional[Dict[str, Any]] = None
        self._pending: Optional[Batch] = None
        self._pass_epoch: Optional[int] = None
        self._ended: Optional[errors.Error] = None  # the exception that ended the stream, if any
        self._held = [0]  # batches handed out whose tensors are still alive
        self._warned = False
        if prefetch is None or int(prefetch) < 0:
            raise errors.InvalidArgument("prefetch must be >= 0, got %r" % (prefetch,))
        if timeout is not None and timeout < 0:
            raise errors.InvalidArgument("timeout must be >= 0 or None, got %r" % (timeout,))
        if int(consumers) < 1:
            raise errors.InvalidArgument("consumers must be >= 1, got %r" % (consumers,))
        self.consumers = int(consumers)
        self.timeout: Optional[float] = timeout
        self._prefetch = int(prefetch)
        self.split_epochs = bool(split_epochs)
        self.finish = bool(finish)
        self._lib = _capi.lib()
        self._err = ctypes.create_string_buffer(_capi.ERR_SIZE)

        opts: Dict[str, Any] = {"prefetch": int(prefetch)}
        for key, value in options.items():
            opts[key] = value
        self._open_args = (endpoint, transport, dict(opts), connect_timeout)
        if state is not None:
            opts.update(_restore_options(state))
        self._open(endpoint, transport, opts, connect_timeout)
        self.endpoint: str = self._lib.df_consumer_endpoint(self._handle).decode()
        self.transport: str = self._lib.df_consumer_transport(self._handle).decode()

    def _open(
        self, endpoint: Optional[str], transport: Optional[str], opts: Dict[str, Any], connect_timeout: Optional[float]
    ) -> None:
        lib = self._lib
        ep = (endpoint or "").encode()
        tr = (transport or "").encode()
        start = time.monotonic()
        total = float("inf") if connect_timeout is None else max(0.0, float(connect_timeout))
        while True:
            left = total - (time.monotonic() - start)
            slice_s = min(max(left, 0.0), _CONNECT_SLICE_S)
            opts["connect_timeout_ms"] = int(slice_s * 1000)
            keys = [k.encode() for k in opts]
            values = [_option_value(k, v).encode() for k, v in opts.items()]
            karr = (ctypes.c_char_p * len(keys))(*keys)
            varr = (ctypes.c_char_p * len(values))(*values)
            handle = ctypes.c_void_p()
            code = lib.df_consumer_open(
                ep, tr, karr, varr, len(keys), ctypes.byref(handle), self._err, len(self._err)
            )
            if code == _capi.OK:
                self._handle = handle.value
                self._pid = os.getpid()
                return
            waited = time.monotonic() - start
            retry = code in (errors.NotFound.code, errors.Unavailable.code)
            if retry and waited < total:
                continue
            context = None
            if retry and connect_timeout:
                context = "after waiting %.1f s (connect_timeout)" % waited
            _capi.raise_for(code, self._err, context)

    # -- iteration -----------------------------------------------------------

    def __bool__(self) -> bool:
        # A Loader is always true: without this, `if loader:` would call
        # __len__ (and raise TypeError where the length is unknown).
        return True

    def __len__(self) -> int:
        """Batches in one pass (one epoch) for this consumer; see the class
        docstring. TypeError when the producer does not say."""
        if not self.split_epochs:
            raise TypeError(
                "len(datafeed.Loader): this Loader was made with split_epochs=False, so one pass "
                "runs to the end of the stream, whose length the producer does not say"
            )
        handle = self._enter()
        try:
            per_epoch = int(self._lib.df_consumer_batches_per_epoch(handle))
        finally:
            self._leave()
        if per_epoch == 0:
            raise TypeError(
                "len(datafeed.Loader(%s)): the producer does not say how many batches an epoch has "
                "(a producer without a run, e.g. a datafeed.Writer); count steps instead of "
                "using len()" % self.endpoint
            )
        return -(-per_epoch // self.consumers)

    def __iter__(self) -> "Loader":
        self._pass_epoch = None
        return self

    def __next__(self) -> Batch:
        _torch.torch()  # ImportError naming torch before a batch is taken
        batch = self._pending
        self._pending = None
        if batch is None and self.split_epochs and self._prefetch > 0:
            # Look at the next batch without taking it: when it starts the
            # next epoch, the pass ends and the batch stays with the library
            # (leased, not held by the trainer, so a long evaluation between
            # epochs does not hold it).
            epoch = self._peek_epoch()
            if epoch is None:
                raise StopIteration
            if self._pass_epoch is None:
                self._pass_epoch = epoch
            elif epoch > self._pass_epoch:
                raise StopIteration
        if batch is None:
            batch = self._next_batch()
            if batch is None:
                raise StopIteration
        if self.split_epochs:
            epoch = batch.meta["epoch"] if batch.meta is not None else 0
            if self._pass_epoch is None:
                self._pass_epoch = epoch
            elif epoch > self._pass_epoch and self._prefetch == 0:
                self._pending = batch  # the first batch of the next pass
                raise StopIteration
        return batch

    def _peek_epoch(self) -> Optional[int]:
        """The epoch of the batch the next iteration will take, or None at
        the end of the stream."""
        if self._ended is not None:
            if isinstance(self._ended, errors.EndOfStream):
                return None
            raise type(self._ended)(self._ended.message)  # a fresh traceback each time
        meta = (ctypes.c_uint64 * len(_capi.META_NAMES))()
        code = self._call_waiting(
            lambda handle, slice_ms, err: self._lib.df_consumer_peek(
                handle, slice_ms, meta, len(meta), err, len(err)
            )
        )
        if code is None:
            return None
        return int(meta[_capi.META_NAMES.index("epoch")])

    # -- the delivery contract -------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """This consumer's position, for the trainer's checkpoint (the name
        torchdata's StatefulDataLoader uses): a dict of plain values
        (torch.save and json can store it). Every batch this Loader has
        handed out counts as consumed: call it after the step that used the
        last one. Restoring it (load_state_dict, or Loader(state=...))
        gives exactly the batches after it; what was handed out after it
        comes again. Empty ``streams`` when the producer has no run."""
        handle = self._enter()
        try:
            needed = ctypes.c_size_t(0)
            buf = ctypes.create_string_buffer(4096)
            code = self._lib.df_consumer_state(
                handle, buf, len(buf), ctypes.byref(needed), self._err, len(self._err)
            )
            if code == errors.ResourceExhausted.code:
                buf = ctypes.create_string_buffer(needed.value)
                code = self._lib.df_consumer_state(
                    handle, buf, len(buf), ctypes.byref(needed), self._err, len(self._err)
                )
            if code != _capi.OK:
                _capi.raise_for(code, self._err)
            state: Dict[str, Any] = json.loads(buf.value.decode())
            return state
        finally:
            self._leave()

    def load_state_dict(
        self,
        state: Union[Dict[str, Any], Sequence[Dict[str, Any]], str, bytes],
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        generation: Optional[int] = None,
    ) -> None:
        """Continues from a checkpoint taken with state_dict(): the producer
        makes again what this consumer was handed after it, and nothing
        before it. Call it before iterating.

        `state` is one Loader's state, or a list of every rank's states (a
        group restore, e.g. gathered with torch.distributed.all_gather_object
        and saved with the checkpoint): then every rank of the restarted
        group passes the same list, with its `rank` and the new
        `world_size` (default: $RANK, $WORLD_SIZE), and the group shares
        what remains of each epoch, whatever its size now. `generation`
        tells two restarts from the same checkpoint apart (default:
        $TORCHELASTIC_RESTART_COUNT, else 0).

        Raises datafeed.FailedPrecondition when the producer cannot honour
        the state (another run, or a producer restarted without its
        --state-dir) and datafeed.DataLoss when honouring it would repeat
        batches, each with the reason."""
        if self.stats().get("batches", 0) > 0:
            raise errors.FailedPrecondition(
                "load_state_dict() must come before iterating: this Loader already handed out "
                "batches under its own position"
            )
        opts = _restore_options(state, rank, world_size, generation)
        endpoint, transport, base, connect_timeout = self._open_args
        merged = dict(base)
        merged.update(opts)
        self.close()
        with self._lock:
            self._closing = False
            self._final_stats = None
        self._pending = None
        self._pass_epoch = None
        self._ended = None
        self._open(endpoint, transport, merged, connect_timeout)

    def _forked(self) -> bool:
        """True in a child forked after the Loader opened: the handle is the
        parent's connection (its reader threads do not exist here). The child
        drops it without touching it, and may not use it."""
        if self._handle is not None and self._pid != os.getpid():
            self._handle = None
            self._closing = False
            return True
        return False

    def _enter(self) -> int:
        if self._forked():
            raise errors.FailedPrecondition(
                "datafeed.Loader(%s) was opened in process %d and cannot be used in this forked "
                "process %d (a DataLoader worker?): its connection and reader threads are the "
                "parent's. Open a new Loader in the child; datafeed.IterableDataset does that for "
                "you" % (getattr(self, "endpoint", ""), self._pid, os.getpid())
            )
        with self._lock:
            if self._handle is None or self._closing:
                raise errors.Cancelled("datafeed.Loader(%s) is closed" % getattr(self, "endpoint", ""))
            self._busy += 1
            return self._handle

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0 and self._closing and self._handle is not None:
                self._destroy_locked()

    def _next_batch(self) -> Optional[Batch]:
        """The next Batch, or None at the end of the stream."""
        if self._ended is not None:
            if isinstance(self._ended, errors.EndOfStream):
                return None
            raise type(self._ended)(self._ended.message)  # a fresh traceback each time
        out = ctypes.c_void_p()
        code = self._call_waiting(
            lambda handle, slice_ms, err: self._lib.df_consumer_next(
                handle, slice_ms, ctypes.byref(out), err, len(err)
            )
        )
        if code is None or out.value is None:
            return None
        return self._wrap(out.value)

    def _call_waiting(self, call: Callable[[int, int, Any], Any]) -> Optional[int]:
        """Runs call(handle, slice_ms, err) in slices until it returns OK
        (then OK), the stream ends (None) or an error (raised)."""
        handle = self._enter()
        try:
            err = self._err
            start = time.monotonic()
            while True:
                if self.timeout is None:
                    slice_ms = int(_SLICE_S * 1000)
                else:
                    left = self.timeout - (time.monotonic() - start)
                    slice_ms = max(0, int(min(left, _SLICE_S) * 1000))
                code: int = call(handle, slice_ms, err)
                if code == _capi.OK:
                    return code
                if code == _capi.TIMEOUT:
                    waited = time.monotonic() - start
                    if self.timeout is not None and waited >= self.timeout:
                        raise errors.Timeout(
                            "no batch from %s within %.3g s; is the producer running? (the "
                            "stream goes on: iterate again to keep waiting)%s"
                            % (self.endpoint, self.timeout, self._held_hint())
                        )
                    if waited >= _HELD_WARNING_S and not self._warned and self._held_hint():
                        self._warned = True
                        warnings.warn(
                            "datafeed: waited %.0f s for a batch from %s%s"
                            % (waited, self.endpoint, self._held_hint()),
                            RuntimeWarning,
                            stacklevel=3,
                        )
                    continue
                if code == _capi.END_OF_STREAM:
                    self._ended = errors.EndOfStream(err.value.decode("utf-8", "replace"))
                    return None
                exc = errors.from_code(code, err.value.decode("utf-8", "replace"))
                if code != _capi.CANCELLED:
                    self._ended = exc
                raise exc
        finally:
            self._leave()

    def _held_hint(self) -> str:
        held = self._held[0]
        if held < 2 or self.transport != "shm":
            return ""
        return (
            "; this process still holds tensors of %d earlier batches, and each holds a "
            "shared-memory slot the producer cannot refill: if the ring is full, the producer "
            "waits for them. Keep tensors past a step with .clone()" % held
        )

    def _wrap(self, handle: int) -> Batch:
        """A Batch of tensors over the df_batch `handle` (now owned here)."""
        lib = self._lib
        memory = _BatchMemory(handle, lib.df_batch_release, self._held)
        torch = _torch.torch()
        n = lib.df_batch_num_tensors(handle)
        names = []
        tensors = []
        finishes = {}
        for i in range(n):
            names.append(lib.df_batch_tensor_name(handle, i).decode())
            dtype = _torch.dtype(lib.df_batch_tensor_dtype(handle, i))
            ndim = lib.df_batch_tensor_ndim(handle, i)
            shape = tuple(lib.df_batch_tensor_shape(handle, i)[:ndim]) if ndim else ()
            nbytes = lib.df_batch_tensor_nbytes(handle, i)
            if nbytes == 0:
                # frombuffer refuses an empty buffer; nothing to share anyway.
                tensor = torch.empty(shape, dtype=dtype)
            else:
                buf = (ctypes.c_uint8 * nbytes).from_address(lib.df_batch_tensor_data(handle, i))
                # torch.frombuffer keeps `buf` alive for as long as the tensor's
                # storage lives; `buf` keeps `memory`, which releases the batch.
                buf._datafeed_memory = memory
                tensor = torch.frombuffer(buf, dtype=dtype).view(shape)
            spec = lib.df_batch_tensor_finish(handle, i).decode()
            if spec:
                if self.finish:
                    tensor = finishing.finish(tensor, spec)
                else:
                    finishes[names[-1]] = spec
            tensors.append(tensor)
        batch = batch_class(names)(*tensors)
        batch.finishes = finishes
        batch.meta = {
            name: int(lib.df_batch_meta(handle, field)) for field, name in enumerate(_capi.META_NAMES)
        }
        return batch

    # -- stats and lifetime -------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Counters since the first batch was asked for: batches, samples,
        bytes, elapsed_s, wait_s (time spent waiting for data),
        samples_per_s, batches_per_s, wait_fraction (wait_s / elapsed_s),
        held_batches (batches whose tensors are still alive), endpoint and
        transport. Valid after close() too."""
        if self._forked():
            return {}
        with self._lock:
            if self._handle is None or self._closing:
                if self._final_stats is not None:
                    return dict(self._final_stats)
                return {}
            return self._stats_locked()

    def register_metrics(self, registry: Any = None, labels: Optional[Dict[str, str]] = None) -> Any:
        """Exports stats() to Prometheus: registers a
        datafeed.metrics.LoaderCollector with `registry` (default:
        prometheus_client.REGISTRY, what start_http_server serves), every
        sample labelled with endpoint, transport and `labels`. Returns the
        collector (registry.unregister(it) removes it). Needs
        prometheus_client (python3-prometheus-client); ImportError saying
        so without it."""
        from . import metrics

        return metrics.register(self, registry, labels)

    def _stats_locked(self) -> Dict[str, Any]:
        values = (ctypes.c_double * len(_capi.STAT_NAMES))()
        n = self._lib.df_consumer_stats(self._handle, values, len(values))
        out: Dict[str, Any] = {}
        for name, value in zip(_capi.STAT_NAMES[:n], values[:n]):
            out[name] = int(value) if name in ("batches", "samples", "bytes") else float(value)
        out["held_batches"] = self._held[0]
        out["endpoint"] = self.endpoint
        out["transport"] = self.transport
        return out

    def close(self) -> None:
        """Stops reading and closes the connection. Idempotent. A thread
        waiting in iteration is woken with datafeed.Cancelled. Batches
        handed out count as consumed (as state_dict() counts them) and
        their tensors stay valid; prefetched batches go back to the
        producer at once, for other consumers."""
        if self._forked():
            return  # the parent's connection: the parent closes it
        with self._lock:
            if self._handle is None or self._closing:
                return
            self._closing = True
            self._final_stats = self._stats_locked()
            handle = self._handle
            # Busy while it stops the consumer: a thread that leaves its
            # iteration meanwhile must not free the handle under the stop.
            self._busy += 1
        try:
            self._lib.df_consumer_stop(handle)
            self._pending = None
        finally:
            self._leave()

    def _destroy_locked(self) -> None:
        handle, self._handle = self._handle, None
        self._lib.df_consumer_close(handle)

    @property
    def closed(self) -> bool:
        return self._handle is None or self._closing

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_handle", None) is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return "datafeed.Loader(%r, transport=%r, %s)" % (
            getattr(self, "endpoint", None),
            getattr(self, "transport", None),
            state,
        )


def _restore_options(
    state: Any, rank: Optional[int] = None, world_size: Optional[int] = None, generation: Optional[int] = None
) -> Dict[str, Any]:
    """Library options that restore `state` (one state dict, or a list of a
    group's)."""
    if isinstance(state, (str, bytes)):
        state = json.loads(state)
    if isinstance(state, dict) and "ranks" in state:
        state = state["ranks"]
    opts: Dict[str, Any] = {"restore": json.dumps(state)}
    if isinstance(state, (list, tuple)):
        if rank is None:
            rank = int(os.environ.get("RANK", "0"))
        if world_size is None:
            world_size = int(os.environ.get("WORLD_SIZE", str(max(1, len(state)))))
        if generation is None:
            generation = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        opts.update(rank=int(rank), world_size=int(world_size), generation=int(generation))
    elif not isinstance(state, dict):
        raise errors.InvalidArgument(
            "load_state_dict: expected what state_dict() returned (a dict) or a list of them, "
            "got %s" % type(state).__name__
        )
    return opts


def default_endpoint() -> Optional[str]:
    """$DATAFEED_ENDPOINT, or None."""
    return os.environ.get("DATAFEED_ENDPOINT") or None
