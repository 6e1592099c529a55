"""Tensors equal what the producer wrote, over shared memory and gRPC, with
no copy on shared memory; every dtype maps to the right torch dtype."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import datafeed
from conftest import (
    DTYPE_WRITER,
    MNIST_COUNT,
    free_port,
    producer_args,
    read_idx,
    unique_name,
)


def expected_images(images_u8):
    # torchvision: ToTensor (x / 255 in float32), Normalize((x - m) / s).
    x = torch.from_numpy(images_u8.copy()).float().div(255).unsqueeze(1)
    return x.sub(0.1307).div(0.3081)


def shm_mappings(name):
    """(start, end) address ranges of /dev/shm/datafeed.NAME in this process."""
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            # " (deleted)" once the producer has exited and unlinked it.
            path = line.rstrip()
            if path.endswith(" (deleted)"):
                path = path[: -len(" (deleted)")]
            if path.endswith("/dev/shm/datafeed." + name):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                ranges.append((start, end))
    return ranges


def check_stream(loader, mnist_dir, batch_size=100):
    images, labels = read_idx(mnist_dir)
    seen = 0
    batches = []
    for batch in loader:
        image, label = batch  # unpacking in frame order
        assert batch.keys() == ["image", "label"]
        assert image is batch["image"] and label is batch["label"]
        assert image.dtype == torch.float32 and label.dtype == torch.int64
        first = batch.meta["first_index"]
        n = image.shape[0]
        assert tuple(image.shape) == (n, 1, 28, 28) and tuple(label.shape) == (n,)
        assert first == seen, "ordered delivery, no shuffle"
        want = expected_images(images[first : first + n])
        torch.testing.assert_close(image, want, rtol=0, atol=2e-6)
        assert torch.equal(label, torch.from_numpy(labels[first : first + n]))
        seen += n
        batches.append(batch)
        if len(batches) > 2:
            batches.pop(0)
    assert seen == MNIST_COUNT
    return batches


def test_shm_tensors_equal_idx_and_are_zero_copy(mnist_dir, spawn):
    name = unique_name("shm")
    spawn(producer_args(mnist_dir, "shm://" + name))
    with datafeed.Loader("shm://" + name, timeout=20, connect_timeout=20) as loader:
        assert loader.transport == "shm"
        kept = check_stream(loader, mnist_dir)
        # The tensors point into the shared-memory segment: no copy was made.
        maps = shm_mappings(name)
        assert maps, "the segment is not mapped"
        for batch in kept:
            for t in batch.values():
                assert any(s <= t.data_ptr() and t.data_ptr() + t.numel() * t.element_size() <= e for s, e in maps)
        stats = loader.stats()
    assert stats["batches"] == 10 and stats["samples"] == MNIST_COUNT
    assert 0.0 <= stats["wait_fraction"] <= 1.0
    assert stats["transport"] == "shm"


def test_grpc_tensors_equal_idx(mnist_dir, spawn):
    port = free_port()
    spawn(producer_args(mnist_dir, "grpc://127.0.0.1:%d" % port))
    with datafeed.Loader("grpc://127.0.0.1:%d" % port, timeout=20, connect_timeout=20) as loader:
        assert loader.transport == "grpc"
        check_stream(loader, mnist_dir)


def test_auto_picks_shm_and_transport_override_forces_grpc(mnist_dir, spawn, monkeypatch):
    port = free_port()
    spawn(producer_args(mnist_dir, "auto://127.0.0.1:%d" % port, epochs=0))
    endpoint = "auto://127.0.0.1:%d" % port
    with datafeed.Loader(endpoint, connect_timeout=20, timeout=20) as loader:
        assert loader.transport == "shm"
        image, label = next(loader)
        assert image.shape[0] == label.shape[0] == 100
    # DATAFEED_ENDPOINT / DATAFEED_TRANSPORT are the defaults.
    monkeypatch.setenv("DATAFEED_ENDPOINT", endpoint)
    monkeypatch.setenv("DATAFEED_TRANSPORT", "grpc")
    with datafeed.Loader(connect_timeout=20, timeout=20) as loader:
        assert loader.transport == "grpc"
        image, label = next(loader)
        assert image.shape == (100, 1, 28, 28)


def expected_dtype_batch(k):
    """What tests/python/dtype_writer.cc writes into batch k."""
    i = np.arange
    return {
        "u8": torch.tensor(((i(12) + k) % 256).reshape(3, 4), dtype=torch.uint8),
        "i8": torch.tensor(i(5) - 2 - k, dtype=torch.int8),
        "i16": torch.tensor((1000 * (i(6) - 3) + k).reshape(2, 3), dtype=torch.int16),
        "i32": torch.tensor(-100000 * i(4) + k, dtype=torch.int32),
        "i64": torch.tensor(((1 << 40) * (i(4) - 1) + k).reshape(2, 2), dtype=torch.int64),
        "f16": torch.tensor([1, -2, 0.5, k], dtype=torch.float16),
        "bf16": torch.tensor([1, -2, 0.5, k], dtype=torch.bfloat16),
        "f32": torch.tensor((0.25 * i(6) - k).reshape(2, 3), dtype=torch.float32),
        "f64": torch.tensor(1e-300 * i(3) + k, dtype=torch.float64),
        "b": torch.tensor((i(5) + k) % 2 == 1, dtype=torch.bool),
        "s": torch.tensor(k + 0.5, dtype=torch.float32),
        "e": torch.zeros((0, 3), dtype=torch.float32),
    }


def test_every_dtype_maps_to_torch(spawn):
    name = unique_name("dtypes")
    spawn([DTYPE_WRITER, "--endpoint", "shm://" + name, "--batches", 4])
    with datafeed.Loader("shm://" + name, timeout=20, connect_timeout=20, split_epochs=False) as loader:
        got = list(loader)
    assert len(got) == 4
    for k, batch in enumerate(got):
        want = expected_dtype_batch(k)
        assert batch.keys() == list(want)
        for key, w in want.items():
            t = batch[key]
            assert t.dtype == w.dtype, key
            assert t.shape == w.shape, key
            assert torch.equal(t, w), (key, t, w)
        assert batch.meta["first_index"] == k


def test_tensors_are_writable_and_private(spawn):
    # Slot memory belongs to this consumer alone until released (as in the
    # libtorch adapter), so in-place ops work.
    name = unique_name("inplace")
    spawn([DTYPE_WRITER, "--endpoint", "shm://" + name, "--batches", 1])
    with datafeed.Loader("shm://" + name, timeout=20, connect_timeout=20) as loader:
        batch = next(loader)
        batch["f32"].add_(1)
        assert batch["f32"][0, 0].item() == 1.0
