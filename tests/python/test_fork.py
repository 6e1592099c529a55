"""Fork safety (issue 12): a Loader used in a process forked after it
opened raises a clear error instead of sharing the parent's connection, the
child's garbage collection leaves the parent's batches and connection
alone, and datafeed.IterableDataset opens a fresh consumer in each forked
DataLoader worker, so the parent and the workers all get whole batches
whose labels match their sample indices."""

import os

import pytest

torch = pytest.importorskip("torch")

import datafeed
from conftest import read_idx, unique_name


@pytest.fixture
def producer(mnist_dir):
    with datafeed.serve(
        mnist_dir,
        pipeline="to_tensor",
        batch_size=50,
        threads=1,
        epochs=0,  # endless: the test takes what it needs
        shuffle=True,
        seed=11,
        endpoint="shm://" + unique_name("fork"),
        with_index=True,
        quiet=True,
    ) as p:
        yield p


@pytest.fixture
def labels(mnist_dir):
    return torch.from_numpy(read_idx(mnist_dir)[1].astype("int64"))


def check(batch, labels):
    assert torch.equal(batch["label"], labels[batch["index"]]), "labels do not match the sample indices"


def test_a_loader_used_in_a_forked_child_raises_and_the_parent_reads_on(producer, labels):
    loader = datafeed.Loader(producer.endpoint, timeout=30, split_epochs=False)
    it = iter(loader)
    held = next(it)  # the child inherits a batch too
    check(held, labels)
    pid = os.fork()
    if pid == 0:  # the child: only os._exit leaves it
        code = 1
        try:
            try:
                next(it)
                code = 2  # it read the parent's connection
            except datafeed.FailedPrecondition as e:
                code = 0 if "forked" in str(e) and "new Loader" in str(e) else 3
            loader.close()  # the parent's connection: left alone
            del held  # the parent's batch: not released here
            import gc

            gc.collect()
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "child status %d" % status
    for _ in range(5):
        check(next(it), labels)
    check(held, labels)  # still whole: the child did not give its slot back
    loader.close()


def test_iterable_dataset_in_forked_dataloader_workers_opens_its_own(producer, labels):
    ds = datafeed.IterableDataset(producer.endpoint, timeout=30, split_epochs=False)
    first = next(iter(ds))  # the parent iterates first, then forks workers
    check(first, labels)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60)
    seen = 0
    for batch in dl:
        check(batch, labels)
        seen += 1
        if seen == 8:
            break
    del dl
    check(next(iter(ds)), labels)  # the parent's own Loader still reads
    ds.close()
