"""The delivery contract from Python: Loader.state_dict() / load_state_dict()
(a trainer's checkpoint and restart, alone or as a torchrun group with
another world size), and the real producer killed with -9 and restarted
with its --state-dir, or restarted with another run.

Every test checks sample indices (the producer's --with-index tensor): for
each epoch, what the trainers consumed adds up to the dataset exactly, no
index missing, none twice.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import datafeed
from conftest import MNIST_COUNT, PACKAGE_ROOT, free_port, read_idx, unique_name

BATCH = 100  # 10 batches per epoch of the 1000-sample dataset
EPOCHS = 2


def serve(mnist_dir, state_dir, endpoint=None, seed=3, **flags):
    """A producer of a shuffled run with --with-index, journaling in state_dir."""
    return datafeed.serve(
        mnist_dir,
        pipeline="to_tensor",
        batch_size=BATCH,
        threads=1,
        epochs=EPOCHS,
        shuffle=True,
        seed=seed,
        endpoint=endpoint or "shm://" + unique_name("resume"),
        with_index=True,
        state_dir=str(state_dir),
        slots=4,
        quiet=True,
        **flags
    )


def loader(endpoint, **options):
    return datafeed.Loader(endpoint, split_epochs=False, timeout=30, connect_timeout=20, **options)


def take(source, n=None, labels=None):
    """(epoch, batch_index, [sample indices]) of the next n batches (all
    when n is None); checks each label against the dataset's."""
    out = []
    for batch in source:
        index = batch["index"]
        assert index.dtype == torch.int64
        if labels is not None:
            assert torch.equal(batch["label"], labels[index]), "labels do not match the sample indices"
        out.append((batch.meta["epoch"], batch.meta["batch_index"], index.tolist()))
        if n is not None and len(out) == n:
            break
    return out


def check_epochs(records):
    """Every epoch's sample indices are the dataset's, each exactly once."""
    per_epoch = {}
    for epoch, _, indices in records:
        per_epoch.setdefault(epoch, []).extend(indices)
    assert sorted(per_epoch) == list(range(EPOCHS))
    for epoch, got in sorted(per_epoch.items()):
        seen, repeated = set(), set()
        for i in got:
            (repeated if i in seen else seen).add(i)
        missing = set(range(MNIST_COUNT)) - seen
        assert not repeated and not missing, "epoch %d: %d repeated %s, %d missing %s" % (
            epoch, len(repeated), sorted(repeated)[:10], len(missing), sorted(missing)[:10])


def keys(records):
    return [(epoch, batch) for epoch, batch, _ in records]


@pytest.fixture(scope="module")
def labels(mnist_dir):
    return torch.from_numpy(read_idx(mnist_dir)[1])


@pytest.mark.parametrize("scheme", ["shm", "grpc"])
def test_a_restored_trainer_gets_exactly_the_batches_after_its_checkpoint(mnist_dir, tmp_path, labels, scheme):
    endpoint = None if scheme == "shm" else "grpc://127.0.0.1:%d" % free_port()
    with serve(mnist_dir, tmp_path / "state", endpoint) as producer:
        first = loader(producer.endpoint)
        before = take(first, 4, labels)
        # What the trainer saves with its checkpoint (torch.save and json can store it).
        state = json.loads(json.dumps(first.state_dict()))
        lost = take(first, 3, labels)  # steps the crash undoes
        first.close()

        restored = loader(producer.endpoint)
        restored.load_state_dict(state)
        after = take(restored, labels=labels)
        restored.close()
    assert set(keys(lost)) <= set(keys(after)), "the steps after the checkpoint did not come again"
    check_epochs(before + after)


RANK = r"""
import json, sys
import datafeed
endpoint, checkpoint = sys.argv[1:3]
with open(checkpoint) as f:
    states = json.load(f)
loader = datafeed.Loader(endpoint, split_epochs=False, timeout=60, connect_timeout=30)
loader.load_state_dict(states)  # the group's states; rank and world size from $RANK, $WORLD_SIZE
for batch in loader:
    print(json.dumps([batch.meta["epoch"], batch.meta["batch_index"], batch["index"].tolist()]), flush=True)
"""


def test_a_group_restarted_with_another_world_size_shares_what_remains(mnist_dir, tmp_path, labels):
    with serve(mnist_dir, tmp_path / "state") as producer:
        # Two ranks step in turn; the job checkpoints after three steps each
        # (every rank's state, as all_gather_object collects them), goes on
        # two more and dies.
        ranks = [loader(producer.endpoint) for _ in range(2)]
        before = []
        for _ in range(3):
            for rank in ranks:
                before += take(rank, 1, labels)
        checkpoint = tmp_path / "checkpoint.json"
        checkpoint.write_text(json.dumps([rank.state_dict() for rank in ranks]))
        for _ in range(2):
            for rank in ranks:
                take(rank, 1, labels)
        for rank in ranks:
            rank.close()

        # torchrun restarts it with three ranks: each a process with RANK and
        # WORLD_SIZE, passing the same list.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env["WORLD_SIZE"] = "3"
        env.pop("TORCHELASTIC_RESTART_COUNT", None)
        procs = []
        for r in range(3):
            env["RANK"] = str(r)
            procs.append(subprocess.Popen(
                [sys.executable, "-c", RANK, producer.endpoint, str(checkpoint)],
                env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        after = []
        for r, proc in enumerate(procs):
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, "rank %d of 3: %s" % (r, err[-2000:])
            after += [tuple(json.loads(line)) for line in out.splitlines()]
    check_epochs(before + after)


@pytest.mark.parametrize("scheme", ["grpc", "auto"])
def test_a_producer_killed_and_restarted_with_its_state_dir_continues_the_epoch(
        mnist_dir, tmp_path, labels, scheme):
    endpoint = "%s://127.0.0.1:%d" % (scheme, free_port())
    state = tmp_path / "state"
    killed = serve(mnist_dir, state, endpoint)
    restarted = None
    try:
        reader = loader(endpoint, reconnect=True, reconnect_timeout_ms=30000)
        before = take(reader, 3, labels)
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait()
        # The same flags again, as a supervisor restarts it.
        restarted = serve(mnist_dir, state, endpoint)
        after = take(reader, labels=labels)
        reader.close()
    finally:
        if restarted is not None:
            restarted.stop()
        killed.stop()  # its log; its segment is gone with the restarted producer's
    check_epochs(before + after)


def test_a_producer_restarted_with_another_seed_refuses_the_state_dir(mnist_dir, tmp_path):
    serve(mnist_dir, tmp_path / "state", seed=3).stop()
    with pytest.raises(datafeed.ProducerError) as info:
        serve(mnist_dir, tmp_path / "state", seed=4)
    message = str(info.value)
    assert "another run" in message, message
    assert "--state-dir" in message, message


def test_a_checkpoint_of_another_run_is_refused_by_name(mnist_dir, tmp_path):
    with serve(mnist_dir, tmp_path / "a", seed=3) as producer:
        first = loader(producer.endpoint)
        take(first, 1)
        state = first.state_dict()
        first.close()
    with serve(mnist_dir, tmp_path / "b", seed=4) as producer:
        other = loader(producer.endpoint)
        with pytest.raises(datafeed.FailedPrecondition) as info:
            other.load_state_dict(state)
        other.close()
    assert "run" in str(info.value), str(info.value)
