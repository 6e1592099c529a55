"""The consumer's end of a split pipeline.

A producer whose pipeline spec has a '|' (e.g.
``random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)``) sends its images
as uint8 [B, C, H, W] -- a quarter of the float32 bytes -- and names the
finish (``to_tensor,normalize(...)``) in each batch. The Loader runs it by
default; ``Loader(..., finish=False)`` hands out the uint8 tensor instead,
with the spec in ``batch.finishes``, so it can go to the GPU first::

    for batch in datafeed.Loader(endpoint, finish=False):
        image = datafeed.finish(batch.image.cuda(non_blocking=True), batch.finishes["image"])

The values are those the producer would have computed, bit for bit: the
library's per-channel tables (the producer's own code) are either applied
by the library (a contiguous CPU tensor) or copied to the tensor's device
and looked up there with torch ops (a GPU tensor, or a strided view).
"""

import ctypes
from typing import Any, Dict, Tuple

from . import _capi, _torch, errors


def finish(tensor: Any, spec: str) -> Any:
    """A float32 tensor of tensor's shape and device: the finish `spec` run
    on the uint8 [..., C, H, W] `tensor`. Raises datafeed.InvalidArgument
    for a bad spec, dtype, rank or channel count."""
    torch = _torch.torch()
    lib = _capi.lib()
    err = ctypes.create_string_buffer(_capi.ERR_SIZE)
    if not isinstance(spec, str) or not spec:
        raise errors.InvalidArgument("finish: spec must be a non-empty string, got %r" % (spec,))
    if tensor.dtype != torch.uint8 or tensor.dim() < 3:
        raise errors.InvalidArgument(
            "finish(%r): needs a uint8 [..., C, H, W] tensor, got %s of shape %s"
            % (spec, tensor.dtype, tuple(tensor.shape))
        )
    if tensor.device.type == "cpu" and tensor.is_contiguous():
        src = tensor
        out = torch.empty(src.shape, dtype=torch.float32)
        shape = (ctypes.c_int64 * src.dim())(*src.shape)
        rc = lib.df_finish_apply(
            spec.encode(), src.data_ptr(), shape, src.dim(), out.data_ptr(), out.numel(), err, len(err)
        )
        if rc != 0:
            _capi.raise_for(rc, err)
        return out
    channels = int(tensor.shape[-3])
    key = (spec, channels, str(tensor.device))
    tables = _device_tables.get(key)
    if tables is None:
        # Made once per (spec, channels, device): copying them for every batch
        # would be a blocking copy that waits for the device's queued work.
        tables = torch.empty((channels, 256), dtype=torch.float32)
        rc = lib.df_finish_tables(spec.encode(), channels, tables.data_ptr(), tables.numel(), err, len(err))
        if rc != 0:
            _capi.raise_for(rc, err)
        tables = tables.to(tensor.device).view(-1)
        if len(_device_tables) >= 16:
            _device_tables.clear()
        _device_tables[key] = tables
    index = tensor.int()
    if channels > 1:
        index += (torch.arange(channels, device=tensor.device, dtype=torch.int32) * 256).view(channels, 1, 1)
    return tables.index_select(0, index.reshape(-1)).view(tensor.shape)


_device_tables: Dict[Tuple[str, int, str], Any] = {}
