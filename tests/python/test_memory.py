"""Transport memory goes back exactly when the last tensor of a batch dies,
and a long stream does not grow the process."""

import gc
import os

import pytest

torch = pytest.importorskip("torch")

import datafeed
from datafeed.loader import _BatchMemory
from conftest import DTYPE_WRITER, producer_args, unique_name


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_slot_returns_when_last_tensor_dies(spawn):
    # A 2-slot ring: the writer can publish a third batch only after one of
    # the first two is released, i.e. after all its tensors are gone.
    name = unique_name("slots")
    spawn([DTYPE_WRITER, "--endpoint", "shm://" + name, "--slots", 2, "--batches", 4])
    with datafeed.Loader("shm://" + name, prefetch=0, connect_timeout=20, timeout=10) as loader:
        b0 = next(loader)
        b1 = next(loader)
        loader.timeout = 0.5
        with pytest.raises(datafeed.Timeout) as info:
            next(loader)  # both slots are held by b0 and b1
        assert "holds tensors of 2 earlier batches" in str(info.value)
        assert loader.stats()["held_batches"] == 2

        # A view (a slice) of one tensor keeps the whole batch's slot.
        view = b0["f32"][1]
        del b0
        gc.collect()
        with pytest.raises(datafeed.Timeout):
            next(loader)

        del view  # the last reference to batch 0: its slot goes back
        loader.timeout = 10
        b2 = next(loader)
        assert b2.meta["first_index"] == 2

        del b1
        b3 = next(loader)
        assert b3.meta["first_index"] == 3
        assert torch.equal(b3["s"], torch.tensor(3.5))
        del b2, b3
        assert list(loader) == []  # end of stream


def test_tensors_stay_valid_after_close(spawn):
    name = unique_name("afterclose")
    spawn([DTYPE_WRITER, "--endpoint", "shm://" + name, "--batches", 2])
    loader = datafeed.Loader("shm://" + name, connect_timeout=20, timeout=10)
    image = next(loader)["i64"]
    loader.close()
    assert image[1, 1].item() == (1 << 40) * 2
    assert loader.stats()["batches"] == 1  # the last snapshot survives close()


def test_thousands_of_batches_no_growth(mnist_dir, spawn):
    # 1000 samples, batch 1, 3 epochs, 2 slots: 3000 batches pass through a
    # ring that holds two, so every slot must come back; RSS must not grow.
    name = unique_name("growth")
    spawn(
        producer_args(
            mnist_dir, "shm://" + name, "--slots", 2, "--slot-bytes", 4096, pipeline="to_tensor", batch_size=1, epochs=3
        )
    )
    with datafeed.Loader(
        "shm://" + name, prefetch=1, connect_timeout=20, timeout=20, split_epochs=False
    ) as loader:
        n = 0
        total = 0.0
        baseline = None
        for image, label in loader:
            total += float(image[0, 0, 14, 14])
            n += 1
            if n == 500:
                gc.collect()
                baseline = rss_bytes()
        del image, label
        gc.collect()
        grown = rss_bytes() - baseline
        stats = loader.stats()
        # Nothing holds a batch any more (exact: no leaked batch owners).
        alive = [o for o in gc.get_objects() if type(o) is _BatchMemory]
    assert n == 3000 and stats["batches"] == 3000
    assert alive == []
    # Generous: a leak of even 1 KB per batch over 2500 batches exceeds it.
    assert grown < 2 << 20, "RSS grew by %d bytes over 2500 batches" % grown
