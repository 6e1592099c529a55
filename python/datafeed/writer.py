"""Writer: publish batches from Python (an existing Dataset or DataLoader)
to datafeed consumers over shared memory or gRPC."""

from __future__ import annotations

import ctypes
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import _capi, errors

# How long one call into the library may block (Ctrl-C is handled between).
_SLICE_S = 0.2

# torch / numpy dtype names -> datafeed dtype codes (datafeed_c.h).
_CODES = {
    "uint8": 1,
    "int8": 2,
    "int16": 3,
    "int32": 4,
    "int64": 5,
    "float16": 6,
    "bfloat16": 7,
    "float32": 8,
    "float64": 9,
    "bool": 10,
}

# (dtype code, shape, address, nbytes, a torch tensor to copy_ from when not contiguous)
_Field = Tuple[int, Tuple[int, ...], int, int, Any]


def _field(name: str, value: Any) -> Tuple[_Field, Any]:
    """What publish() needs of one tensor, and the object that keeps its
    memory alive until it is copied."""
    mod = type(value).__module__
    if mod.startswith("torch"):
        if value.device.type != "cpu":
            raise errors.InvalidArgument(
                "datafeed.Writer.publish: tensor '%s' is on %s; publish CPU tensors (.cpu())"
                % (name, value.device)
            )
        dname = str(value.dtype).replace("torch.", "")
        if dname not in _CODES:
            raise errors.InvalidArgument(
                "datafeed.Writer.publish: tensor '%s' has dtype %s; datafeed carries %s"
                % (name, value.dtype, ", ".join(_CODES))
            )
        t = value.detach()
        shape = tuple(int(d) for d in t.shape)
        nbytes = t.numel() * t.element_size()
        if t.is_contiguous():
            return (_CODES[dname], shape, t.data_ptr(), nbytes, None), t
        return (_CODES[dname], shape, 0, nbytes, t), t
    if mod.startswith("numpy") and hasattr(value, "dtype") and hasattr(value, "ctypes"):
        numpy: Any = sys.modules["numpy"]  # imported already: `value` is one of its arrays

        a = numpy.ascontiguousarray(value)
        dname = "bool" if a.dtype == numpy.bool_ else str(a.dtype)
        if dname not in _CODES:
            raise errors.InvalidArgument(
                "datafeed.Writer.publish: array '%s' has dtype %s; datafeed carries %s"
                % (name, a.dtype, ", ".join(_CODES))
            )
        return (_CODES[dname], tuple(int(d) for d in a.shape), a.ctypes.data, a.nbytes, None), a
    raise errors.InvalidArgument(
        "datafeed.Writer.publish: '%s' is a %s; publish torch tensors or numpy arrays"
        % (name, type(value).__name__)
    )


