"""datafeed.IterableDataset under torch's DataLoader, epochs, and the Batch
type (tuple unpacking + dict access)."""

import pickle

import pytest

torch = pytest.importorskip("torch")

import datafeed
from datafeed.loader import batch_class
from conftest import MNIST_COUNT, producer_args, read_idx, unique_name


def test_dataloader_batch_size_none_one_pass_per_epoch(mnist_dir, spawn):
    name = unique_name("ds")
    spawn(producer_args(mnist_dir, "shm://" + name, batch_size=250, epochs=2))
    ds = datafeed.IterableDataset("shm://" + name, connect_timeout=20, timeout=20)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    _, labels = read_idx(mnist_dir)
    epochs = []
    for epoch in range(3):
        seen = []
        for batch in loader:
            # DataLoader's default_convert rebuilds the Batch with its names.
            assert type(batch).__name__ == "Batch"
            image, label = batch
            assert batch["label"] is label
            assert image.shape == (250, 1, 28, 28)
            seen.append(label.clone())  # holding `label` would hold its ring slot
        epochs.append(seen)
    assert [len(e) for e in epochs] == [4, 4, 0]  # 2 epochs, then the end of the stream
    for seen in epochs[:2]:
        assert torch.equal(torch.cat(seen), torch.from_numpy(labels))
    assert ds.stats()["samples"] == 2 * MNIST_COUNT
    ds.close()


def test_dataset_pickles_without_its_loader(mnist_dir, spawn):
    name = unique_name("dspickle")
    spawn(producer_args(mnist_dir, "shm://" + name, epochs=1))
    ds = datafeed.IterableDataset("shm://" + name, connect_timeout=20, timeout=20)
    next(iter(ds))
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._loader is None and clone._args == ds._args
    ds.close()


def test_loader_without_epoch_split_runs_to_the_end(mnist_dir, spawn):
    name = unique_name("nosplit")
    spawn(producer_args(mnist_dir, "shm://" + name, batch_size=500, epochs=3))
    with datafeed.Loader("shm://" + name, connect_timeout=20, timeout=20, split_epochs=False) as loader:
        epochs = [b.meta["epoch"] for b in loader]
    assert epochs == [0, 0, 1, 1, 2, 2]


def test_batch_is_a_named_tuple_and_a_read_only_dict():
    image, label = torch.zeros(2, 1, 28, 28), torch.tensor([3, 4])
    batch = batch_class(("image", "label"))(image, label)
    a, b = batch
    assert a is image and b is label
    assert batch["image"] is image and batch[1] is label and batch.label is label
    assert batch.keys() == ["image", "label"]
    assert batch.values() == [image, label] or all(x is y for x, y in zip(batch.values(), [image, label]))
    assert [k for k, _ in batch.items()] == ["image", "label"]
    assert "image" in batch and "nope" not in batch and label in batch
    assert set(dict(batch)) == {"image", "label"} and {**batch}["label"] is label
    assert batch.to_dict()["image"] is image
    assert batch.get("nope") is None
    with pytest.raises(KeyError, match="it has image, label"):
        batch["nope"]
    with pytest.raises(AttributeError):
        batch.nope
    assert "image=float32[2, 1, 28, 28]" in repr(batch)
    clone = pickle.loads(pickle.dumps(batch))
    assert clone.keys() == batch.keys() and torch.equal(clone["label"], label)
    # torch's collate helpers treat it as a namedtuple and keep the names.
    from torch.utils.data._utils.collate import default_convert

    converted = default_convert(batch)
    assert type(converted) is type(batch) and converted["label"] is label
