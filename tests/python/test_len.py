"""len(loader): the batches of one epoch this consumer gets, from the
producer's handshake; what tqdm and OneCycleLR(total_steps=...) need."""

import pytest

import datafeed
from conftest import MNIST_COUNT, free_port

torch = pytest.importorskip("torch")

BATCH = 300  # 1000 samples -> 3 full batches and one of 100
EPOCHS = 2
PER_EPOCH = -(-MNIST_COUNT // BATCH)


def progress(iterable):
    """What tqdm does with an iterable: len() for the total, if it has one."""
    try:
        total = len(iterable)
    except (TypeError, AttributeError):
        total = None
    n = 0
    for item in iterable:
        n += 1
        yield item
    assert total is None or n == total, "len() said %s, the pass had %d" % (total, n)


@pytest.mark.parametrize("transport", ["shm", "grpc"])
def test_len_is_one_epoch_and_drives_one_cycle_lr(mnist_dir, transport):
    endpoint = None if transport == "shm" else "grpc://127.0.0.1:%d" % free_port()
    with datafeed.serve(mnist_dir, pipeline="to_tensor", batch_size=BATCH, threads=1, epochs=EPOCHS,
                        endpoint=endpoint) as p:
        with datafeed.Loader(p.endpoint, timeout=30) as loader:
            assert loader.transport == transport
            assert len(loader) == PER_EPOCH
            model = torch.nn.Linear(4, 1)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=len(loader) * EPOCHS)
            steps = 0
            for _ in range(EPOCHS):
                for image, label in progress(loader):
                    opt.step()
                    sched.step()
                    steps += 1
            assert steps == len(loader) * EPOCHS
            with pytest.raises(ValueError, match="Tried to step"):
                sched.step()  # the schedule ended exactly with the data
            assert list(loader) == []
        assert p.wait(10) == 0


def test_dataloader_over_the_iterable_dataset_has_the_length(mnist_dir):
    with datafeed.serve(mnist_dir, pipeline="to_tensor", batch_size=BATCH, threads=1, epochs=1) as p:
        ds = datafeed.IterableDataset(p.endpoint, timeout=30)
        loader = torch.utils.data.DataLoader(ds, batch_size=None)
        assert len(loader) == PER_EPOCH
        assert sum(1 for _ in progress(loader)) == PER_EPOCH
        ds.close()


def test_len_is_this_consumers_share_and_unknown_without_epochs(mnist_dir):
    with datafeed.serve(mnist_dir, pipeline="to_tensor", batch_size=BATCH, threads=1, epochs=0) as p:
        with datafeed.Loader(p.endpoint, timeout=30, consumers=3) as loader:
            assert len(loader) == -(-PER_EPOCH // 3)
        with datafeed.Loader(p.endpoint, timeout=30, split_epochs=False) as loader:
            with pytest.raises(TypeError, match="split_epochs=False"):
                len(loader)
            assert loader  # truth does not ask len()
            # Iteration works without len() (batches the first Loader read
            # ahead come again, so the order is not fixed).
            sizes = [b["image"].shape[0] for b, _ in zip(loader, range(3))]
            assert len(sizes) == 3 and set(sizes) <= {BATCH, MNIST_COUNT % BATCH}
    with pytest.raises(datafeed.InvalidArgument, match="consumers must be >= 1"):
        datafeed.Loader("shm://unused", consumers=0)