class Writer:
    """Publishes batches of named tensors to datafeed consumers
    (datafeed.Loader, the C++ consumer) over shared memory or gRPC::

        with datafeed.Writer("auto://0.0.0.0:5000", insecure=True) as w:
            for epoch in range(epochs):
                for x, y in my_dataloader:
                    w.publish(image=x, label=y)
                w.end_epoch()

    endpoint   "shm://NAME", "grpc://HOST:PORT" or "auto://HOST:PORT" (a
               local consumer of auto:// gets the shared-memory ring, a remote
               one the gRPC stream); None: $DATAFEED_ENDPOINT.
    transport  "shm", "grpc" or "auto" overrides the endpoint's scheme
               ($DATAFEED_TRANSPORT, the consumers' override, is not read).
    insecure   serve plaintext gRPC on an address other than loopback
               (refused otherwise, as by datafeed-producer --insecure);
               prefer tls_cert=, tls_key= (and auth_token_file=).
    slots      shared-memory ring slots (batches in flight).
    slot_bytes the ring's slot size; None: sized from the first batch,
               and the endpoint opens at the first publish(). Given, the
               endpoint opens now.
    linger     close() waits up to this many seconds for consumers to take
               the batches already published.
    timeout    seconds publish() may wait while every slot is full (the
               consumers are slower) before raising datafeed.Timeout; None:
               as long as it takes.
    **options  tls_cert=, tls_key=, tls_ca=, auth_token_file=, max_streams=,
               max_streams_per_peer=, keepalive_ms=, shm_name= (see
               python/capi/datafeed_c.h, df_writer_open).

    Schema: the first publish() fixes the tensors' names (in argument
    order), dtypes and shapes. Later batches must have the same names,
    dtypes and shapes, except that dimension 0 may be smaller (a last
    partial batch); anything else raises datafeed.InvalidArgument naming
    the tensor.

    Each tensor is copied once, straight into the transport's memory (the
    ring slot that consumers read in place, or the frame gRPC sends).
    Delivery: each batch goes to exactly one consumer, at most once (a
    plain stream: no leases, nothing made again, no checkpoint restore),
    in publish order. Consumers see the epoch of each batch
    (batch.meta["epoch"]; datafeed.Loader ends a pass where it changes).
    len(Loader) is unknown for such a stream (the Writer does not know how
    many batches an epoch has), so it raises TypeError.

    Not thread-safe: publish from one thread.
    """

    def __init__(
        self,
        endpoint: Optional[str] = None,
        transport: Optional[str] = None,
        *,
        insecure: bool = False,
        slots: int = 4,
        slot_bytes: Optional[int] = None,
        linger: float = 30.0,
        timeout: Optional[float] = None,
        **options: Any,
    ) -> None:
        self._handle: Optional[int] = None  # first, so __del__ works whatever fails
        self._closed = False
        if int(slots) < 1:
            raise errors.InvalidArgument("datafeed.Writer: slots must be >= 1, got %r" % (slots,))
        if linger is None or linger < 0:
            raise errors.InvalidArgument("datafeed.Writer: linger must be >= 0 seconds, got %r" % (linger,))
        if timeout is not None and timeout < 0:
            raise errors.InvalidArgument("datafeed.Writer: timeout must be >= 0 or None, got %r" % (timeout,))
        self._lib = _capi.lib()
        self._err = ctypes.create_string_buffer(_capi.ERR_SIZE)
        self._endpoint_arg = endpoint
        self._transport_arg = transport
        self.timeout = timeout
        opts: Dict[str, str] = {
            "slot_count": str(int(slots)),
            "linger_ms": str(int(float(linger) * 1000)),
            "insecure": "1" if insecure else "0",
        }
        for key, value in options.items():
            opts[key] = "1" if value is True else "0" if value is False else str(value)
        self._options = opts
        # The schema, fixed by the first publish: [(name, code, shape)].
        self._schema: Optional[List[Tuple[str, int, Tuple[int, ...]]]] = None
        self._layouts: Dict[Tuple[Tuple[int, ...], ...], int] = {}
        self._epoch = 0
        self._batch_index = 0  # in the epoch
        self._samples = 0  # in the epoch, before the next batch
        self.batches = 0
        self.bytes = 0
        self.endpoint: Optional[str] = None
        if slot_bytes is not None:
            self._open(int(slot_bytes))

    # -- opening -------------------------------------------------------------

    def _open(self, slot_bytes: int) -> None:
        opts = dict(self._options)
        opts["slot_bytes"] = str(slot_bytes)
        keys = [k.encode() for k in opts]
        values = [v.encode() for v in opts.values()]
        karr = (ctypes.c_char_p * len(keys))(*keys)
        varr = (ctypes.c_char_p * len(values))(*values)
        handle = ctypes.c_void_p()
        code = self._lib.df_writer_open(
            (self._endpoint_arg or "").encode(),
            (self._transport_arg or "").encode(),
            karr,
            varr,
            len(keys),
            ctypes.byref(handle),
            self._err,
            len(self._err),
        )
        if code != _capi.OK:
            _capi.raise_for(code, self._err, "datafeed.Writer")
        self._handle = handle.value
        self.endpoint = self._lib.df_writer_endpoint(self._handle).decode()

    def _layout(self, fields: List[Tuple[str, _Field]]) -> int:
        shapes = tuple(f[1] for _, f in fields)
        layout = self._layouts.get(shapes)
        if layout is not None:
            return layout
        n = len(fields)
        names = (ctypes.c_char_p * n)(*[name.encode() for name, _ in fields])
        codes = (ctypes.c_int * n)(*[f[0] for _, f in fields])
        ndims = (ctypes.c_size_t * n)(*[len(f[1]) for _, f in fields])
        flat = [d for s in shapes for d in s]
        dims = (ctypes.c_int64 * max(1, len(flat)))(*flat)
        if len(self._layouts) >= 8:  # many partial batches: forget the old layouts
            self._free_layouts()
        out = ctypes.c_void_p()
        code = self._lib.df_layout_make(n, names, codes, ndims, dims, ctypes.byref(out), self._err, len(self._err))
        if code != _capi.OK:
            _capi.raise_for(code, self._err, "datafeed.Writer.publish")
        assert out.value is not None
        self._layouts[shapes] = out.value
        return out.value

    # -- publishing ------------------------------------------------------------

    def _check(self, fields: List[Tuple[str, _Field]]) -> None:
        if self._schema is None:
            if not fields:
                raise errors.InvalidArgument("datafeed.Writer.publish: no tensors given (publish(image=x, label=y))")
            self._schema = [(name, f[0], f[1]) for name, f in fields]
            return
        want = [name for name, _, _ in self._schema]
        got = [name for name, _ in fields]
        if got != want:
            missing = [n for n in want if n not in got]
            extra = [n for n in got if n not in want]
            raise errors.InvalidArgument(
                "datafeed.Writer.publish: tensors %s, but the first batch fixed %s%s%s"
                % (
                    got,
                    want,
                    "; missing: %s" % ", ".join(missing) if missing else "",
                    "; not in the schema: %s" % ", ".join(extra) if extra else "",
                )
            )
        for (name, code, shape), (_, f) in zip(self._schema, fields):
            if f[0] != code:
                raise errors.InvalidArgument(
                    "datafeed.Writer.publish: tensor '%s' is %s, but the first batch made it %s"
                    % (name, self._lib.df_dtype_name(f[0]).decode(), self._lib.df_dtype_name(code).decode())
                )
            s = f[1]
            ok = len(s) == len(shape) and (not s or (s[0] <= shape[0] and s[1:] == shape[1:]))
            if not ok:
                raise errors.InvalidArgument(
                    "datafeed.Writer.publish: tensor '%s' has shape %s, but the first batch made it %s "
                    "(only dimension 0 may be smaller, for a last partial batch)" % (name, list(s), list(shape))
                )

    def publish(self, batch: Optional[Mapping[str, Any]] = None, *, epoch: Optional[int] = None, **tensors: Any) -> None:
        """Publishes one batch: torch tensors (CPU) or numpy arrays by name,
        as keyword arguments (``publish(image=x, label=y)``) or a mapping
        (``publish({"image": x, "label": y})``, e.g. a datafeed.Batch).
        `epoch` (>= the current one) moves to that epoch first, like
        end_epoch(). Waits while every slot is full (see `timeout`)."""
        if self._closed:
            raise errors.FailedPrecondition("datafeed.Writer.publish: the writer is closed")
        items: Dict[str, Any] = {}
        if batch is not None:
            items.update(batch.items())
        for name, value in tensors.items():
            if name in items:
                raise errors.InvalidArgument("datafeed.Writer.publish: tensor '%s' given twice" % name)
            items[name] = value
        if epoch is not None:
            if int(epoch) < self._epoch:
                raise errors.InvalidArgument(
                    "datafeed.Writer.publish: epoch %d is before the current epoch %d" % (epoch, self._epoch)
                )
            if int(epoch) > self._epoch:
                self._epoch = int(epoch)
                self._batch_index = 0
                self._samples = 0
        keep = []
        fields: List[Tuple[str, _Field]] = []
        for name, value in items.items():
            f, owner = _field(name, value)
            keep.append(owner)
            fields.append((name, f))
        self._check(fields)
        layout = self._layout(fields)
        if self._handle is None:
            self._open(self._first_slot_bytes(fields))
        loan = self._loan(layout)
        lib = self._lib
        try:
            for i, (name, f) in enumerate(fields):
                nbytes = f[3]
                if nbytes == 0:
                    continue
                dst = lib.df_loan_data(loan, i)
                if lib.df_loan_nbytes(loan, i) != nbytes or not dst:
                    raise errors.Internal("datafeed.Writer: tensor '%s': the loan's size differs" % name)
                if f[4] is None:
                    ctypes.memmove(dst, f[2], nbytes)
                else:  # not contiguous: one strided copy into the loan
                    from . import _torch

                    torch = _torch.torch()
                    view = torch.frombuffer((ctypes.c_uint8 * nbytes).from_address(dst), dtype=f[4].dtype)
                    view.view(f[4].shape).copy_(f[4])
            first = fields[0][1][1]
            samples = first[0] if first else 1
            for field, value in (
                (_capi.META_NAMES.index("epoch"), self._epoch),
                (_capi.META_NAMES.index("batch_index"), self._batch_index),
                (_capi.META_NAMES.index("first_index"), self._samples),
            ):
                if lib.df_loan_set_meta(loan, field, value, self._err, len(self._err)) != _capi.OK:
                    _capi.raise_for(errors.InvalidArgument.code, self._err, "datafeed.Writer.publish")
        except BaseException:
            lib.df_loan_abandon(loan)
            raise
        code = lib.df_writer_publish(self._handle, loan, self._err, len(self._err))
        if code != _capi.OK:
            _capi.raise_for(code, self._err, "datafeed.Writer.publish")
        self._batch_index += 1
        self._samples += samples
        self.batches += 1
        self.bytes += sum(f[3] for _, f in fields)

    def _first_slot_bytes(self, fields: List[Tuple[str, _Field]]) -> int:
        frame = int(self._lib.df_layout_frame_bytes(self._layout(fields)))
        return (frame + 4095) // 4096 * 4096

    def _loan(self, layout: int) -> int:
        start = time.monotonic()
        out = ctypes.c_void_p()
        while True:
            if self.timeout is None:
                slice_s = _SLICE_S
            else:
                slice_s = max(0.0, min(_SLICE_S, self.timeout - (time.monotonic() - start)))
            code = self._lib.df_writer_loan(
                self._handle, layout, int(slice_s * 1000), ctypes.byref(out), self._err, len(self._err)
            )
            if code == _capi.OK:
                assert out.value is not None
                return out.value
            if code == _capi.TIMEOUT:
                if self.timeout is None or time.monotonic() - start < self.timeout:
                    continue
                raise errors.Timeout(
                    "datafeed.Writer.publish: every slot of %s stayed full for %.3g s (timeout): are "
                    "consumers reading?" % (self.endpoint, self.timeout)
                )
            _capi.raise_for(code, self._err, "datafeed.Writer.publish")

    def end_epoch(self) -> None:
        """Ends the current epoch: later batches carry the next epoch number,
        so a datafeed.Loader's pass ends here."""
        self._epoch += 1
        self._batch_index = 0
        self._samples = 0

    @property
    def epoch(self) -> int:
        """The epoch the next batch carries."""
        return self._epoch

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """Ends the stream (consumers get what was published, then the end
        of the stream) and waits up to `linger` seconds for them to take it.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        handle, self._handle = self._handle, None
        try:
            if handle is not None:
                code = self._lib.df_writer_close(handle, self._err, len(self._err))
                self._lib.df_writer_free(handle)
                if code != _capi.OK:
                    _capi.raise_for(code, self._err, "datafeed.Writer.close")
        finally:
            self._free_layouts()

    def _free_layouts(self) -> None:
        # Loans keep what they need of a layout (datafeed_c.h).
        layouts, self._layouts = self._layouts, {}
        for layout in layouts.values():
            self._lib.df_layout_free(layout)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "datafeed.Writer(%r, epoch=%d, batches=%d, %s)" % (
            self.endpoint or self._endpoint_arg,
            self._epoch,
            self.batches,
            "closed" if self._closed else "open",
        )
